//! What of the pipeline changes between topology refreshes, and what does not.
//!
//! Every refresh brings new message counts and rates, but the set of nodes
//! and edges rarely changes. The page lays out [`structure_of`] the topology
//! (so the layout, and the SVG's nodes and edges, are redone only when the
//! structure changes) and reads each edge's label and width from
//! [`edge_styles`], keyed by [`source_key`], as live attributes.

use flowscope_model::QueueState;

use super::{edge_label, edge_width};
use crate::api::{Topology, TopologyEdge};
use crate::sort;

/// What [`super::layout`] needs of `topology`: names, kinds, vhosts and
/// routing keys, without the counts and rates that change on every refresh.
pub fn structure_of(topology: &Topology) -> Topology {
    Topology {
        services: topology.services.clone(),
        exchanges: topology.exchanges.clone(),
        queues: topology
            .queues
            .iter()
            .map(|q| QueueState {
                vhost: q.vhost.clone(),
                name: q.name.clone(),
                is_dead_letter_queue: q.is_dead_letter_queue,
                ..Default::default()
            })
            .collect(),
        edges: topology
            .edges
            .iter()
            .map(|e| TopologyEdge {
                vhost: e.vhost.clone(),
                from: e.from.clone(),
                to: e.to.clone(),
                kind: e.kind.clone(),
                routing_keys: e.routing_keys.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

/// A topology edge's identity: vhost, ends and kind.
pub fn source_key(edge: &TopologyEdge) -> String {
    format!("{}|{}>{}>{}", edge.vhost, edge.from, edge.to, edge.kind)
}

/// How an edge looks now: its label and stroke width.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeStyle {
    pub label: String,
    pub width: f64,
}

/// Every edge's current style, by [`source_key`]: a list sorted by key
/// (searched by [`EdgeStyles::get`]) rather than one more map type in the wasm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeStyles(Vec<(String, EdgeStyle)>);

impl EdgeStyles {
    /// The style of the edge with this [`source_key`].
    pub fn get(&self, key: &str) -> Option<&EdgeStyle> {
        let at = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        Some(&self.0[at].1)
    }
}

/// Every edge's current style (of edges with the same key, the last).
pub fn edge_styles(topology: &Topology) -> EdgeStyles {
    let mut styles: Vec<(String, EdgeStyle)> = topology
        .edges
        .iter()
        .rev()
        .map(|e| {
            let style = EdgeStyle {
                label: edge_label(e),
                width: edge_width(e),
            };
            (source_key(e), style)
        })
        .collect();
    // Stable: of equal keys the last edge (now first) stays.
    sort::sort_by(&mut styles, |a, b| a.0.cmp(&b.0));
    styles.dedup_by(|later, kept| later.0 == kept.0);
    EdgeStyles(styles)
}

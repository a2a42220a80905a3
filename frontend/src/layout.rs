//! The pipeline diagram's geometry: pure, so it is tested natively.
//!
//! Five columns, left to right in the direction messages move: publishing
//! services → exchanges → queues → consuming services → dead-letter queues.
//! A service that both publishes and consumes appears in both service
//! columns (as the RabbitMQ topology reads). Rows follow the flow order:
//! queues by the place of their consumer in the flows, each consumer beside
//! its queues, each dead-letter queue beside the queue it drains.
//!
//! The flow order comes from a few flows' hops ([`FlowOrder::from_flows`]):
//! a queue's row is where its messages come in a flow. Exchanges nobody
//! publishes to (the demo's control exchange) are left out unless asked.

use std::collections::{BTreeMap, BTreeSet};

use flowscope_model::FlowDetail;

use crate::api::{Topology, TopologyEdge};
use crate::format;
use crate::sort::{self, CollectTree};

mod live;
pub use live::{EdgeStyle, EdgeStyles, edge_styles, source_key, structure_of};

pub const NODE_W: f64 = 150.0;
pub const NODE_H: f64 = 40.0;
/// Horizontal distance between columns: room for edge labels.
pub const COLUMN_STEP: f64 = NODE_W + 130.0;
pub const ROW_STEP: f64 = 62.0;
pub const MARGIN: f64 = 24.0;

/// What a node stands for; also its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    Publisher,
    Exchange,
    Queue,
    Consumer,
    DeadLetterQueue,
}

impl NodeKind {
    fn column(self) -> usize {
        self as usize
    }

    /// The CSS class of its shape.
    pub fn class(self) -> &'static str {
        match self {
            NodeKind::Publisher | NodeKind::Consumer => "node-service",
            NodeKind::Exchange => "node-exchange",
            NodeKind::Queue => "node-queue",
            NodeKind::DeadLetterQueue => "node-dlq",
        }
    }
}

/// One node, placed: `x`, `y` is its top-left corner.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The topology's id: `service:order`, `exchange:shop.events`, `queue:payment.orders`.
    pub id: String,
    /// Unique in the diagram (a service may be drawn twice): `<column>|<id>`.
    pub key: String,
    pub kind: NodeKind,
    /// The name without its kind.
    pub name: String,
    /// For queues and exchanges.
    pub vhost: Option<String>,
    pub x: f64,
    pub y: f64,
}

/// One edge, routed.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Unique in the diagram.
    pub key: String,
    pub from: String,
    pub to: String,
    /// `publish`, `binding`, `consume` or `dead_letter`.
    pub kind: String,
    pub label: String,
    /// SVG path data.
    pub path: String,
    pub label_x: f64,
    pub label_y: f64,
    /// Stroke width: consume edges thicken with their rate.
    pub width: f64,
    /// The topology edge drawn ([`source_key`]): where its live label and width come from.
    pub source: String,
}

/// The whole diagram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
}

/// Where queues and publishing services come in the flows: the mean, over
/// the flows given, of the index of the first hop through them (in time order).
///
/// Sorted by name, for a binary search: a `Vec` rather than one more map
/// type in the wasm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowOrder {
    pub queues: Vec<(String, f64)>,
    pub publishers: Vec<(String, f64)>,
}

impl FlowOrder {
    /// The rank of the queue `name`, if a flow went through it.
    pub fn queue(&self, name: &str) -> Option<f64> {
        rank_of(&self.queues, name)
    }

    /// The rank of the publishing service `name`, if a flow came from it.
    pub fn publisher(&self, name: &str) -> Option<f64> {
        rank_of(&self.publishers, name)
    }

    /// Learns the order from `flows` (the longest ones say the most).
    pub fn from_flows(flows: &[FlowDetail]) -> Self {
        // Keyed by `&str` like the layout's other maps: one map type fewer.
        let mut queues: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let mut publishers: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for flow in flows {
            let mut hops: Vec<_> = flow.hops.iter().collect();
            sort::sort_by_key(&mut hops, |h| {
                h.published_unix_us
                    .or(h.delivered_unix_us)
                    .unwrap_or(i64::MAX)
            });
            let mut first_queue: BTreeMap<&str, usize> = BTreeMap::new();
            let mut first_publisher: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, hop) in hops.iter().enumerate() {
                if let Some(q) = &hop.queue {
                    first_queue.entry(q).or_insert(i);
                }
                if let Some(p) = &hop.producer {
                    first_publisher.entry(p).or_insert(i);
                }
            }
            for (map, firsts) in [
                (&mut queues, first_queue),
                (&mut publishers, first_publisher),
            ] {
                for (name, i) in firsts {
                    let e = map.entry(name).or_default();
                    e.0 += i as f64;
                    e.1 += 1.0;
                }
            }
        }
        let mean = |m: BTreeMap<&str, (f64, f64)>| {
            m.into_iter()
                .map(|(k, (sum, n))| (k.to_owned(), sum / n))
                .collect()
        };
        Self {
            queues: mean(queues),
            publishers: mean(publishers),
        }
    }
}

/// The rank under `name` in `ranks` (sorted by name).
fn rank_of(ranks: &[(String, f64)], name: &str) -> Option<f64> {
    let found = ranks.binary_search_by(|(n, _)| n.as_str().cmp(name));
    found.ok().map(|i| ranks[i].1)
}

/// Exchanges that carried less than this share of the published messages
/// are quiet (control commands, replies): left out unless asked.
pub const QUIET_SHARE: f64 = 0.01;

/// `topology` without its quiet exchanges (see [`QUIET_SHARE`]), the
/// queues bound only to them and the services only publishing to them,
/// and how many queues that hid. Unchanged while nothing was published.
pub fn without_idle(topology: &Topology) -> (Topology, usize) {
    // Messages by exchange, as the first of a pair of `f64`s (exact below
    // 2^53): the map type the flow order uses (one type fewer in the wasm).
    let mut published: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for e in topology.edges.iter().filter(|e| e.kind == "publish") {
        published.entry(name_of(&e.to)).or_default().0 += e.messages.unwrap_or(0) as f64;
    }
    let total: f64 = published.values().map(|n| n.0).sum();
    if total == 0.0 {
        return (topology.clone(), 0);
    }
    let threshold = (total * QUIET_SHARE).max(1.0);
    let active: BTreeSet<&str> = published
        .into_iter()
        .filter(|(_, n)| n.0 >= threshold)
        .map(|(x, _)| x)
        .collect_tree();
    let dead_letter_targets: BTreeSet<&str> = topology
        .edges
        .iter()
        .filter(|e| e.kind == "dead_letter")
        .map(|e| name_of(&e.to))
        .collect_tree();
    let mut bound_to: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in topology.edges.iter().filter(|e| e.kind == "binding") {
        bound_to
            .entry(name_of(&e.to))
            .or_default()
            .push(name_of(&e.from));
    }
    // Queue names (a set of `&str`, like the others here).
    let hidden: BTreeSet<&str> = bound_to
        .iter()
        .filter(|(q, sources)| {
            !dead_letter_targets.contains(*q) && sources.iter().all(|x| !active.contains(x))
        })
        .map(|(q, _)| *q)
        .collect_tree();
    let is_hidden = |id: &str| {
        id.strip_prefix("queue:")
            .is_some_and(|q| hidden.contains(q))
    };
    let mut kept = topology.clone();
    kept.edges.retain(|e| {
        let quiet_exchange = match e.kind.as_str() {
            "publish" => !active.contains(name_of(&e.to)),
            "binding" => {
                !active.contains(name_of(&e.from)) && !dead_letter_targets.contains(name_of(&e.to))
            }
            _ => false,
        };
        !quiet_exchange && !is_hidden(&e.from) && !is_hidden(&e.to)
    });
    kept.queues.retain(|q| !hidden.contains(q.name.as_str()));
    (kept, hidden.len())
}

fn name_of(id: &str) -> &str {
    id.split_once(':').map_or(id, |(_, name)| name)
}

/// Lays out `topology`, rows in `order`.
pub fn layout(topology: &Topology, order: &FlowOrder) -> Layout {
    let edges = &topology.edges;
    let of_kind = |kind: &'static str| edges.iter().filter(move |e| e.kind == kind);
    let dlqs: BTreeSet<&str> = topology
        .queues
        .iter()
        .filter(|q| q.is_dead_letter_queue)
        .map(|q| q.name.as_str())
        .chain(of_kind("dead_letter").map(|e| name_of(&e.to)))
        .collect_tree();
    // A queue's vhost (the last queue of that name, as a map would keep);
    // a search rather than one more map type in the wasm.
    let vhost_of = |name: &str| {
        topology
            .queues
            .iter()
            .rev()
            .find(|q| q.name == name)
            .map(|q| q.vhost.clone())
    };
    // Consumers first: a queue no flow went through is ranked by them.
    let mut consumers_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in of_kind("consume") {
        consumers_of
            .entry(name_of(&e.from))
            .or_default()
            .push(name_of(&e.to));
    }
    // The best rank among a consumer's queues, if any has one: a search
    // rather than one more map type in the wasm (graphs are small).
    let first_queue_of = |consumer: &str| {
        consumers_of
            .iter()
            .filter(|(_, cs)| cs.contains(&consumer))
            .filter_map(|(q, _)| order.queue(q))
            .reduce(f64::min)
    };
    let queue_rank = |queue: &str| {
        order.queue(queue).unwrap_or_else(|| {
            consumers_of
                .get(queue)
                .and_then(|cs| cs.iter().filter_map(|c| first_queue_of(c)).reduce(f64::min))
                .map_or(1e6, |r| r + 0.5)
        })
    };
    let rank = |service: &str| order.publisher(service).unwrap_or(1e6);
    let mut queues: Vec<&str> = topology
        .queues
        .iter()
        .map(|q| q.name.as_str())
        .chain(
            edges
                .iter()
                .flat_map(|e| [&e.from, &e.to])
                .filter_map(|id| id.strip_prefix("queue:")),
        )
        .filter(|q| !dlqs.contains(q))
        .collect_tree::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sort::sort_by(&mut queues, |a, b| {
        queue_rank(a).total_cmp(&queue_rank(b)).then(a.cmp(b))
    });

    let mut nodes: Vec<Node> = Vec::new();
    let mut place = |kind: NodeKind, id: String, vhost: Option<String>, y: f64| {
        let name = name_of(&id).to_owned();
        nodes.push(Node {
            key: format!("{}|{id}", kind.column()),
            id,
            kind,
            name,
            vhost,
            x: MARGIN + kind.column() as f64 * COLUMN_STEP,
            y,
        });
    };
    let row = |i: usize| MARGIN + i as f64 * ROW_STEP;
    // A queue's row (none for a dead-letter queue): a search, like `vhost_of`.
    let queue_y = |name: &str| queues.iter().position(|q| *q == name).map(row);
    for (i, q) in queues.iter().enumerate() {
        let vhost = vhost_of(q);
        place(NodeKind::Queue, format!("queue:{q}"), vhost, row(i));
    }

    // Consumers beside the mean of their queues, overlaps pushed down.
    let mut consumer_y: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (queue, services) in &consumers_of {
        let y = queue_y(queue).unwrap_or(0.0);
        for s in services {
            let e = consumer_y.entry(s).or_default();
            e.0 += y;
            e.1 += 1.0;
        }
    }
    let wanted: Vec<(&str, f64)> = consumer_y
        .into_iter()
        .map(|(s, (sum, n))| (s, sum / n))
        .collect();
    for (s, y) in spread(wanted) {
        place(NodeKind::Consumer, format!("service:{s}"), None, y);
    }

    // Dead-letter queues beside their source queue.
    let last_row = row(queues.len());
    let wanted: Vec<(&str, f64)> = dlqs
        .iter()
        .map(|d| {
            let y = of_kind("dead_letter")
                .filter(|e| name_of(&e.to) == *d)
                .filter_map(|e| queue_y(name_of(&e.from)))
                .fold(f64::MAX, f64::min);
            (*d, if y == f64::MAX { last_row } else { y })
        })
        .collect();
    for (d, y) in spread(wanted) {
        let vhost = vhost_of(d);
        place(NodeKind::DeadLetterQueue, format!("queue:{d}"), vhost, y);
    }

    // Publishers and exchanges, centred on the queues.
    let mut publishers: Vec<&str> = of_kind("publish")
        .map(|e| name_of(&e.from))
        .collect_tree::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sort::sort_by(&mut publishers, |a, b| {
        rank(a).total_cmp(&rank(b)).then(a.cmp(b))
    });
    // Sorted and deduplicated, as a set would give them.
    let mut exchanges: Vec<(&str, &str)> = of_kind("publish")
        .map(|e| (e.vhost.as_str(), name_of(&e.to)))
        .chain(
            of_kind("binding")
                .filter(|e| !dlqs.contains(name_of(&e.to)))
                .map(|e| (e.vhost.as_str(), name_of(&e.from))),
        )
        .collect();
    sort::sort(&mut exchanges);
    exchanges.dedup();
    let middle = (row(queues.len().max(1) - 1) + MARGIN) / 2.0;
    let centred = |i: usize, n: usize| {
        (middle - (n as f64 - 1.0) * ROW_STEP / 2.0 + i as f64 * ROW_STEP).max(MARGIN)
    };
    for (i, p) in publishers.iter().enumerate() {
        place(
            NodeKind::Publisher,
            format!("service:{p}"),
            None,
            centred(i, publishers.len()),
        );
    }
    for (i, (vhost, x)) in exchanges.iter().enumerate() {
        let y = centred(i, exchanges.len());
        place(
            NodeKind::Exchange,
            format!("exchange:{x}"),
            Some(vhost.to_string()),
            y,
        );
    }

    let edges = route_edges(&nodes, edges);
    let width = MARGIN * 2.0 + 4.0 * COLUMN_STEP + NODE_W;
    let height = nodes.iter().map(|n| n.y + NODE_H).fold(0.0, f64::max) + MARGIN + 30.0;
    Layout {
        nodes,
        edges,
        width,
        height,
    }
}

/// Keeps the wanted heights, in order, at least a row apart.
fn spread(mut wanted: Vec<(&str, f64)>) -> Vec<(&str, f64)> {
    sort::sort_by(&mut wanted, |a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    let mut next = f64::MIN;
    for (_, y) in &mut wanted {
        *y = y.max(next);
        next = *y + ROW_STEP;
    }
    wanted
}

fn edge_label(e: &TopologyEdge) -> String {
    match e.kind.as_str() {
        "publish" => e.messages.map(|n| format!("{n} msgs")).unwrap_or_default(),
        "binding" => {
            let keys = e.routing_keys.join(", ");
            if keys.chars().count() > 22 {
                format!("{}…", keys.chars().take(21).collect::<String>())
            } else {
                keys
            }
        }
        "consume" => {
            let rate = e.rate.filter(|r| *r > 0.0).map(format::rate);
            let wait = e
                .queue_wait_ms
                .filter(|w| *w > 0.0)
                .map(|w| format!("wait {}", format::duration_ms(w)));
            rate.into_iter().chain(wait).collect::<Vec<_>>().join(" · ")
        }
        // Red and dashed says it; the exchange is in the queue's details.
        "dead_letter" => String::new(),
        _ => String::new(),
    }
}

/// Consume edges thicken with their rate.
fn edge_width(e: &TopologyEdge) -> f64 {
    1.5 + e.rate.unwrap_or(0.0).min(20.0) / 4.0
}

/// The point at `t` (0 to 1) of a cubic Bézier curve.
fn bezier(p: [(f64, f64); 4], t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    let w = [u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t];
    (
        (0..4).map(|i| w[i] * p[i].0).sum(),
        (0..4).map(|i| w[i] * p[i].1).sum(),
    )
}

fn route_edges(nodes: &[Node], edges: &[TopologyEdge]) -> Vec<Edge> {
    // A topology id can be drawn twice (publisher and consumer): pick by direction.
    let find =
        |id: &str, kinds: &[NodeKind]| nodes.iter().find(|n| n.id == id && kinds.contains(&n.kind));
    use NodeKind::*;
    let mut routed = Vec::new();
    for e in edges {
        let (from_kinds, to_kinds): (&[NodeKind], &[NodeKind]) = match e.kind.as_str() {
            "publish" => (&[Publisher], &[Exchange]),
            "binding" => (&[Exchange], &[Queue]),
            "consume" => (&[Queue, DeadLetterQueue], &[Consumer]),
            "dead_letter" => (&[Queue, DeadLetterQueue], &[DeadLetterQueue]),
            _ => continue,
        };
        let (Some(from), Some(to)) = (find(&e.from, from_kinds), find(&e.to, to_kinds)) else {
            continue;
        };
        let (x1, y1) = (from.x + NODE_W, from.y + NODE_H / 2.0);
        let (x2, y2) = (to.x, to.y + NODE_H / 2.0);
        let (path, label_x, label_y) = if e.kind == "dead_letter" && to.x - from.x > COLUMN_STEP {
            // Under the consumer column, from the queue's lower edge.
            let (y1, y2) = (y1 + 12.0, y2 + 12.0);
            let dip = 36.0;
            let path = format!(
                "M{x1:.1},{y1:.1} C{:.1},{:.1} {:.1},{:.1} {x2:.1},{y2:.1}",
                x1 + 80.0,
                y1 + dip,
                x2 - 80.0,
                y2 + dip
            );
            (path, (x1 + x2) / 2.0, (y1 + y2) / 2.0 + dip * 0.75 + 12.0)
        } else {
            let bend = ((x2 - x1) / 2.0).max(40.0);
            let path = format!(
                "M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}",
                x1 + bend,
                x2 - bend
            );
            // Labels where the edges fan out: near the many publishers,
            // near the many queues, else half-way.
            let t = match e.kind.as_str() {
                "publish" => 0.3,
                "binding" => 0.72,
                _ => 0.5,
            };
            let (lx, ly) = bezier([(x1, y1), (x1 + bend, y1), (x2 - bend, y2), (x2, y2)], t);
            (path, lx, ly - 5.0)
        };
        routed.push(Edge {
            key: format!("{}>{}>{}", from.key, to.key, e.kind),
            from: from.key.clone(),
            to: to.key.clone(),
            kind: e.kind.clone(),
            label: edge_label(e),
            path,
            label_x,
            label_y,
            width: edge_width(e),
            source: source_key(e),
        });
    }
    routed
}

#[cfg(test)]
mod tests;

//! Reading back what the blocks hold: a flow's messages and spans, and the
//! observations a restart replays. CPU work, run off the async threads.

use std::collections::HashMap;

use flowscope_model::{FlowDetail, Observation};

use super::Result;
use super::blocks::{self, BlockLines};
use super::codec;
use super::items::{ItemValue, Location, StoredItem, StoredItems};

/// A flow from its row and the blocks its items refer to. An item whose
/// observation is gone (deleted by retention, or lost with a failed write)
/// is left out; the summary still counts it.
pub(super) fn assemble_flow(
    summary: &[u8],
    hops: &[u8],
    stored: StoredItems,
    blocks: Vec<(i64, Vec<u8>)>,
) -> Result<FlowDetail> {
    let mut decoded = HashMap::with_capacity(blocks.len());
    for (id, data) in blocks {
        decoded.insert(id, BlockLines::decode(&data)?);
    }
    let mut flow = FlowDetail {
        summary: codec::decode_summary(summary)?,
        hops: codec::decode_hops(hops)?,
        messages: Vec::with_capacity(stored.num_messages),
        spans: Vec::with_capacity(stored.items.len() - stored.num_messages.min(stored.items.len())),
    };
    for item in stored.items {
        let value = match item {
            StoredItem::Inline(value) => Some(value),
            StoredItem::At(location) => item_at(&decoded, location)?,
        };
        match value {
            Some(ItemValue::Message(m)) => flow.messages.push(*m),
            Some(ItemValue::Span(s)) => flow.spans.push(s),
            None => {}
        }
    }
    Ok(flow)
}

/// The message or span at a location, if it is still there.
fn item_at(
    decoded: &HashMap<i64, BlockLines>,
    (block, line): Location,
) -> Result<Option<ItemValue>> {
    let Some(lines) = decoded.get(&block) else {
        return Ok(None);
    };
    let Some((_, json)) = lines
        .lines()
        .nth(line as usize)
        .filter(|(_, l)| !l.is_empty())
    else {
        return Ok(None);
    };
    Ok(match blocks::decode_line(json)? {
        Observation::Publish(m) | Observation::Deliver(m) | Observation::DeadLetter(m) => {
            Some(ItemValue::Message(m))
        }
        Observation::Span(s) => Some(ItemValue::Span(s)),
        _ => None,
    })
}

/// Observations replayed, and where the messages and spans among them are.
pub(super) type Replayed = (Vec<Observation>, Vec<(u64, Location)>);

/// Up to `limit` observations seen at or after `since` from blocks `(seq,
/// id, data)` in order, and where the messages and spans among them are.
pub(super) fn observations_in(
    rows: Vec<(i64, i64, Vec<u8>)>,
    since: i64,
    limit: usize,
) -> Result<Replayed> {
    let (mut out, mut located) = (Vec::new(), Vec::new());
    for (_, id, data) in rows {
        let lines = BlockLines::decode(&data)?;
        for (line, json) in lines.lines() {
            if out.len() >= limit {
                return Ok((out, located));
            }
            if json.is_empty() {
                continue;
            }
            let observation = blocks::decode_line(json)?;
            if blocks::observed_unix_us(&observation) < since {
                continue;
            }
            if let Some(identity) = blocks::observation_identity(&observation) {
                located.push((identity, (id, line)));
            }
            out.push(observation);
        }
    }
    Ok((out, located))
}

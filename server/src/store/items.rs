//! A flow's messages and spans, stored as references to the observation
//! blocks that already hold them (`(block id, line)`), so that each event is
//! stored once. A message or span the store cannot place (written before
//! this process saw its observation, or not written as an observation at
//! all) is stored inline instead, compressed.
//!
//! Where observations are is remembered in memory ([`Locations`]): those
//! written by this process and those read back by `observations_since` at
//! start, a bounded number, the ones flows still refer to kept longest.
//!
//! The `items` column, little-endian:
//!
//! ```text
//! u8 version (1) | u32 messages | u32 spans | per item: u8 0, i64 block id, u32 line
//!                                                    | u8 1, u32 index into the inline list
//! | zstd of a JSON array of the inline items (only when there are some)
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use flowscope_model::{BrokerMessage, SpanObservation};
use serde::{Deserialize, Serialize};

use super::blocks;
use super::{Result, StoreError};

/// Locations remembered, at most (two generations of half as many): ~20 MB.
pub(super) const MAX_LOCATIONS: usize = 600_000;
const VERSION: u8 = 1;
const REF: u8 = 0;
const INLINE: u8 = 1;

/// A message or a span of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ItemValue {
    Message(Box<BrokerMessage>),
    Span(Arc<SpanObservation>),
}

/// Where an observation is: `(block id, line)`.
pub(super) type Location = (i64, u32);

/// An approximate LRU of observation locations by identity: a young and an
/// old generation; a hit in the old one moves the entry to the young one, so
/// the observations of a flow written again and again stay known.
#[derive(Debug, Default)]
pub(super) struct Locations {
    young: HashMap<u64, Location>,
    old: HashMap<u64, Location>,
}

impl Locations {
    pub(super) fn insert(&mut self, identity: u64, location: Location) {
        if self.young.len() >= MAX_LOCATIONS / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(identity, location);
    }

    pub(super) fn get(&mut self, identity: u64) -> Option<Location> {
        if let Some(found) = self.young.get(&identity) {
            return Some(*found);
        }
        let found = self.old.remove(&identity)?;
        self.insert(identity, found);
        Some(found)
    }
}

/// One item as resolved: where it is, or itself.
#[derive(Debug, Clone)]
pub(super) enum Resolved<'a> {
    At(Location),
    Inline(&'a ItemValue),
}

/// The `items` column of a flow.
pub(super) fn encode_items(num_messages: usize, items: &[Resolved<'_>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(9 + items.len() * 13);
    out.push(VERSION);
    out.extend_from_slice(&(num_messages as u32).to_le_bytes());
    out.extend_from_slice(&((items.len() - num_messages) as u32).to_le_bytes());
    let mut inline = Vec::new();
    for item in items {
        match item {
            Resolved::At((block, line)) => {
                out.push(REF);
                out.extend_from_slice(&block.to_le_bytes());
                out.extend_from_slice(&line.to_le_bytes());
            }
            Resolved::Inline(value) => {
                out.push(INLINE);
                out.extend_from_slice(&(inline.len() as u32).to_le_bytes());
                inline.push(*value);
            }
        }
    }
    if !inline.is_empty() {
        let json = serde_json::to_vec(&inline).map_err(|source| StoreError::Json {
            what: "encode a flow's messages",
            source,
        })?;
        out.extend(blocks::compress(&json)?);
    }
    Ok(out)
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StoredItem {
    At(Location),
    Inline(ItemValue),
}

/// A flow's items as stored: the first `num_messages` are its messages.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StoredItems {
    pub num_messages: usize,
    pub items: Vec<StoredItem>,
}

impl StoredItems {
    /// The blocks the items refer to (with repeats).
    pub(super) fn block_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.items.iter().filter_map(|item| match item {
            StoredItem::At((block, _)) => Some(*block),
            StoredItem::Inline(_) => None,
        })
    }
}

/// Reads the `items` column.
pub(super) fn decode_items(bytes: &[u8]) -> Result<StoredItems> {
    let corrupt = || StoreError::Corrupt {
        what: "a flow's message list",
    };
    let mut r = Reader { bytes, at: 0 };
    if r.take(1).ok_or_else(corrupt)?[0] != VERSION {
        return Err(corrupt());
    }
    let num_messages = r.u32().ok_or_else(corrupt)? as usize;
    let num_spans = r.u32().ok_or_else(corrupt)? as usize;
    let mut refs = Vec::with_capacity(num_messages + num_spans);
    for _ in 0..num_messages + num_spans {
        refs.push(match r.take(1).ok_or_else(corrupt)?[0] {
            REF => Err((r.i64().ok_or_else(corrupt)?, r.u32().ok_or_else(corrupt)?)),
            INLINE => Ok(r.u32().ok_or_else(corrupt)? as usize),
            _ => return Err(corrupt()),
        });
    }
    let rest = &bytes[r.at..];
    let mut inline: Vec<Option<ItemValue>> = if rest.is_empty() {
        Vec::new()
    } else {
        let json = blocks::decompress(rest)?;
        let values: Vec<ItemValue> =
            serde_json::from_slice(&json).map_err(|source| StoreError::Json {
                what: "read a flow's messages",
                source,
            })?;
        values.into_iter().map(Some).collect()
    };
    let items = refs
        .into_iter()
        .map(|r| match r {
            Err(location) => Ok(StoredItem::At(location)),
            Ok(i) => inline
                .get_mut(i)
                .and_then(Option::take)
                .map(StoredItem::Inline)
                .ok_or_else(corrupt),
        })
        .collect::<Result<_>>()?;
    Ok(StoredItems {
        num_messages,
        items,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_refs_and_inline_values() {
        let message = ItemValue::Message(Box::new(BrokerMessage {
            observed_unix_us: 7,
            exchange: "shop".into(),
            ..Default::default()
        }));
        let items = [
            Resolved::At((-5, 3)),
            Resolved::Inline(&message),
            Resolved::At((9, 0)),
        ];
        let bytes = encode_items(2, &items).unwrap();
        let stored = decode_items(&bytes).unwrap();
        assert_eq!(stored.num_messages, 2);
        assert_eq!(
            stored.items,
            [
                StoredItem::At((-5, 3)),
                StoredItem::Inline(message),
                StoredItem::At((9, 0))
            ]
        );
        assert!(decode_items(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn locations_of_flows_written_again_survive_eviction() {
        let mut locations = Locations::default();
        locations.insert(1, (1, 1));
        for i in 10..(10 + MAX_LOCATIONS as u64 / 2) {
            locations.insert(i, (2, 0));
        }
        // 1 is in the old generation now; a hit brings it back.
        assert_eq!(locations.get(1), Some((1, 1)));
        for i in 0..MAX_LOCATIONS as u64 / 2 {
            locations.insert(1_000_000_000 + i, (3, 0));
        }
        assert_eq!(locations.get(1), Some((1, 1)));
        assert_eq!(locations.get(10), None);
    }
}

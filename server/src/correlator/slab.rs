//! The live flows, each in a numbered slot, and the index from
//! identifiers to them.
//!
//! The correlator refers to a live flow by its slot (a `u32`), not its id
//! (a `u128` looked up in a map): the index, the changed list and the
//! ordered sets hold slots, so that finding a span's flow is one lookup in
//! the index and one step into a vector, and the index's entries are 16
//! bytes, not 32. At 10k spans/s with the live set full, the index holds
//! ~140k identifiers, far more than the caches; every new identifier costs
//! a miss on the table's control bytes and one on the entry it is written
//! to, and half-size entries mean half the table for them to miss in.
//!
//! A slot is taken again as soon as its flow leaves. Everything that holds
//! a slot lets go of it when the flow leaves (the index, the ordered sets),
//! except the changed list, whose entries are checked at the take (the
//! flow's `pending` flag), and the hops handed over after a take, checked by
//! id.

use foldhash::HashMap;
use hashbrown::HashTable;

use super::flow::FlowState;
use super::flow_id::FlowId;
use super::ids::IdentKey;

/// Where a live flow is.
pub type Slot = u32;

/// The live flows by slot, and their slots by id.
#[derive(Debug, Default)]
pub struct Flows {
    /// Boxed: a slot is 8 bytes, and a flow leaving moves a pointer.
    slots: Vec<Option<Box<FlowState>>>,
    /// Slots free to take, the last freed first (its memory is the most
    /// likely still in the caches).
    free: Vec<Slot>,
    by_id: HashMap<FlowId, Slot>,
}

impl Flows {
    /// Live flows.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is live.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The flow in a slot.
    pub fn get(&self, slot: Slot) -> Option<&FlowState> {
        self.slots.get(slot as usize)?.as_deref()
    }

    /// The flow in a slot, to change.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut FlowState> {
        self.slots.get_mut(slot as usize)?.as_deref_mut()
    }

    /// The slot of a live flow.
    pub fn slot_of(&self, id: FlowId) -> Option<Slot> {
        self.by_id.get(&id).copied()
    }

    /// Puts a flow whose id is not live in a slot.
    pub fn insert(&mut self, flow: Box<FlowState>) -> Slot {
        let id = flow.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(flow);
                slot
            }
            None => {
                let slot = Slot::try_from(self.slots.len()).expect("fewer than 2³² live flows");
                self.slots.push(Some(flow));
                slot
            }
        };
        let before = self.by_id.insert(id, slot);
        debug_assert!(before.is_none(), "flow {id} was live already");
        slot
    }

    /// Takes a flow out; its slot is free to take again.
    pub fn remove(&mut self, slot: Slot) -> Option<Box<FlowState>> {
        let flow = self.slots.get_mut(slot as usize)?.take()?;
        self.by_id.remove(&flow.id);
        self.free.push(slot);
        Some(flow)
    }

    /// Every live flow.
    pub fn values(&self) -> impl Iterator<Item = &FlowState> {
        self.slots.iter().filter_map(|f| f.as_deref())
    }

    /// Every live flow with its slot.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &FlowState)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, f)| Some((slot as Slot, f.as_deref()?)))
    }
}

/// Which live flow each identifier belongs to: 96 bits of its key, and the
/// flow's slot. The key is a hash already (random per process), so its low
/// 64 bits are the table's hash as they are.
///
/// Two identifiers share 96 bits with a chance of about n / 2⁹⁶ for each new
/// one among n live (10⁻²⁴ with 140k live: once in 10²⁴ identifiers, or a
/// million years at a million a second).
#[derive(Debug, Default)]
pub struct Index {
    table: HashTable<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    low: u64,
    high: u32,
    slot: Slot,
}

fn split(key: IdentKey) -> (u64, u32) {
    let bits = key.bits();
    (bits as u64, (bits >> 64) as u32)
}

impl Index {
    /// The slot an identifier's flow is in.
    #[inline]
    pub fn get(&self, key: IdentKey) -> Option<Slot> {
        let (low, high) = split(key);
        self.table
            .find(low, |e| e.low == low && e.high == high)
            .map(|e| e.slot)
    }

    /// Points an identifier at a flow; returns where it pointed before.
    #[inline]
    pub fn set(&mut self, key: IdentKey, slot: Slot) -> Option<Slot> {
        let (low, high) = split(key);
        match self
            .table
            .entry(low, |e| e.low == low && e.high == high, |e| e.low)
        {
            hashbrown::hash_table::Entry::Occupied(mut entry) => {
                Some(std::mem::replace(&mut entry.get_mut().slot, slot))
            }
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert(Entry { low, high, slot });
                None
            }
        }
    }

    /// Points an identifier that points somewhere at a flow instead.
    pub fn repoint(&mut self, key: IdentKey, slot: Slot) {
        let (low, high) = split(key);
        if let Some(entry) = self
            .table
            .find_mut(low, |e| e.low == low && e.high == high)
        {
            entry.slot = slot;
        }
    }

    /// Forgets an identifier if it points at this flow.
    pub fn remove(&mut self, key: IdentKey, slot: Slot) {
        let (low, high) = split(key);
        if let Ok(entry) = self
            .table
            .find_entry(low, |e| e.low == low && e.high == high)
            && entry.get().slot == slot
        {
            entry.remove();
        }
    }

    /// Identifiers indexed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether it holds none.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn slots_are_taken_again_and_ids_follow_them() {
        let mut flows = Flows::default();
        let flow = |n: u128| {
            Box::new(FlowState {
                id: FlowId::from_bits(n),
                ..Default::default()
            })
        };
        let a = flows.insert(flow(1));
        let b = flows.insert(flow(2));
        assert_ne!(a, b);
        assert_eq!(flows.remove(a).map(|f| f.id), Some(FlowId::from_bits(1)));
        assert_eq!(flows.slot_of(FlowId::from_bits(1)), None);
        assert!(flows.get(a).is_none());
        let c = flows.insert(flow(3));
        assert_eq!(c, a, "the freed slot is taken first");
        assert_eq!(flows.slot_of(FlowId::from_bits(3)), Some(c));
        assert_eq!(flows.len(), 2);
        let ids: Vec<_> = flows.values().map(|f| f.id).collect();
        assert_eq!(ids, [FlowId::from_bits(3), FlowId::from_bits(2)]);
    }

    #[test]
    fn the_index_tells_keys_apart_by_their_high_bits_too() {
        let mut index = Index::default();
        let low = 0x1234_5678_9abc_def0_u128;
        let (k1, k2) = (IdentKey::from_bits(low), IdentKey::from_bits(low | 1 << 64));
        assert_eq!(index.set(k1, 1), None);
        assert_eq!(index.set(k2, 2), None);
        assert_eq!((index.get(k1), index.get(k2)), (Some(1), Some(2)));
        assert_eq!(index.set(k1, 3), Some(1));
        index.remove(k2, 9);
        assert_eq!(index.get(k2), Some(2), "not removed for another flow");
        index.remove(k2, 2);
        assert_eq!(index.get(k2), None);
        index.repoint(k2, 4);
        assert_eq!(index.get(k2), None, "repointing adds nothing");
        index.repoint(k1, 4);
        assert_eq!((index.get(k1), index.len()), (Some(4), 1));
    }
}

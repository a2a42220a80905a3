//! The live flows, each in a numbered slot, and the index from
//! identifiers to them.
//!
//! The correlator refers to a live flow by its slot (a `u32`), not its id
//! (a `u128` looked up in a map): the index, the changed list and the
//! ordered sets hold slots, so that finding a span's flow is one lookup in
//! the index and one step into a vector, and the index's entries are 16
//! bytes, not 32. At 10k spans/s with the live set full, the index holds
//! ~140k identifiers, far more than the caches: each new identifier and
//! each one let go costs a miss ([`Index`]).
//!
//! A slot is taken again as soon as its flow leaves. Everything that holds
//! a slot lets go of it when the flow leaves (the index, the ordered sets),
//! except the changed list, whose entries are checked at the take (the
//! flow's `pending` flag), and the hops handed over after a take, checked by
//! id.

use super::flow::FlowState;
use super::flow_id::FlowId;
use super::ids::{IdentKey, IdentKeys};

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
    /// Slots by the key of their flow's id ([`IdentKeys::flow_key`]): an
    /// [`Index`] of their own, so that finding a flow by id costs one miss,
    /// not two (a map's control bytes, then its entry), and letting a
    /// group of flows go can read their entries ahead ([`Flows::touch`]).
    by_id: Index,
    keys: IdentKeys,
    /// Flows taken out so far: what was found of a slot before is still
    /// true while this has not moved (identifiers leave the index, and
    /// slots are taken again, only when a flow is taken out).
    removals: u64,
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

    /// Flows taken out so far ([`Flows::remove`]).
    pub fn removals(&self) -> u64 {
        self.removals
    }

    /// The slot of a live flow.
    pub fn slot_of(&self, id: FlowId) -> Option<Slot> {
        // The index compares 96 bits of the key: the flow itself says
        // whether it is the one.
        let slot = self.by_id.get(self.keys.flow_key(id))?;
        (self.get(slot)?.id == id).then_some(slot)
    }

    /// Reads the line a flow's entry by id is in ahead of its removal:
    /// returns a word of it, for the caller to pass to
    /// [`std::hint::black_box`].
    pub fn touch(&self, id: FlowId) -> u64 {
        self.by_id.touch(self.keys.flow_key(id))
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
        let before = self.by_id.set(self.keys.flow_key(id), slot);
        debug_assert!(before.is_none(), "flow {id} was live already");
        slot
    }

    /// Takes a flow out; its slot is free to take again.
    pub fn remove(&mut self, slot: Slot) -> Option<Box<FlowState>> {
        let flow = self.slots.get_mut(slot as usize)?.take()?;
        self.removals += 1;
        self.by_id.remove(self.keys.flow_key(flow.id), slot);
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
/// flow's slot, in one open-addressed table (linear probing).
///
/// Not a general hash map: an entry is found in the line it hashes to
/// (four entries a cache line, the table at most half full), so a new
/// identifier costs one miss, where a table of control bytes and entries
/// apart costs two, and [`Index::touch`] can fetch that line ahead of
/// time for a batch of observations at once (their misses overlap instead
/// of waiting one after another). The key is a hash already (random per
/// process), so its low bits place it as they are.
///
/// Two identifiers share 96 bits with a chance of about n / 2⁹⁶ for each new
/// one among n live (10⁻²⁴ with 140k live: once in 10²⁴ identifiers, or a
/// million years at a million a second).
#[derive(Debug)]
pub struct Index {
    entries: Vec<Entry>,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    low: u64,
    high: u32,
    slot: Slot,
}

/// An entry holding no identifier.
const EMPTY: Entry = Entry {
    low: 0,
    high: 0,
    slot: Slot::MAX,
};

/// Entries the table starts with.
const MIN_ENTRIES: usize = 1024;

fn split(key: IdentKey) -> (u64, u32) {
    let bits = key.bits();
    (bits as u64, (bits >> 64) as u32)
}

impl Default for Index {
    fn default() -> Self {
        Self {
            entries: vec![EMPTY; MIN_ENTRIES],
            len: 0,
        }
    }
}

impl Index {
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// Where an identifier is, or the empty entry it would go in.
    #[inline]
    fn position(&self, low: u64, high: u32) -> usize {
        let mask = self.mask();
        let mut at = low as usize & mask;
        loop {
            let e = &self.entries[at];
            if e.slot == Slot::MAX || (e.low == low && e.high == high) {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// The slot an identifier's flow is in.
    #[inline]
    pub fn get(&self, key: IdentKey) -> Option<Slot> {
        let (low, high) = split(key);
        let e = self.entries[self.position(low, high)];
        (e.slot != Slot::MAX).then_some(e.slot)
    }

    /// Reads the line an identifier hashes to, so that it is in the
    /// cache when the identifier is looked up: returns a word of it, for
    /// the caller to pass to [`std::hint::black_box`].
    #[inline]
    pub fn touch(&self, key: IdentKey) -> u64 {
        self.entries[key.bits() as usize & self.mask()].low
    }

    /// Points an identifier at a flow; returns where it pointed before.
    #[inline]
    pub fn set(&mut self, key: IdentKey, slot: Slot) -> Option<Slot> {
        debug_assert_ne!(slot, Slot::MAX);
        let (low, high) = split(key);
        let at = self.position(low, high);
        let e = &mut self.entries[at];
        if e.slot != Slot::MAX {
            return Some(std::mem::replace(&mut e.slot, slot));
        }
        *e = Entry { low, high, slot };
        self.len += 1;
        if self.len * 2 > self.entries.len() {
            self.grow();
        }
        None
    }

    /// Points an identifier that points somewhere at a flow instead.
    pub fn repoint(&mut self, key: IdentKey, slot: Slot) {
        let (low, high) = split(key);
        let at = self.position(low, high);
        let e = &mut self.entries[at];
        if e.slot != Slot::MAX {
            e.slot = slot;
        }
    }

    /// Forgets an identifier if it points at this flow.
    pub fn remove(&mut self, key: IdentKey, slot: Slot) {
        let (low, high) = split(key);
        let mut hole = self.position(low, high);
        if self.entries[hole].slot != slot {
            return;
        }
        self.len -= 1;
        // Moves back each entry after the hole that may sit there (its
        // home is not between the hole and it), so that lookups, which
        // stop at the first empty entry, still find it: no tombstones.
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let e = self.entries[at];
            if e.slot == Slot::MAX {
                break;
            }
            let home = e.low as usize & mask;
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = at;
            }
        }
        self.entries[hole] = EMPTY;
    }

    /// Twice the entries, each placed again.
    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, bigger);
        for e in old.into_iter().filter(|e| e.slot != Slot::MAX) {
            let at = self.position(e.low, e.high);
            self.entries[at] = e;
        }
    }

    /// Identifiers indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    fn the_index_agrees_with_a_map_through_growth_and_removals() {
        // Keys crowded into few homes (low bits from a small range) make
        // long runs, wrapping round the end, for removals to close.
        let mut index = Index::default();
        let mut model = std::collections::HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000u32 {
            let r = next();
            let low = match round % 3 {
                0 => r % 64 + 1_000,
                1 => u64::MAX - r % 16,
                _ => r % 5_000,
            };
            let key = IdentKey::from_bits(u128::from(low) | u128::from(r >> 62) << 64);
            match r % 5 {
                0 | 1 => {
                    let slot = (r >> 8) as u32 % 1_000;
                    assert_eq!(index.set(key, slot), model.insert(key, slot), "{round}");
                }
                2 | 3 => {
                    let slot = model.get(&key).copied().unwrap_or(7);
                    let slot = if r & 64 == 0 { slot } else { slot + 1 };
                    index.remove(key, slot);
                    if model.get(&key) == Some(&slot) {
                        model.remove(&key);
                    }
                }
                _ => {
                    index.repoint(key, 3);
                    if let Some(s) = model.get_mut(&key) {
                        *s = 3;
                    }
                }
            }
            if round % 1_000 == 0 || round > 19_900 {
                assert_eq!(index.len(), model.len(), "{round}");
                for (k, v) in &model {
                    assert_eq!(index.get(*k), Some(*v), "{round}");
                }
            }
        }
        assert!(index.entries.len() > MIN_ENTRIES, "it grew");
        for (k, v) in model.clone() {
            index.remove(k, v);
        }
        assert!(index.is_empty());
        assert!(index.entries.iter().all(|e| *e == EMPTY));
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

//! A flow's id: written as 17 URL-safe characters, kept as a number.
//!
//! `f`, the second the flow was first seen (6 digits of 6 bits, up to the
//! year 4147), and a 60-bit hash of the identifier it was first seen by
//! (10 digits). Both come from the observation, so a replay after a restart
//! gives the same ids.
//!
//! Ids sort by time, like a UUIDv7's: a store appends new flows at the end
//! of its indexes (by id, and its flow keys by flow). Ids that were a bare
//! hash put each new flow at a random place, and with a large store every
//! write dirtied a page per flow and index (measured: a write's commit time
//! per flow doubled over a minute at 60k spans/s).
//!
//! The correlator keeps the number (16 bytes, no allocation, compared and
//! hashed as an integer) in its maps, its index and its changed set, and
//! writes the text only where a flow leaves it (summaries, removals).

use std::fmt;
use std::hash::{Hash, Hasher};

use super::ids::IdentRef;

/// Digits of a flow id, in ASCII order, so that ids compare as the numbers
/// they spell (URL-safe: `-`, `0-9`, `A-Z`, `_`, `a-z`).
const ID_DIGITS: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
/// Digits of the second first seen, and of the hash.
const TIME_DIGITS: u32 = 6;
const HASH_DIGITS: u32 = 10;
const HASH_BITS: u32 = 6 * HASH_DIGITS;

/// A flow's id. Orders as its text does (by the second first seen, then the hash).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u128);

impl FlowId {
    /// The greatest id (for ranges over ordered sets keyed by id).
    pub const MAX: FlowId = FlowId(u128::MAX);

    /// The id of a flow first seen at `first_seen_unix_us`, by `first`.
    pub fn new(first: Option<&IdentRef<'_>>, first_seen_unix_us: i64) -> Self {
        // FNV-1a: stable across processes and releases, unlike DefaultHasher.
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for b in bytes {
                    self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        impl fmt::Write for Fnv {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.write(s.as_bytes());
                Ok(())
            }
        }
        // As hashing the identifier's text as a `String` did (its bytes,
        // then 0xff), without making the text.
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        if let Some(first) = first {
            first.write_text(&mut h).expect("hashing text cannot fail");
        }
        h.write_u8(0xff);
        let secs = (first_seen_unix_us.max(0) / 1_000_000).min((1 << 36) - 1) as u128;
        Self(secs << HASH_BITS | u128::from(h.finish() >> 4))
    }

    /// Its bytes, for hashing.
    pub fn to_le_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// An id of these bits.
    #[cfg(test)]
    pub fn from_bits(bits: u128) -> Self {
        Self(bits)
    }

    /// Reads an id as written; `None` for text that is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix('f')?.as_bytes();
        if digits.len() != (TIME_DIGITS + HASH_DIGITS) as usize {
            return None;
        }
        let mut value = 0u128;
        for d in digits {
            let digit = ID_DIGITS.binary_search(d).ok()?;
            value = value << 6 | digit as u128;
        }
        Some(Self(value))
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [b'f'; 1 + (TIME_DIGITS + HASH_DIGITS) as usize];
        for (i, out) in text[1..].iter_mut().rev().enumerate() {
            *out = ID_DIGITS[(self.0 >> (6 * i) & 63) as usize];
        }
        f.write_str(std::str::from_utf8(&text).expect("ASCII digits"))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{FlowId, ID_DIGITS, IdentRef};

    const SECOND: i64 = 1_000_000;

    fn key(k: &str) -> IdentRef<'_> {
        IdentRef::Key("shop.order_id", Cow::Borrowed(k))
    }

    #[test]
    fn flow_ids_sort_by_the_second_first_seen() {
        let t = 1_795_000_000 * SECOND;
        let ids: Vec<String> = (0..500)
            .map(|i| FlowId::new(Some(&key(&format!("ord-{i}"))), t + i * SECOND / 3).to_string())
            .collect();
        for pair in ids.windows(2) {
            let (a, b) = (&pair[0][..7], &pair[1][..7]);
            assert!(a <= b, "{} then {}: not in time order", pair[0], pair[1]);
        }
        assert!(ids[0] < ids[499]);
        // Years apart too, and a time before 1970 sorts first.
        let text = |at| FlowId::new(None, at).to_string();
        assert!(text(-5) < text(t));
        assert!(text(t) < text(t + 3_000 * 86_400 * SECOND));
    }

    #[test]
    fn flow_ids_are_stable_distinct_and_url_safe() {
        let t = 1_795_000_000 * SECOND + 123;
        assert_eq!(
            FlowId::new(Some(&key("ord-1")), t),
            FlowId::new(Some(&key("ord-1")), t)
        );
        let mut seen: Vec<String> = (0..10_000)
            .map(|i| FlowId::new(Some(&key(&format!("ord-{i}"))), t).to_string())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10_000, "two identifiers got one id");
        for id in &seen {
            assert_eq!(id.len(), 17);
            assert!(id.starts_with('f'));
            assert!(id[1..].bytes().all(|b| ID_DIGITS.contains(&b)), "{id}");
        }
        assert!(
            ID_DIGITS.windows(2).all(|w| w[0] < w[1]),
            "digits out of ASCII order"
        );
    }

    #[test]
    fn flow_ids_read_back_as_written_and_order_as_their_text() {
        let t = 1_795_000_000 * SECOND;
        let ids: Vec<FlowId> = (0..2_000)
            .map(|i| FlowId::new(Some(&key(&format!("ord-{i}"))), t + i * SECOND / 7))
            .collect();
        for id in &ids {
            assert_eq!(FlowId::parse(&id.to_string()), Some(*id));
        }
        let mut by_number = ids.clone();
        by_number.sort();
        let mut by_text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        by_text.sort();
        let by_number: Vec<String> = by_number.iter().map(ToString::to_string).collect();
        assert_eq!(by_number, by_text);
        // Not ids: refused, not misread.
        for text in [
            "",
            "f",
            "g0000000000000000",
            "f000000000000000",
            "f00000000000000000",
            "f00000000000000.0",
        ] {
            assert_eq!(FlowId::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn flow_ids_are_those_of_earlier_releases() {
        // Written by the release that kept ids as text: a replay after an
        // upgrade must find the same flows.
        let t = 1_795_000_000 * SECOND + 123;
        assert_eq!(
            FlowId::new(Some(&key("ord-1")), t).to_string(),
            EARLIER_ORD_1
        );
    }

    // `flow_id(Some(&Ident::Key("shop.order_id", "ord-1")), t)` before this module.
    const EARLIER_ORD_1: &str = "f0ezNQ-IfBOtFg5F8";
}

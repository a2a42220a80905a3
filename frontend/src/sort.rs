//! Sorting and ordered collecting that cost the wasm bundle little.
//!
//! Each `slice::sort_by*` call with a new element type or comparator is a new
//! copy of the standard library's stable sort (driftsort, 3–5 KB of wasm
//! each), and so is each `collect()` into a `BTreeMap`/`BTreeSet` (which
//! sorts before building the tree). With ~25 such call sites, those copies
//! were about 7 % of the bundle. Here, the one sort in the bundle sorts
//! indices (`usize`) through a `&dyn Fn` comparator; the per-type code left
//! is a small in-place permutation. Results are exactly those of the
//! standard stable sort, and of `collect()` (the last of equal keys wins).

use std::cmp::Ordering;

/// Sorts `items` by `compare`, stably (like `slice::sort_by`).
pub fn sort_by<T>(items: &mut [T], compare: impl Fn(&T, &T) -> Ordering) {
    let order = sorted_indices(items.len(), &|a, b| compare(&items[a], &items[b]));
    permute(items, order);
}

/// Sorts `items` by `key`, stably (like `slice::sort_by_key`).
pub fn sort_by_key<T, K: Ord>(items: &mut [T], key: impl Fn(&T) -> K) {
    sort_by(items, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `items` by their natural order, stably (like `slice::sort`).
pub fn sort<T: Ord>(items: &mut [T]) {
    sort_by(items, T::cmp);
}

/// The indices `0..len` in the order `compare` puts them (stable): the only
/// instance of the standard sort in the bundle.
#[inline(never)]
pub(crate) fn sorted_indices(len: usize, compare: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|a, b| compare(*a, *b));
    order
}

/// Rearranges `items` so that `items[i]` becomes the old `items[order[i]]`,
/// in place and in linear time (following the permutation's cycles;
/// `order` marks the positions done).
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    const DONE: usize = usize::MAX;
    for start in 0..items.len() {
        let mut at = start;
        while order[at] != DONE {
            let from = order[at];
            order[at] = DONE;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// `collect()` into an ordered collection by inserting one item at a time,
/// so that it needs no sort (see the module docs). For `BTreeMap`, the last
/// value of equal keys wins, as with `collect()`.
pub trait CollectTree: Iterator + Sized {
    /// Collects into `C` (a `BTreeMap` or `BTreeSet`) by inserting.
    fn collect_tree<C: Default + Extend<Self::Item>>(self) -> C {
        let mut collection = C::default();
        collection.extend(self);
        collection
    }
}

impl<I: Iterator> CollectTree for I {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A small deterministic generator (no dependency) for varied inputs.
    fn pseudo_random(seed: u64, len: usize, modulo: u64) -> Vec<u64> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % modulo
            })
            .collect()
    }

    #[test]
    fn sorts_exactly_like_the_standard_stable_sort() {
        for seed in 0..200 {
            let len = (seed % 70) as usize;
            // (key, original position): equal keys show whether order is kept.
            let input: Vec<(u64, usize)> = pseudo_random(seed, len, 1 + seed % 9)
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, i))
                .collect();
            let mut expected = input.clone();
            expected.sort_by_key(|p| p.0);
            let mut ours = input.clone();
            sort_by_key(&mut ours, |p| p.0);
            assert_eq!(ours, expected, "seed {seed}");

            let mut expected = input.clone();
            expected.sort_by_key(|p| std::cmp::Reverse(p.0));
            let mut ours = input;
            sort_by(&mut ours, |a, b| b.0.cmp(&a.0));
            assert_eq!(ours, expected, "seed {seed}, reversed");
        }
    }

    #[test]
    fn sorts_owned_values_without_losing_any() {
        let mut names: Vec<String> = ["payment", "order", "stock", "order", ""]
            .map(String::from)
            .to_vec();
        sort(&mut names);
        assert_eq!(names, ["", "order", "order", "payment", "stock"]);
    }

    #[test]
    fn collects_like_collect_with_the_last_duplicate_winning() {
        let pairs = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)];
        let ours: BTreeMap<&str, i32> = pairs.iter().copied().collect_tree();
        let expected: BTreeMap<&str, i32> = pairs.iter().copied().collect();
        assert_eq!(ours, expected);
        let ours: BTreeSet<i32> = [3, 1, 3, 2].into_iter().collect_tree();
        assert_eq!(ours.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    }
}

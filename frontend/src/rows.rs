//! Keyed live rows: one signal per row, so that a live update touches only
//! the rows (and cells) that changed.
//!
//! A page computes the rows it shows from the [`crate::state::DashboardState`]
//! on every update (cheap: a few dozen row view models). [`plan`] (pure,
//! tested natively) matches them with the rows shown by key and says which
//! rows stay, which are new and whether the order moved; [`LiveRows`] turns
//! that into signal writes: a changed row sets its own signal (its cells
//! re-render, nothing else), and the key list — what a keyed `<For>`
//! iterates — is written only when the visible order or membership changed.
//! So a row keeps its DOM for as long as its key is shown.
//!
//! The matching works on indices through one comparison callback, so that it
//! is compiled once, not once per row type (the wasm is smaller); only a thin
//! typed shell is generic.

use std::cmp::Ordering;

use leptos::prelude::*;

/// How the next rows relate to the rows shown (pure; no Leptos, no key type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rows to show, in display order: the index of the row among the
    /// next rows, and the index of the row with the same key among the rows
    /// shown (`None` for a new key). A repeated key keeps its first row.
    pub kept: Vec<(usize, Option<usize>)>,
    /// Positions in `kept`, in key order (for a binary search by key).
    pub by_key: Vec<usize>,
    /// Whether the key list (membership or order) differs.
    pub order_changed: bool,
}

/// Matches `next` rows with `shown` rows (whose keys are unique). `cmp`
/// compares the keys of two rows numbered in one sequence: `0..shown` are
/// the rows shown, `shown..shown + next` the next rows.
pub fn plan(shown: usize, next: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Plan {
    // Stable: within one key, the row shown comes first, then the next rows in order.
    let all = crate::sort::sorted_indices(shown + next, cmp);
    let mut source: Vec<Option<Option<usize>>> = vec![None; next];
    let mut in_key_order = Vec::new();
    for group in all.chunk_by(|&a, &b| cmp(a, b).is_eq()) {
        let old = group.first().copied().filter(|&i| i < shown);
        if let Some(&first) = group.iter().find(|&&i| i >= shown) {
            source[first - shown] = Some(old);
            in_key_order.push(first - shown);
        }
    }
    let mut position = vec![0; next];
    let mut kept = Vec::new();
    for (index, old) in source.into_iter().enumerate() {
        if let Some(old) = old {
            position[index] = kept.len();
            kept.push((index, old));
        }
    }
    let order_changed =
        kept.len() != shown || kept.iter().enumerate().any(|(p, &(_, old))| old != Some(p));
    Plan {
        by_key: in_key_order.into_iter().map(|i| position[i]).collect(),
        kept,
        order_changed,
    }
}

/// [`plan`] for typed keys: those shown, then those of the next rows.
fn plan_keys<K: Ord, V>(shown: &[K], next: &[(K, V)]) -> Plan {
    let at = |i: usize| shown.get(i).unwrap_or_else(|| &next[i - shown.len()].0);
    plan(shown.len(), next.len(), &|a, b| at(a).cmp(at(b)))
}

/// The signals behind a [`LiveRows`], in display order.
struct Store<K, V> {
    keys: Vec<K>,
    signals: Vec<ArcRwSignal<V>>,
    /// Positions in `keys`, in key order.
    by_key: Vec<usize>,
}

/// Rows recomputed on every update, written to one signal per row (see the
/// module docs). Iterate [`LiveRows::keys`] with a keyed `<For>` and read
/// each row with [`LiveRows::row`].
pub struct LiveRows<K: 'static, V: 'static> {
    keys: RwSignal<Vec<K>>,
    store: StoredValue<Store<K, V>>,
}

impl<K: 'static, V: 'static> std::fmt::Debug for LiveRows<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRows").finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> Clone for LiveRows<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: 'static, V: 'static> Copy for LiveRows<K, V> {}

impl<K, V> LiveRows<K, V>
where
    K: Clone + Ord + Send + Sync + 'static,
    V: PartialEq + Send + Sync + 'static,
{
    /// Rows from `compute`, which is re-run (in an effect) whenever what it
    /// reads changes; the first rows are there at once.
    pub fn new(compute: impl Fn() -> Vec<(K, V)> + Send + Sync + 'static) -> Self {
        let rows = Self {
            keys: RwSignal::new(Vec::new()),
            store: StoredValue::new(Store {
                keys: Vec::new(),
                signals: Vec::new(),
                by_key: Vec::new(),
            }),
        };
        rows.sync(untrack(&compute));
        Effect::new(move |_| rows.sync(compute()));
        rows
    }

    /// The keys shown, in order: written only when they change.
    pub fn keys(&self) -> RwSignal<Vec<K>> {
        self.keys
    }

    /// The live row under `key` (an arena signal owned by the caller, so it
    /// goes with the row's view); `None` for a key not shown.
    pub fn row(&self, key: &K) -> Option<RwSignal<V>> {
        self.store
            .with_value(|s| {
                let found = s.by_key.binary_search_by(|&p| s.keys[p].cmp(key));
                found.ok().map(|i| s.signals[s.by_key[i]].clone())
            })
            .map(RwSignal::from)
    }

    /// Shows `rows`: sets the signals of changed rows only, then the keys.
    /// The writes happen after the store is released: a subscriber may read it.
    fn sync(&self, rows: Vec<(K, V)>) {
        let Some((writes, order)) = self.store.try_update_value(|store| {
            let plan = plan_keys(&store.keys, &rows);
            let old = std::mem::take(&mut store.signals);
            let mut keys = Vec::with_capacity(plan.kept.len());
            let mut writes = Vec::new();
            // `kept` is in the order of `rows`: walk both together.
            let mut kept = plan.kept.iter().peekable();
            for (index, (key, value)) in rows.into_iter().enumerate() {
                let Some(&&(at, shown)) = kept.peek() else {
                    break;
                };
                if at != index {
                    continue;
                }
                kept.next();
                let signal = match shown {
                    Some(i) => {
                        let signal = old[i].clone();
                        if signal.with_untracked(|v| *v != value) {
                            writes.push((signal.clone(), value));
                        }
                        signal
                    }
                    None => ArcRwSignal::new(value),
                };
                store.signals.push(signal);
                keys.push(key);
            }
            store.keys = keys;
            store.by_key = plan.by_key;
            (writes, plan.order_changed.then(|| store.keys.clone()))
        }) else {
            return;
        };
        for (signal, value) in writes {
            signal.set(value);
        }
        if let Some(order) = order {
            self.keys.set(order);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan for rows keyed `next` after rows keyed `shown`.
    fn plan_of(shown: &[&str], next: &[&str]) -> Plan {
        let next: Vec<(&str, ())> = next.iter().map(|k| (*k, ())).collect();
        plan_keys(shown, &next)
    }

    /// The kept rows as (key, was it shown).
    fn kept<'a>(plan: &Plan, next: &[&'a str]) -> Vec<(&'a str, bool)> {
        plan.kept
            .iter()
            .map(|&(i, old)| (next[i], old.is_some()))
            .collect()
    }

    #[test]
    fn first_rows_are_all_new() {
        let plan = plan_of(&[], &["b", "a"]);
        assert_eq!(kept(&plan, &["b", "a"]), [("b", false), ("a", false)]);
        assert!(plan.order_changed);
        assert_eq!(plan.by_key, [1, 0], "a sorts before b");
    }

    #[test]
    fn the_same_rows_again_keep_the_order() {
        let plan = plan_of(&["a", "b"], &["a", "b"]);
        assert_eq!(plan.kept, [(0, Some(0)), (1, Some(1))]);
        assert!(!plan.order_changed, "the keyed list must not be rewritten");
    }

    #[test]
    fn a_move_changes_the_order() {
        let plan = plan_of(&["a", "b"], &["b", "a"]);
        assert_eq!(plan.kept, [(0, Some(1)), (1, Some(0))]);
        assert!(plan.order_changed);
        assert_eq!(plan.by_key, [1, 0]);
    }

    #[test]
    fn rows_come_and_go() {
        let plan = plan_of(&["a", "b"], &["c", "a"]);
        assert_eq!(plan.kept, [(0, None), (1, Some(0))]);
        assert!(plan.order_changed);
        assert_eq!(plan.by_key, [1, 0]);
    }

    #[test]
    fn a_repeated_key_keeps_its_first_row() {
        let plan = plan_of(&[], &["a", "a"]);
        assert_eq!(plan.kept, [(0, None)]);
        assert_eq!(plan.by_key, [0]);
        let plan = plan_of(&["a"], &["b", "a", "a"]);
        assert_eq!(plan.kept, [(0, None), (1, Some(0))]);
    }

    #[test]
    fn emptying_removes_every_row() {
        let plan = plan_of(&["a"], &[]);
        assert!(plan.kept.is_empty() && plan.by_key.is_empty());
        assert!(plan.order_changed);
    }

    #[test]
    fn a_dropped_tail_changes_the_order() {
        let plan = plan_of(&["a", "b"], &["a"]);
        assert_eq!(plan.kept, [(0, Some(0))]);
        assert!(plan.order_changed);
    }
}

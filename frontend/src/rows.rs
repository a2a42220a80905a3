//! Keyed live rows: one signal per row, so that a live update touches only
//! the rows (and cells) that changed.
//!
//! A page computes the rows it shows from the [`crate::state::DashboardState`]
//! on every update (cheap: a few dozen row view models). [`RowSet::apply`]
//! (pure, tested natively) compares them with the rows shown and says which
//! were added, changed or removed and whether the order moved; [`LiveRows`]
//! turns that into signal writes: a changed row sets its own signal (its
//! cells re-render, nothing else), and the key list — what a keyed `<For>`
//! iterates — is written only when the visible order or membership changed.
//! So a row keeps its DOM for as long as its key is shown.

use std::collections::HashMap;
use std::hash::Hash;

use leptos::prelude::*;

/// What changed between the rows shown and the next ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDiff<K> {
    /// New keys, in display order.
    pub added: Vec<K>,
    /// Keys still shown whose value differs.
    pub changed: Vec<K>,
    /// Keys no longer shown.
    pub removed: Vec<K>,
    /// Whether the key list (membership or order) differs.
    pub order_changed: bool,
}

impl<K> RowDiff<K> {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && !self.order_changed
    }
}

/// The rows shown: their order and their values (pure; no Leptos).
#[derive(Debug, Clone)]
pub struct RowSet<K, V> {
    order: Vec<K>,
    values: HashMap<K, V>,
}

impl<K, V> Default for RowSet<K, V> {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            values: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash, V: PartialEq> RowSet<K, V> {
    /// Replaces the rows with `rows` (in display order; a repeated key keeps
    /// its first row) and says what changed.
    pub fn apply(&mut self, rows: Vec<(K, V)>) -> RowDiff<K> {
        let mut next: HashMap<K, V> = HashMap::with_capacity(rows.len());
        let mut order = Vec::with_capacity(rows.len());
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        for (key, value) in rows {
            if next.contains_key(&key) {
                continue;
            }
            match self.values.get(&key) {
                None => added.push(key.clone()),
                Some(old) if *old != value => changed.push(key.clone()),
                Some(_) => {}
            }
            order.push(key.clone());
            next.insert(key, value);
        }
        let removed = self
            .order
            .iter()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        let order_changed = order != self.order;
        self.order = order;
        self.values = next;
        RowDiff {
            added,
            changed,
            removed,
            order_changed,
        }
    }

    /// The keys shown, in order.
    pub fn order(&self) -> &[K] {
        &self.order
    }

    /// The row shown under `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.values.get(key)
    }

    /// Rows shown.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no row is shown.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The signals behind a [`LiveRows`].
struct Store<K, V> {
    set: RowSet<K, V>,
    signals: HashMap<K, ArcRwSignal<V>>,
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
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + PartialEq + Send + Sync + 'static,
{
    /// Rows from `compute`, which is re-run (in an effect) whenever what it
    /// reads changes; the first rows are there at once.
    pub fn new(compute: impl Fn() -> Vec<(K, V)> + Send + Sync + 'static) -> Self {
        let rows = Self {
            keys: RwSignal::new(Vec::new()),
            store: StoredValue::new(Store {
                set: RowSet::default(),
                signals: HashMap::new(),
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
            .with_value(|s| s.signals.get(key).cloned())
            .map(RwSignal::from)
    }

    /// Shows `rows`: sets the signals of changed rows only, then the keys.
    /// The writes happen after the store is released: a subscriber may read it.
    fn sync(&self, rows: Vec<(K, V)>) {
        let Some((writes, order)) = self.store.try_update_value(|store| {
            let diff = store.set.apply(rows);
            for key in &diff.removed {
                store.signals.remove(key);
            }
            for key in &diff.added {
                if let Some(value) = store.set.get(key) {
                    store
                        .signals
                        .insert(key.clone(), ArcRwSignal::new(value.clone()));
                }
            }
            let writes: Vec<(ArcRwSignal<V>, V)> = diff
                .changed
                .iter()
                .filter_map(|key| {
                    Some((store.signals.get(key)?.clone(), store.set.get(key)?.clone()))
                })
                .collect();
            (
                writes,
                diff.order_changed.then(|| store.set.order().to_vec()),
            )
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

    fn rows(pairs: &[(&'static str, u32)]) -> Vec<(&'static str, u32)> {
        pairs.to_vec()
    }

    #[test]
    fn first_rows_are_all_added() {
        let mut set = RowSet::default();
        let diff = set.apply(rows(&[("a", 1), ("b", 2)]));
        assert_eq!(diff.added, ["a", "b"]);
        assert!(diff.changed.is_empty() && diff.removed.is_empty());
        assert!(diff.order_changed);
        assert_eq!(set.order(), ["a", "b"]);
        assert_eq!(set.get(&"b"), Some(&2));
    }

    #[test]
    fn the_same_rows_again_change_nothing() {
        let mut set = RowSet::default();
        set.apply(rows(&[("a", 1), ("b", 2)]));
        let diff = set.apply(rows(&[("a", 1), ("b", 2)]));
        assert!(diff.is_empty(), "{diff:?}");
    }

    #[test]
    fn a_changed_value_touches_only_its_row_and_not_the_order() {
        let mut set = RowSet::default();
        set.apply(rows(&[("a", 1), ("b", 2), ("c", 3)]));
        let diff = set.apply(rows(&[("a", 1), ("b", 20), ("c", 3)]));
        assert_eq!(diff.changed, ["b"]);
        assert!(diff.added.is_empty() && diff.removed.is_empty());
        assert!(!diff.order_changed, "the keyed list must not be rewritten");
        assert_eq!(set.get(&"b"), Some(&20));
    }

    #[test]
    fn a_move_changes_the_order_but_no_value() {
        let mut set = RowSet::default();
        set.apply(rows(&[("a", 1), ("b", 2)]));
        let diff = set.apply(rows(&[("b", 2), ("a", 1)]));
        assert!(diff.order_changed);
        assert!(diff.added.is_empty() && diff.changed.is_empty() && diff.removed.is_empty());
        assert_eq!(set.order(), ["b", "a"]);
    }

    #[test]
    fn rows_come_and_go() {
        let mut set = RowSet::default();
        set.apply(rows(&[("a", 1), ("b", 2)]));
        let diff = set.apply(rows(&[("c", 3), ("a", 1)]));
        assert_eq!(diff.added, ["c"]);
        assert_eq!(diff.removed, ["b"]);
        assert!(diff.order_changed);
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(&"b"), None);
    }

    #[test]
    fn a_repeated_key_keeps_its_first_row() {
        let mut set = RowSet::default();
        let diff = set.apply(rows(&[("a", 1), ("a", 2)]));
        assert_eq!(diff.added, ["a"]);
        assert_eq!(set.order(), ["a"]);
        assert_eq!(set.get(&"a"), Some(&1));
    }

    #[test]
    fn emptying_removes_every_row() {
        let mut set = RowSet::default();
        set.apply(rows(&[("a", 1)]));
        let diff = set.apply(Vec::new());
        assert_eq!(diff.removed, ["a"]);
        assert!(set.is_empty());
    }
}

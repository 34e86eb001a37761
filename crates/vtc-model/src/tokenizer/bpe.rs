//! The BPE merge loop over token ids.
//!
//! A [`MergeTable`] maps an adjacent pair of ids to `(priority, merged id)`; the loop
//! repeatedly merges the pair of lowest priority value, leftmost first, until no adjacent
//! pair is in the table. Byte-level BPE uses the merge rank as priority. (SentencePiece-style
//! BPE fits the same loop: its table holds every pair of tokens whose concatenation is a
//! token, with the priority ordered by that token's score.)
//!
//! Short words (the vast majority) use a quadratic scan over a cached array of pair
//! priorities, which does one table lookup per pair formed; long words (long runs of
//! punctuation or whitespace) use a heap with lazy invalidation, O(n log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::hash::FastMap;

/// No pair / no symbol.
const NONE: u32 = u32::MAX;

/// Words up to this many symbols use the scan; longer ones the heap.
const SMALL_WORD: usize = 48;

/// Adjacent-pair lookup: `(left, right) -> (priority, merged)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct MergeTable {
    map: FastMap<u64, (u32, u32)>,
}

#[inline]
fn key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

impl MergeTable {
    /// An empty table with room for `pairs` pairs.
    pub(crate) fn with_capacity(pairs: usize) -> Self {
        let mut map = FastMap::default();
        map.reserve(pairs);
        Self { map }
    }

    /// Add a pair; if the pair is already present the earlier (lower) priority stays.
    pub(crate) fn insert(&mut self, left: u32, right: u32, priority: u32, merged: u32) {
        let e = self
            .map
            .entry(key(left, right))
            .or_insert((priority, merged));
        if priority < e.0 {
            *e = (priority, merged);
        }
    }

    /// Number of pairs.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// `(priority, merged)` of a pair.
    #[inline]
    pub(crate) fn get(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        self.map.get(&key(left, right)).copied()
    }

    /// Priority and merged id, with [`NONE`] priority when the pair does not merge.
    #[inline]
    fn rank(&self, left: u32, right: u32) -> (u32, u32) {
        self.get(left, right).unwrap_or((NONE, NONE))
    }
}

/// One symbol of the heap variant: a doubly linked list over the word's original positions.
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
}

/// Buffers reused across words.
#[derive(Default)]
pub(crate) struct Scratch {
    ranks: Vec<(u32, u32)>,
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<(u32, u32)>>,
}

/// Merge `word` (the initial symbol ids) in place.
pub(crate) fn merge(table: &MergeTable, word: &mut Vec<u32>, scratch: &mut Scratch) {
    if word.len() < 2 {
        return;
    }
    if word.len() <= SMALL_WORD {
        merge_scan(table, word, &mut scratch.ranks);
    } else {
        merge_heap(table, word, scratch);
    }
}

/// Quadratic variant: `ranks[i]` caches the pair (word[i], word[i + 1]).
fn merge_scan(table: &MergeTable, word: &mut Vec<u32>, ranks: &mut Vec<(u32, u32)>) {
    ranks.clear();
    ranks.extend(word.windows(2).map(|w| table.rank(w[0], w[1])));
    loop {
        let mut best = NONE;
        let mut at = 0;
        for (i, r) in ranks.iter().enumerate() {
            if r.0 < best {
                best = r.0;
                at = i;
            }
        }
        if best == NONE {
            return;
        }
        word[at] = ranks[at].1;
        word.remove(at + 1);
        ranks.remove(at);
        if at > 0 {
            ranks[at - 1] = table.rank(word[at - 1], word[at]);
        }
        if at + 1 < word.len() {
            ranks[at] = table.rank(word[at], word[at + 1]);
        }
    }
}

/// Heap variant: entries `(priority, position of the left symbol)`, stale ones skipped.
fn merge_heap(table: &MergeTable, word: &mut Vec<u32>, scratch: &mut Scratch) {
    let n = word.len();
    let symbols = &mut scratch.symbols;
    let heap = &mut scratch.heap;
    symbols.clear();
    heap.clear();
    symbols.extend(word.iter().enumerate().map(|(i, &id)| Symbol {
        id,
        prev: if i == 0 { NONE } else { i as u32 - 1 },
        next: if i + 1 == n { NONE } else { i as u32 + 1 },
    }));
    for (i, w) in word.windows(2).enumerate() {
        if let Some((p, _)) = table.get(w[0], w[1]) {
            heap.push(Reverse((p, i as u32)));
        }
    }
    while let Some(Reverse((priority, pos))) = heap.pop() {
        let left = symbols[pos as usize];
        if left.id == NONE || left.next == NONE {
            continue; // merged away, or no right neighbour any more
        }
        let right = symbols[left.next as usize];
        // Priorities identify pairs, so an entry is current iff its pair still has it.
        let Some((p, merged)) = table.get(left.id, right.id) else {
            continue;
        };
        if p != priority {
            continue;
        }
        symbols[pos as usize].id = merged;
        symbols[pos as usize].next = right.next;
        symbols[left.next as usize].id = NONE;
        if right.next != NONE {
            symbols[right.next as usize].prev = pos;
            if let Some((p, _)) = table.get(merged, symbols[right.next as usize].id) {
                heap.push(Reverse((p, pos)));
            }
        }
        if left.prev != NONE
            && let Some((p, _)) = table.get(symbols[left.prev as usize].id, merged)
        {
            heap.push(Reverse((p, left.prev)));
        }
    }
    word.clear();
    let mut at = 0u32;
    while at != NONE {
        let s = symbols[at as usize];
        word.push(s.id);
        at = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: merge the lowest-priority leftmost pair, rescanning everything each time.
    fn naive(table: &MergeTable, word: &[u32]) -> Vec<u32> {
        let mut w = word.to_vec();
        loop {
            let best = (0..w.len().saturating_sub(1))
                .filter_map(|i| table.get(w[i], w[i + 1]).map(|(p, m)| (p, i, m)))
                .min();
            let Some((_, i, m)) = best else { return w };
            w[i] = m;
            w.remove(i + 1);
        }
    }

    /// Symbols 0..4; merges build ids 4.. from random pairs of existing ids.
    fn table_strategy() -> impl Strategy<Value = MergeTable> {
        proptest::collection::vec((0u32..64, 0u32..64), 0..60).prop_map(|pairs| {
            let mut t = MergeTable::default();
            for (rank, (a, b)) in pairs.into_iter().enumerate() {
                let next = 4 + rank as u32; // the id this merge makes
                t.insert(a % next, b % next, rank as u32, next);
            }
            t
        })
    }

    proptest! {
        #[test]
        fn scan_and_heap_agree_with_naive(
            table in table_strategy(),
            word in proptest::collection::vec(0u32..4, 0..120),
        ) {
            let want = naive(&table, &word);
            let mut a = word.clone();
            merge_scan(&table, &mut a, &mut Vec::new());
            let mut b = word.clone();
            if b.len() >= 2 {
                merge_heap(&table, &mut b, &mut Scratch::default());
            }
            let mut c = word.clone();
            merge(&table, &mut c, &mut Scratch::default());
            prop_assert_eq!(&a, &want);
            prop_assert_eq!(&b, &want);
            prop_assert_eq!(&c, &want);
        }
    }

    #[test]
    fn leftmost_pair_wins_ties() {
        let mut t = MergeTable::default();
        t.insert(0, 0, 0, 1);
        for w in [vec![0, 0, 0], vec![0; 100]] {
            let mut a = w.clone();
            merge(&t, &mut a, &mut Scratch::default());
            let mut want = vec![1; w.len() / 2];
            if w.len() % 2 == 1 {
                want.push(0);
            }
            assert_eq!(a, want);
        }
    }
}

//! The run tree: a text field's items in document order.
//!
//! Items (characters, tombstones included) are stored as run-length-encoded [`Run`]s
//! in a B-tree whose internal nodes keep, per child, the counts of visible chars,
//! UTF-16 units and UTF-8 bytes and of all items (raw, tombstones included). Leaves
//! are linked both ways so scans move along the document without climbing the tree.
//!
//! A run is a stretch of items with consecutive local versions (LVs) where item `k > 0`
//! has item `k - 1` as its left origin and all items share the run's right origin, and
//! which are all visible or all deleted. That is exactly what typing left to right
//! produces, so a typed word is one entry.
//!
//! Invariants (checked by [`Tree::check`]): every node's counts equal the sums of its
//! children; every child's parent pointer names its parent; the leaf chain visits the
//! leaves in document order; `index[lv]` names the leaf holding item `lv`; only the
//! single leaf of an empty tree is empty.

use crate::error::EditError;

/// A local version: a document-local number for every operation, in the order they
/// were applied here.
pub(crate) type Lv = u32;
/// "No item": the document start as a left origin, the document end as a right origin.
pub(crate) const NONE: Lv = u32::MAX;

const LEAF_CAP: usize = 24;
const NODE_CAP: usize = 16;

/// A run of items; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Run {
    pub lv: Lv,
    pub len: u32,
    pub origin_left: Lv,
    pub origin_right: Lv,
    /// Where the run's text starts in the document's content arena.
    pub byte_start: u32,
    pub byte_len: u32,
    pub utf16_len: u32,
    /// How many delete operations hide these items and are not undone (0: visible).
    pub dels: u32,
}

impl Run {
    /// Whether the items are hidden.
    #[inline]
    pub fn deleted(&self) -> bool {
        self.dels > 0
    }

    fn counts(&self) -> Counts {
        if self.deleted() {
            Counts {
                raw: self.len,
                ..Counts::default()
            }
        } else {
            Counts {
                chars: self.len,
                utf16: self.utf16_len,
                bytes: self.byte_len,
                raw: self.len,
            }
        }
    }

    fn is_ascii(&self) -> bool {
        self.byte_len == self.len
    }

    /// Whether `next` continues this run (and the two may become one entry).
    fn can_append(&self, next: &Run) -> bool {
        self.lv + self.len == next.lv
            && next.origin_left == next.lv - 1
            && next.origin_right == self.origin_right
            && self.dels == next.dels
            && self.byte_start + self.byte_len == next.byte_start
    }

    fn append(&mut self, next: &Run) {
        self.len += next.len;
        self.byte_len += next.byte_len;
        self.utf16_len += next.utf16_len;
    }

    /// Splits off items `k..` and returns them; `self` keeps `..k`.
    fn split(&mut self, k: u32, content: &str) -> Run {
        debug_assert!(k > 0 && k < self.len);
        let (bytes, utf16) = if self.is_ascii() {
            (k, k)
        } else {
            prefix_units(&content[self.byte_start as usize..], k)
        };
        let rest = Run {
            lv: self.lv + k,
            len: self.len - k,
            origin_left: self.lv + k - 1,
            origin_right: self.origin_right,
            byte_start: self.byte_start + bytes,
            byte_len: self.byte_len - bytes,
            utf16_len: self.utf16_len - utf16,
            dels: self.dels,
        };
        self.len = k;
        self.byte_len = bytes;
        self.utf16_len = utf16;
        rest
    }

    pub fn text<'c>(&self, content: &'c str) -> &'c str {
        &content[self.byte_start as usize..(self.byte_start + self.byte_len) as usize]
    }

    /// Visible length in `unit` (0 if deleted).
    fn visible(&self, unit: Unit) -> u32 {
        if self.deleted() {
            0
        } else {
            match unit {
                Unit::Char => self.len,
                Unit::Utf16 => self.utf16_len,
            }
        }
    }
}

/// The UTF-8 byte length and UTF-16 length of the first `chars` chars of `s`.
fn prefix_units(s: &str, chars: u32) -> (u32, u32) {
    let mut bytes = 0u32;
    let mut utf16 = 0u32;
    for c in s.chars().take(chars as usize) {
        bytes += c.len_utf8() as u32;
        utf16 += c.len_utf16() as u32;
    }
    (bytes, utf16)
}

/// The counts kept per subtree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub chars: u32,
    pub utf16: u32,
    pub bytes: u32,
    pub raw: u32,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.chars = self.chars.wrapping_add(o.chars);
        self.utf16 = self.utf16.wrapping_add(o.utf16);
        self.bytes = self.bytes.wrapping_add(o.bytes);
        self.raw = self.raw.wrapping_add(o.raw);
    }
    fn sub(&mut self, o: Counts) {
        self.chars = self.chars.wrapping_sub(o.chars);
        self.utf16 = self.utf16.wrapping_sub(o.utf16);
        self.bytes = self.bytes.wrapping_sub(o.bytes);
        self.raw = self.raw.wrapping_sub(o.raw);
    }
    fn get(&self, unit: Unit) -> u32 {
        match unit {
            Unit::Char => self.chars,
            Unit::Utf16 => self.utf16,
        }
    }
}

/// The unit a position is given in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Char,
    Utf16,
}

#[derive(Clone, Debug)]
struct Leaf {
    runs: [Run; LEAF_CAP],
    n: u8,
    /// This leaf's slot among its parent's children.
    slot: u8,
    parent: u32,
    prev: u32,
    next: u32,
}

#[derive(Clone, Debug)]
struct Node {
    children: [u32; NODE_CAP],
    counts: [Counts; NODE_CAP],
    n: u8,
    /// This node's slot among its parent's children.
    slot: u8,
    parent: u32,
    /// Whether the children are leaves (else internal nodes).
    leaf_children: bool,
}

/// LV → the leaf holding that item, for the items of every tree of a document.
///
/// Local edits navigate by position and never need it, so it is off until something
/// does (integrating remote ops, rebuilding after a rollback); turned on, it is built
/// from the trees and kept up to date from then on.
#[derive(Clone, Debug, Default)]
pub(crate) struct LvIndex {
    leaves: Vec<u32>,
    on: bool,
}

impl LvIndex {
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The leaf of `lv` if it is an item (not a delete op, not past the end).
    pub fn get(&self, lv: Lv) -> Option<u32> {
        self.leaves.get(lv as usize).copied().filter(|&l| l != NONE)
    }

    /// The leaf of item `lv` (the index must be on).
    pub fn leaf(&self, lv: Lv) -> u32 {
        debug_assert!(self.on);
        self.leaves[lv as usize]
    }

    fn set(&mut self, lv: Lv, len: u32, leaf: u32) {
        if !self.on {
            return;
        }
        let end = (lv + len) as usize;
        if self.leaves.len() < end {
            self.leaves.resize(end, NONE);
        }
        self.leaves[lv as usize..end].fill(leaf);
    }

    /// Turns the index on (empty: the caller fills it from the trees).
    pub fn start(&mut self, capacity: usize) {
        self.leaves = Vec::with_capacity(capacity);
        self.on = true;
    }

    pub fn reserve(&mut self, n: usize) {
        if self.on {
            self.leaves.reserve(n);
        }
    }
}

/// A place in the tree: run `idx` of `leaf`, item `off` of that run. `idx == n` with
/// `off == 0` is the end of the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cur {
    pub leaf: u32,
    pub idx: usize,
    pub off: u32,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    leaves: Vec<Leaf>,
    nodes: Vec<Node>,
    root: u32,
    first_leaf: u32,
    last_leaf: u32,
    total: Counts,
    /// The leaf of the last local edit, its first visible char's position and its
    /// visible length: consecutive edits mostly land in the same leaf, and then need
    /// no descent. Cleared by any change that could move it.
    hint: Option<Hint>,
}

#[derive(Clone, Copy, Debug)]
struct Hint {
    leaf: u32,
    start: u32,
    chars: u32,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Self {
        let mut children = [0; NODE_CAP];
        children[0] = 0;
        Tree {
            leaves: vec![Leaf {
                runs: [Run::default(); LEAF_CAP],
                n: 0,
                slot: 0,
                parent: 0,
                prev: NONE,
                next: NONE,
            }],
            nodes: vec![Node {
                children,
                counts: [Counts::default(); NODE_CAP],
                n: 1,
                slot: 0,
                parent: NONE,
                leaf_children: true,
            }],
            root: 0,
            first_leaf: 0,
            last_leaf: 0,
            total: Counts::default(),
            hint: None,
        }
    }

    /// A tree of `runs`, in document order, built bottom up: full leaves, full nodes.
    /// (For trees built whole, as at another version; the LV index is not filled.)
    pub fn from_runs(runs: &[Run]) -> Self {
        if runs.is_empty() {
            return Tree::new();
        }
        let n_leaves = runs.len().div_ceil(LEAF_CAP);
        let mut leaves = Vec::with_capacity(n_leaves);
        let mut level: Vec<(u32, Counts)> = Vec::with_capacity(n_leaves);
        let mut total = Counts::default();
        for (i, chunk) in runs.chunks(LEAF_CAP).enumerate() {
            let mut leaf = Leaf {
                runs: [Run::default(); LEAF_CAP],
                n: chunk.len() as u8,
                slot: 0,
                parent: 0,
                prev: if i == 0 { NONE } else { i as u32 - 1 },
                next: if i + 1 == n_leaves {
                    NONE
                } else {
                    i as u32 + 1
                },
            };
            leaf.runs[..chunk.len()].copy_from_slice(chunk);
            let mut c = Counts::default();
            for r in chunk {
                c.add(r.counts());
            }
            total.add(c);
            leaves.push(leaf);
            level.push((i as u32, c));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(n_leaves / (NODE_CAP - 1) + 2);
        let mut leaf_children = true;
        let root = loop {
            let mut up = Vec::with_capacity(level.len().div_ceil(NODE_CAP));
            for group in level.chunks(NODE_CAP) {
                let id = nodes.len() as u32;
                let mut node = Node {
                    children: [0; NODE_CAP],
                    counts: [Counts::default(); NODE_CAP],
                    n: group.len() as u8,
                    slot: 0,
                    parent: NONE,
                    leaf_children,
                };
                let mut sum = Counts::default();
                for (k, &(child, c)) in group.iter().enumerate() {
                    node.children[k] = child;
                    node.counts[k] = c;
                    sum.add(c);
                    if leaf_children {
                        let l = &mut leaves[child as usize];
                        (l.parent, l.slot) = (id, k as u8);
                    } else {
                        let n = &mut nodes[child as usize];
                        (n.parent, n.slot) = (id, k as u8);
                    }
                }
                nodes.push(node);
                up.push((id, sum));
            }
            if up.len() == 1 {
                break up[0].0;
            }
            level = up;
            leaf_children = false;
        };
        Tree {
            leaves,
            nodes,
            root,
            first_leaf: 0,
            last_leaf: n_leaves as u32 - 1,
            total,
            hint: None,
        }
    }

    /// Makes room for about `runs` more runs without moving the leaves.
    pub fn reserve(&mut self, runs: usize) {
        self.leaves.reserve(runs / (LEAF_CAP / 2) + 1);
        self.nodes.reserve(runs / (LEAF_CAP / 2 * NODE_CAP / 2) + 1);
    }

    pub fn total(&self) -> Counts {
        self.total
    }

    pub fn run(&self, leaf: u32, idx: usize) -> &Run {
        &self.leaves[leaf as usize].runs[idx]
    }

    pub fn first_leaf(&self) -> u32 {
        self.first_leaf
    }

    /// The runs in document order.
    pub fn runs(&self) -> impl Iterator<Item = &Run> + '_ {
        let mut leaf = self.first_leaf;
        std::iter::from_fn(move || {
            if leaf == NONE {
                return None;
            }
            let l = &self.leaves[leaf as usize];
            leaf = l.next;
            Some(&l.runs[..l.n as usize])
        })
        .flatten()
    }

    /// The place of the `pos`-th visible item counted in `unit`, with the number of
    /// chars before it; `None` for `pos == len` (the end). A UTF-16 position inside a
    /// surrogate pair is an error.
    pub fn find_visible(
        &self,
        pos: u32,
        unit: Unit,
        content: &str,
    ) -> Result<Option<(Cur, u32)>, EditError> {
        if pos >= self.total.get(unit) {
            return Ok(None);
        }
        let (leaf, in_leaf, chars_before) = self.descend(pos, unit);
        self.scan_leaf(leaf, in_leaf, chars_before, unit, content)
            .map(Some)
    }

    /// Like [`find_visible`](Self::find_visible) in chars, using and updating the hint.
    pub fn find_char(&mut self, pos: u32) -> Option<(Cur, u32)> {
        if pos >= self.total.chars {
            return None;
        }
        let h = match self.hint {
            Some(h) if pos >= h.start && pos - h.start < h.chars => h,
            _ => {
                let (leaf, _, before) = self.descend(pos, Unit::Char);
                let l = &self.leaves[leaf as usize];
                let chars = l.runs[..l.n as usize]
                    .iter()
                    .map(|r| r.visible(Unit::Char))
                    .sum();
                let h = Hint {
                    leaf,
                    start: before,
                    chars,
                };
                self.hint = Some(h);
                h
            }
        };
        Some(self.scan_leaf_chars(h.leaf, pos - h.start, h.start, h.chars))
    }

    /// Finds the leaf holding the `pos`-th visible item: (leaf, position inside it,
    /// chars before the leaf).
    fn descend(&self, mut pos: u32, unit: Unit) -> (u32, u32, u32) {
        let mut chars_before = 0u32;
        let mut node = &self.nodes[self.root as usize];
        loop {
            let mut i = 0;
            while pos >= node.counts[i].get(unit) {
                pos -= node.counts[i].get(unit);
                chars_before += node.counts[i].chars;
                i += 1;
            }
            let child = node.children[i];
            if node.leaf_children {
                return (child, pos, chars_before);
            }
            node = &self.nodes[child as usize];
        }
    }

    fn scan_leaf(
        &self,
        leaf: u32,
        mut pos: u32,
        mut chars_before: u32,
        unit: Unit,
        content: &str,
    ) -> Result<(Cur, u32), EditError> {
        let l = &self.leaves[leaf as usize];
        let runs = &l.runs[..l.n as usize];
        let found = |idx: usize, pos: u32, chars_before: u32| -> Result<(Cur, u32), EditError> {
            let r = &runs[idx];
            let off = if unit == Unit::Char || r.utf16_len == r.len {
                pos
            } else {
                // Walk the run's chars to the one at UTF-16 offset `pos`.
                let mut u = 0u32;
                let mut k = 0u32;
                for c in r.text(content).chars() {
                    if u == pos {
                        break;
                    }
                    u += c.len_utf16() as u32;
                    k += 1;
                    if u > pos {
                        return Err(EditError::NotCharBoundary { pos: pos as usize });
                    }
                }
                k
            };
            Ok((Cur { leaf, idx, off }, chars_before + off))
        };
        for (idx, r) in runs.iter().enumerate() {
            let v = r.visible(unit);
            if pos < v {
                return found(idx, pos, chars_before);
            }
            pos -= v;
            chars_before += r.visible(Unit::Char);
        }
        unreachable!("counts say the position is in this leaf")
    }

    /// Like `scan_leaf` in chars, for a leaf of `total` visible chars starting at
    /// `start`: scans from whichever end is nearer.
    fn scan_leaf_chars(&self, leaf: u32, pos: u32, start: u32, total: u32) -> (Cur, u32) {
        let l = &self.leaves[leaf as usize];
        let runs = &l.runs[..l.n as usize];
        if pos * 2 < total {
            let mut p = pos;
            for (idx, r) in runs.iter().enumerate() {
                let v = r.visible(Unit::Char);
                if p < v {
                    return (Cur { leaf, idx, off: p }, start + pos);
                }
                p -= v;
            }
        } else {
            // Chars after the wanted one, counted from the end.
            let mut after = total - pos;
            for (idx, r) in runs.iter().enumerate().rev() {
                let v = r.visible(Unit::Char);
                if after <= v && v > 0 {
                    return (
                        Cur {
                            leaf,
                            idx,
                            off: v - after,
                        },
                        start + pos,
                    );
                }
                after -= v;
            }
        }
        unreachable!("counts say the position is in this leaf")
    }

    /// The counts of the first `pos` visible chars (`pos` ≤ the visible length).
    pub fn prefix_counts(&self, mut pos: u32, content: &str) -> Counts {
        if pos >= self.total.chars {
            return self.total;
        }
        let mut acc = Counts::default();
        let mut node = &self.nodes[self.root as usize];
        let leaf = loop {
            let mut i = 0;
            while pos >= node.counts[i].chars {
                pos -= node.counts[i].chars;
                acc.add(node.counts[i]);
                i += 1;
            }
            let child = node.children[i];
            if node.leaf_children {
                break child;
            }
            node = &self.nodes[child as usize];
        };
        let l = &self.leaves[leaf as usize];
        for r in &l.runs[..l.n as usize] {
            let v = r.visible(Unit::Char);
            if pos < v {
                let (bytes, utf16) = if r.is_ascii() {
                    (pos, pos)
                } else {
                    prefix_units(r.text(content), pos)
                };
                acc.chars += pos;
                acc.bytes += bytes;
                acc.utf16 += utf16;
                acc.raw += pos;
                return acc;
            }
            pos -= v;
            acc.add(r.counts());
        }
        acc
    }

    /// The place right after the last item (the end of the last leaf).
    pub fn end(&self) -> Cur {
        let leaf = self.last_leaf;
        Cur {
            leaf,
            idx: self.leaves[leaf as usize].n as usize,
            off: 0,
        }
    }

    /// The LV of the item right before `cur` (tombstones included), if any.
    pub fn item_before(&self, cur: Cur) -> Lv {
        let l = &self.leaves[cur.leaf as usize];
        if cur.off > 0 {
            return l.runs[cur.idx].lv + cur.off - 1;
        }
        if cur.idx > 0 {
            let r = &l.runs[cur.idx - 1];
            return r.lv + r.len - 1;
        }
        let mut leaf = l.prev;
        while leaf != NONE {
            let p = &self.leaves[leaf as usize];
            if p.n > 0 {
                let r = &p.runs[p.n as usize - 1];
                return r.lv + r.len - 1;
            }
            leaf = p.prev;
        }
        NONE
    }

    /// The LV of the item at `cur`, or `NONE` at the end of the document.
    pub fn item_at(&self, cur: Cur) -> Lv {
        let cur = self.normalize(cur);
        let l = &self.leaves[cur.leaf as usize];
        if cur.idx < l.n as usize {
            l.runs[cur.idx].lv + cur.off
        } else {
            NONE
        }
    }

    /// Moves a cursor at the end of a leaf to the start of the next non-empty leaf.
    pub fn normalize(&self, mut cur: Cur) -> Cur {
        loop {
            let l = &self.leaves[cur.leaf as usize];
            if cur.idx < l.n as usize || l.next == NONE {
                return cur;
            }
            cur = Cur {
                leaf: l.next,
                idx: 0,
                off: 0,
            };
        }
    }

    /// The place of item `lv`, found by walking the leaves (when there is no index).
    pub fn scan_for(&self, lv: Lv) -> Option<Cur> {
        let mut leaf = self.first_leaf;
        while leaf != NONE {
            let l = &self.leaves[leaf as usize];
            for (idx, r) in l.runs[..l.n as usize].iter().enumerate() {
                if lv >= r.lv && lv < r.lv + r.len {
                    return Some(Cur {
                        leaf,
                        idx,
                        off: lv - r.lv,
                    });
                }
            }
            leaf = l.next;
        }
        None
    }

    /// The place of item `lv`, whose leaf is `leaf`.
    pub fn locate(&self, lv: Lv, leaf: u32) -> Cur {
        let l = &self.leaves[leaf as usize];
        for (idx, r) in l.runs[..l.n as usize].iter().enumerate() {
            if lv >= r.lv && lv < r.lv + r.len {
                return Cur {
                    leaf,
                    idx,
                    off: lv - r.lv,
                };
            }
        }
        unreachable!("index names a leaf without the item")
    }

    /// The place right after item `lv`.
    pub fn after(&self, lv: Lv, leaf: u32) -> Cur {
        let mut c = self.locate(lv, leaf);
        c.off += 1;
        if c.off == self.leaves[leaf as usize].runs[c.idx].len {
            c.idx += 1;
            c.off = 0;
        }
        c
    }

    /// The counts of everything before `cur`, which must be at the start of a run or
    /// inside a run whose first `cur.off` items' text is in `content` (lists: ASCII-like).
    pub fn counts_before(&self, cur: Cur, content: &str) -> Counts {
        let l = &self.leaves[cur.leaf as usize];
        let mut c = Counts::default();
        for r in &l.runs[..cur.idx] {
            c.add(r.counts());
        }
        if cur.off > 0 {
            let r = &l.runs[cur.idx];
            c.raw += cur.off;
            if !r.deleted() {
                let (bytes, utf16) = if r.is_ascii() {
                    (cur.off, cur.off)
                } else {
                    prefix_units(&content[r.byte_start as usize..], cur.off)
                };
                c.chars += cur.off;
                c.utf16 += utf16;
                c.bytes += bytes;
            }
        }
        let mut slot = l.slot as usize;
        let mut parent = l.parent;
        while parent != NONE {
            let node = &self.nodes[parent as usize];
            for k in &node.counts[..slot] {
                c.add(*k);
            }
            slot = node.slot as usize;
            parent = node.parent;
        }
        c
    }

    /// The number of items (tombstones included) before `cur`.
    pub fn raw_pos(&self, cur: Cur) -> u32 {
        let l = &self.leaves[cur.leaf as usize];
        let mut pos = cur.off;
        for r in &l.runs[..cur.idx] {
            pos += r.len;
        }
        let mut slot = l.slot as usize;
        let mut parent = l.parent;
        while parent != NONE {
            let node = &self.nodes[parent as usize];
            for c in &node.counts[..slot] {
                pos += c.raw;
            }
            slot = node.slot as usize;
            parent = node.parent;
        }
        pos
    }

    /// Advances `cur` by one item, stepping into the next leaf at the end of one.
    pub fn step(&self, cur: Cur) -> Cur {
        let l = &self.leaves[cur.leaf as usize];
        let mut c = cur;
        c.off += 1;
        if c.off >= l.runs[c.idx].len {
            c.idx += 1;
            c.off = 0;
        }
        self.normalize(c)
    }

    /// Inserts `run` right before the item at `cur` (at the end of the leaf when `cur`
    /// is there), merging it into the run before when it continues that run. Returns
    /// nothing; `index` is updated for every item that moved leaf.
    pub fn insert(&mut self, cur: Cur, run: Run, content: &str, index: &mut LvIndex) {
        // Appending to the run that ends right before the insertion point: the common
        // case of typing.
        if cur.off == 0 && cur.idx > 0 {
            let leaf = &mut self.leaves[cur.leaf as usize];
            let prev = &mut leaf.runs[cur.idx - 1];
            if prev.can_append(&run) {
                prev.append(&run);
                index.set(run.lv, run.len, cur.leaf);
                self.propagate(cur.leaf, run.counts(), Counts::default());
                return;
            }
        }
        let mut cur = cur;
        let extra = 1 + usize::from(cur.off > 0);
        if self.leaves[cur.leaf as usize].n as usize + extra > LEAF_CAP {
            cur = self.split_leaf(cur, index);
        }
        let leaf_id = cur.leaf;
        let leaf = &mut self.leaves[leaf_id as usize];
        let n = leaf.n as usize;
        let mut at = cur.idx;
        if cur.off > 0 {
            let rest = leaf.runs[at].split(cur.off, content);
            leaf.runs.copy_within(at + 1..n, at + 2);
            leaf.runs[at + 1] = rest;
            leaf.n += 1;
            at += 1;
        }
        let n = leaf.n as usize;
        leaf.runs.copy_within(at..n, at + 1);
        leaf.runs[at] = run;
        leaf.n += 1;
        index.set(run.lv, run.len, leaf_id);
        self.propagate(leaf_id, run.counts(), Counts::default());
    }

    /// Splits a full leaf in two, returning where `cur` now is.
    fn split_leaf(&mut self, cur: Cur, index: &mut LvIndex) -> Cur {
        self.hint = None;
        let old = cur.leaf;
        let new_id = self.leaves.len() as u32;
        let (moved, moved_counts, next) = {
            let l = &mut self.leaves[old as usize];
            let n = l.n as usize;
            // Appending at the end of a leaf (typing at the end of a document, or
            // loading one in order) starts a fresh leaf and leaves this one full;
            // anywhere else the leaf is halved.
            let half = if cur.idx == n { n } else { n / 2 };
            let mut runs = [Run::default(); LEAF_CAP];
            runs[..n - half].copy_from_slice(&l.runs[half..n]);
            l.n = half as u8;
            let mut c = Counts::default();
            for r in &runs[..n - half] {
                c.add(r.counts());
            }
            let next = l.next;
            l.next = new_id;
            (
                Leaf {
                    runs,
                    n: (n - half) as u8,
                    slot: 0,
                    parent: l.parent,
                    prev: old,
                    next,
                },
                c,
                next,
            )
        };
        if next != NONE {
            self.leaves[next as usize].prev = new_id;
        } else {
            self.last_leaf = new_id;
        }
        for r in &moved.runs[..moved.n as usize] {
            index.set(r.lv, r.len, new_id);
        }
        let parent = moved.parent;
        let half = self.leaves[old as usize].n as usize;
        crate::grow::reserve_one(&mut self.leaves);
        self.leaves.push(moved);
        self.insert_child(parent, old, new_id, moved_counts);
        if cur.idx >= half {
            Cur {
                leaf: new_id,
                idx: cur.idx - half,
                off: cur.off,
            }
        } else {
            cur
        }
    }

    /// Puts `new_child` right after `after` in `parent`, moving `counts` from the
    /// older child to the new one; splits full nodes upwards.
    fn insert_child(&mut self, parent: u32, after: u32, new_child: u32, counts: Counts) {
        let leaf_children = self.nodes[parent as usize].leaf_children;
        let slot = if leaf_children {
            self.leaves[after as usize].slot
        } else {
            self.nodes[after as usize].slot
        } as usize;
        let node = &mut self.nodes[parent as usize];
        node.counts[slot].sub(counts);
        let n = node.n as usize;
        if n < NODE_CAP {
            node.children.copy_within(slot + 1..n, slot + 2);
            node.counts.copy_within(slot + 1..n, slot + 2);
            node.children[slot + 1] = new_child;
            node.counts[slot + 1] = counts;
            node.n += 1;
            self.renumber(parent);
            return;
        }
        // Full: split this node, then place the new child in the right half.
        let new_node_id = self.nodes.len() as u32;
        let half = n / 2;
        let node = &mut self.nodes[parent as usize];
        let mut children = [0u32; NODE_CAP];
        let mut ccounts = [Counts::default(); NODE_CAP];
        children[..n - half].copy_from_slice(&node.children[half..n]);
        ccounts[..n - half].copy_from_slice(&node.counts[half..n]);
        node.n = half as u8;
        let grand = node.parent;
        crate::grow::reserve_one(&mut self.nodes);
        self.nodes.push(Node {
            children,
            counts: ccounts,
            n: (n - half) as u8,
            slot: 0,
            parent: grand,
            leaf_children,
        });
        let (target, tslot) = if slot >= half {
            (new_node_id, slot - half)
        } else {
            (parent, slot)
        };
        {
            let t = &mut self.nodes[target as usize];
            let tn = t.n as usize;
            t.children.copy_within(tslot + 1..tn, tslot + 2);
            t.counts.copy_within(tslot + 1..tn, tslot + 2);
            t.children[tslot + 1] = new_child;
            t.counts[tslot + 1] = counts;
            t.n += 1;
        }
        self.renumber(parent);
        self.renumber(new_node_id);
        let sum = |t: &Node| {
            let mut c = Counts::default();
            for x in &t.counts[..t.n as usize] {
                c.add(*x);
            }
            c
        };
        let new_total = sum(&self.nodes[new_node_id as usize]);
        if grand == NONE {
            // Grow a new root.
            let root_id = self.nodes.len() as u32;
            let old_total = sum(&self.nodes[parent as usize]);
            let mut children = [0u32; NODE_CAP];
            let mut ccounts = [Counts::default(); NODE_CAP];
            children[0] = parent;
            children[1] = new_node_id;
            ccounts[0] = old_total;
            ccounts[1] = new_total;
            crate::grow::reserve_one(&mut self.nodes);
            self.nodes.push(Node {
                children,
                counts: ccounts,
                n: 2,
                slot: 0,
                parent: NONE,
                leaf_children: false,
            });
            self.renumber(root_id);
            self.root = root_id;
        } else {
            self.insert_child(grand, parent, new_node_id, new_total);
        }
    }

    /// Sets the parent and slot of every child of `node`.
    fn renumber(&mut self, node: u32) {
        let Node {
            children,
            n,
            leaf_children,
            ..
        } = self.nodes[node as usize].clone();
        for (slot, &c) in children[..n as usize].iter().enumerate() {
            if leaf_children {
                let l = &mut self.leaves[c as usize];
                l.parent = node;
                l.slot = slot as u8;
            } else {
                let x = &mut self.nodes[c as usize];
                x.parent = node;
                x.slot = slot as u8;
            }
        }
    }

    /// Adds `plus` and subtracts `minus` from the counts on the path from `leaf` up.
    fn propagate(&mut self, leaf: u32, plus: Counts, minus: Counts) {
        self.total.add(plus);
        self.total.sub(minus);
        match &mut self.hint {
            Some(h) if h.leaf == leaf => {
                h.chars = h.chars.wrapping_add(plus.chars).wrapping_sub(minus.chars);
            }
            _ => self.hint = None,
        }
        let l = &self.leaves[leaf as usize];
        let mut slot = l.slot as usize;
        let mut parent = l.parent;
        while parent != NONE {
            let node = &mut self.nodes[parent as usize];
            node.counts[slot].add(plus);
            node.counts[slot].sub(minus);
            slot = node.slot as usize;
            parent = node.parent;
        }
    }

    /// Adds one delete (`up`) to, or removes one from, up to `len` items starting at
    /// item `lv`, as many as its run holds from there; returns how many it handled.
    /// The index must be on.
    pub fn add_dels(
        &mut self,
        lv: Lv,
        len: u32,
        up: bool,
        content: &str,
        index: &mut LvIndex,
    ) -> u32 {
        let cur = self.locate(lv, index.leaf(lv));
        self.add_dels_at(cur, len, up, content, index)
    }

    /// Like [`add_dels`](Self::add_dels), starting at the item at `cur`.
    pub fn add_dels_at(
        &mut self,
        cur: Cur,
        len: u32,
        up: bool,
        content: &str,
        index: &mut LvIndex,
    ) -> u32 {
        let r = *self.run(cur.leaf, cur.idx);
        let take = len.min(r.len - cur.off);
        let dels = if up {
            r.dels.saturating_add(1)
        } else {
            debug_assert!(r.dels > 0, "undeleting a visible item");
            r.dels.saturating_sub(1)
        };
        if self.move_to_neighbour(cur, take, dels, content) {
            return take;
        }
        let mut cur = cur;
        let extra = usize::from(cur.off > 0) + usize::from(take < r.len - cur.off);
        if self.leaves[cur.leaf as usize].n as usize + extra > LEAF_CAP {
            cur = self.split_leaf(cur, index);
        }
        let leaf_id = cur.leaf;
        let l = &mut self.leaves[leaf_id as usize];
        let mut at = cur.idx;
        if cur.off > 0 {
            let rest = l.runs[at].split(cur.off, content);
            let n = l.n as usize;
            l.runs.copy_within(at + 1..n, at + 2);
            l.runs[at + 1] = rest;
            l.n += 1;
            at += 1;
        }
        if take < l.runs[at].len {
            let rest = l.runs[at].split(take, content);
            let n = l.n as usize;
            l.runs.copy_within(at + 1..n, at + 2);
            l.runs[at + 1] = rest;
            l.n += 1;
        }
        let before = l.runs[at].counts();
        l.runs[at].dels = dels;
        let after = l.runs[at].counts();
        // Merge with neighbours where the pieces continue each other again.
        if at + 1 < l.n as usize && l.runs[at].can_append(&l.runs[at + 1]) {
            let next = l.runs[at + 1];
            l.runs[at].append(&next);
            let n = l.n as usize;
            l.runs.copy_within(at + 2..n, at + 1);
            l.n -= 1;
        }
        if at > 0 && l.runs[at - 1].can_append(&l.runs[at]) {
            let this = l.runs[at];
            l.runs[at - 1].append(&this);
            let n = l.n as usize;
            l.runs.copy_within(at + 1..n, at);
            l.n -= 1;
        }
        self.propagate(leaf_id, after, before);
        take
    }

    /// Backspacing and forward deletion: when the items to change end the run and
    /// the next run (already in the new state) continues them, or start the run and
    /// the previous run continues into them, they move to that neighbour in place of
    /// splitting and merging. Returns whether it applied.
    fn move_to_neighbour(&mut self, cur: Cur, take: u32, dels: u32, content: &str) -> bool {
        let l = &mut self.leaves[cur.leaf as usize];
        let (idx, n) = (cur.idx, l.n as usize);
        let r = l.runs[idx];
        let continues = |a: &Run, b: &Run| {
            a.lv + a.len == b.lv
                && b.origin_left == b.lv - 1
                && a.origin_right == b.origin_right
                && a.byte_start + a.byte_len == b.byte_start
        };
        if cur.off > 0 && take == r.len - cur.off && idx + 1 < n {
            let next = l.runs[idx + 1];
            if next.dels == dels && continues(&r, &next) {
                let mut head = r;
                let tail = head.split(cur.off, content);
                let mut moved = tail;
                moved.dels = dels;
                let (after, before) = (moved.counts(), tail.counts());
                moved.append(&next);
                l.runs[idx] = head;
                l.runs[idx + 1] = moved;
                self.propagate(cur.leaf, after, before);
                return true;
            }
        }
        if cur.off == 0 && take < r.len && idx > 0 {
            let prev = l.runs[idx - 1];
            if prev.dels == dels && continues(&prev, &r) {
                let mut head = r;
                let rest = head.split(take, content);
                let before = head.counts();
                head.dels = dels;
                let after = head.counts();
                l.runs[idx - 1].append(&head);
                l.runs[idx] = rest;
                self.propagate(cur.leaf, after, before);
                return true;
            }
        }
        false
    }

    /// Records every item's leaf in `index`.
    pub fn fill_index(&self, index: &mut LvIndex) {
        let mut leaf = self.first_leaf;
        while leaf != NONE {
            let l = &self.leaves[leaf as usize];
            for r in &l.runs[..l.n as usize] {
                index.set(r.lv, r.len, leaf);
            }
            leaf = l.next;
        }
    }

    /// Verifies the invariants listed in the module docs.
    pub fn check(&self, index: &LvIndex) -> Result<(), String> {
        let sum = self.check_node(self.root, NONE)?;
        if sum != self.total {
            return Err(format!("total {:?} != root sum {:?}", self.total, sum));
        }
        // Leaf chain.
        let mut leaf = self.first_leaf;
        let mut prev = NONE;
        let mut seen = 0usize;
        while leaf != NONE {
            let l = &self.leaves[leaf as usize];
            if l.prev != prev {
                return Err(format!("leaf {leaf} prev link {} != {prev}", l.prev));
            }
            if l.n == 0 && self.total.raw != 0 {
                return Err(format!("empty leaf {leaf} in a non-empty tree"));
            }
            for r in &l.runs[..l.n as usize] {
                if r.len == 0 {
                    return Err(format!("empty run in leaf {leaf}"));
                }
                if index.on {
                    for lv in r.lv..r.lv + r.len {
                        if index.leaves.get(lv as usize) != Some(&leaf) {
                            return Err(format!("index of lv {lv} does not name leaf {leaf}"));
                        }
                    }
                }
            }
            seen += 1;
            prev = leaf;
            leaf = l.next;
        }
        if prev != self.last_leaf {
            return Err("last leaf link is wrong".into());
        }
        if seen != self.leaves.len() {
            return Err(format!(
                "leaf chain visits {seen} of {} leaves",
                self.leaves.len()
            ));
        }
        Ok(())
    }

    fn check_node(&self, node_id: u32, parent: u32) -> Result<Counts, String> {
        let node = &self.nodes[node_id as usize];
        if node.parent != parent {
            return Err(format!("node {node_id} parent link is wrong"));
        }
        if node.n == 0 {
            return Err(format!("node {node_id} is empty"));
        }
        let mut sum = Counts::default();
        for i in 0..node.n as usize {
            let child = node.children[i];
            let c = if node.leaf_children {
                let l = &self.leaves[child as usize];
                if l.parent != node_id || l.slot as usize != i {
                    return Err(format!("leaf {child} parent link is wrong"));
                }
                let mut c = Counts::default();
                for r in &l.runs[..l.n as usize] {
                    c.add(r.counts());
                }
                c
            } else {
                if self.nodes[child as usize].slot as usize != i {
                    return Err(format!("node {child} slot is wrong"));
                }
                self.check_node(child, node_id)?
            };
            if c != node.counts[i] {
                return Err(format!(
                    "node {node_id} child {i} counts {:?} != actual {c:?}",
                    node.counts[i]
                ));
            }
            sum.add(c);
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_built_whole_keep_the_invariants() {
        let content = "x".repeat(20_000);
        for n in [
            0usize,
            1,
            LEAF_CAP,
            LEAF_CAP + 1,
            LEAF_CAP * NODE_CAP + 1,
            9_999,
        ] {
            let runs: Vec<Run> = (0..n as u32)
                .map(|i| Run {
                    lv: i * 2,
                    len: 2,
                    origin_left: NONE,
                    origin_right: NONE,
                    byte_start: i * 2,
                    byte_len: 2,
                    utf16_len: 2,
                    dels: i % 3 / 2,
                })
                .collect();
            let t = Tree::from_runs(&runs);
            t.check(&LvIndex::default()).unwrap();
            assert_eq!(t.runs().copied().collect::<Vec<_>>(), runs, "{n} runs");
            let visible = runs.iter().filter(|r| !r.deleted()).count() as u32 * 2;
            assert_eq!(t.total().chars, visible);
            assert_eq!(t.total().raw, n as u32 * 2);
            // Still editable: an insert at the end and in the middle.
            let mut t = t;
            let mut index = LvIndex::default();
            let end = t.end();
            let run = Run {
                lv: 1_000_000,
                len: 1,
                origin_left: NONE,
                origin_right: NONE,
                byte_start: 0,
                byte_len: 1,
                utf16_len: 1,
                dels: 0,
            };
            t.insert(end, run, &content, &mut index);
            t.check(&index).unwrap();
            if let Some((cur, _)) = t.find_visible(visible / 2, Unit::Char, &content).unwrap() {
                t.insert(
                    cur,
                    Run {
                        lv: 1_000_001,
                        ..run
                    },
                    &content,
                    &mut index,
                );
                t.check(&index).unwrap();
            }
        }
    }
}

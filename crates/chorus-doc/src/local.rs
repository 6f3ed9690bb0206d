//! Local edits: transactions, the ops they make, and rolling them back.
//!
//! Edits apply to the document at once; a [`Transaction`] remembers where the log,
//! the arenas and the field table stood, so dropping it without `commit` truncates
//! back there and rebuilds what the edits touched.

use std::fmt;
use std::ops::Range;

use crate::branch::Body;
use crate::changes::{ChangeMeta, CommitOptions};
use crate::doc::Doc;
use crate::doc::name_hash;
use crate::oplog::{Atom, Op, ROOT};
use crate::text::TextView;
use crate::tree::{Lv, NONE, Run};
use crate::{EditError, Kind, MapValue, ReplicaId, Value};

impl Doc {
    /// Starts a transaction. Commit it to keep its edits.
    pub fn transact(&mut self) -> Transaction<'_> {
        self.start_recording();
        Transaction {
            start_lv: self.log.next_lv(),
            start_seq: self.log.agents[self.me as usize].next_seq(),
            start_lamport: self.log.max_lamport + 1,
            start_content: self.log.content.len(),
            start_elems: self.log.elems.len(),
            start_atoms: self.log.atoms.len(),
            start_hlc: self.log.hlc,
            fields_before: self.log.fields.len(),
            doc: self,
        }
    }

    fn local_insert(&mut self, field: u32, pos: usize, text: &str) -> Result<(), EditError> {
        let len = self.branch.seq(field).total().chars as usize;
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        if text.is_empty() {
            return Ok(());
        }
        let (n, utf16) = text
            .chars()
            .fold((0u32, 0u32), |(n, u), c| (n + 1, u + c.len_utf16() as u32));
        if !self.ensure_capacity(n as usize, text.len()) {
            return Err(EditError::TooLarge);
        }
        let byte_start = self.log.content.len() as u32;
        crate::grow::reserve_str(&mut self.log.content, text.len());
        self.log.content.push_str(text);
        self.insert_local_run(field, pos, n, byte_start, text.len() as u32, utf16);
        Ok(())
    }

    /// Inserts list elements at `pos`.
    pub(crate) fn local_insert_values(
        &mut self,
        field: u32,
        pos: usize,
        values: Vec<Value>,
    ) -> Result<(), EditError> {
        let len = self.branch.seq(field).total().chars as usize;
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        if values.is_empty() {
            return Ok(());
        }
        for v in &values {
            check_depth(v)?;
        }
        let n = values.len();
        if !self.ensure_capacity(n, 0) {
            return Err(EditError::TooLarge);
        }
        let start = self.log.elems.len() as u32;
        self.log.elems.extend(values);
        let n = n as u32;
        self.insert_local_run(field, pos, n, start, n, n);
        Ok(())
    }

    /// Places `n` new items at visible position `pos` of `field` — between the item
    /// (tombstones included) just before it and the next visible item — and logs them.
    /// Their content is already in the arena at `byte_start`.
    fn insert_local_run(
        &mut self,
        field: u32,
        pos: usize,
        n: u32,
        byte_start: u32,
        byte_len: u32,
        utf16_len: u32,
    ) {
        let tree = self.branch.seq_mut(field);
        let (cur, origin_right) = match tree.find_char(pos as u32) {
            Some((cur, _)) => (cur, tree.item_at(cur)),
            None => (tree.end(), NONE),
        };
        let origin_left = tree.item_before(cur);
        let run = Run {
            lv: self.log.next_lv(),
            len: n,
            origin_left,
            origin_right,
            byte_start,
            byte_len,
            utf16_len,
            dels: 0,
        };
        self.branch.insert(field, cur, run, &self.log.content);
        self.push_local(
            field,
            Op::Insert {
                origin_left,
                origin_right,
                byte_start,
                byte_len,
            },
            n,
        );
    }

    #[inline]
    fn push_local(&mut self, field: u32, op: Op, len: u32) {
        let me = self.me;
        let seq = self.log.agents[me as usize].next_seq();
        let lamport = self.log.max_lamport + 1;
        if self.branch.first[field as usize].is_none() {
            self.touch(field, lamport, self.replica, self.log.next_lv());
        }
        self.log.push(me, seq, lamport, field, op, len);
    }

    /// Makes a local counter, register or map op and applies it.
    pub(crate) fn local_atom(&mut self, field: u32, atom: Atom) -> Result<(), EditError> {
        if !self.ensure_capacity(1, 0) {
            return Err(EditError::TooLarge);
        }
        if let Atom::Set {
            value: Some(MapValue::Value(v)),
            ..
        } = &atom
        {
            check_depth(v)?;
        }
        let lv = self.log.next_lv();
        let idx = self.log.atoms.len() as u32;
        crate::grow::reserve_one(&mut self.log.atoms);
        self.log.atoms.push(atom);
        self.push_local(field, Op::Atom { idx }, 1);
        self.apply_atom(field, lv, idx);
        Ok(())
    }

    pub(crate) fn local_delete(
        &mut self,
        field: u32,
        pos: usize,
        len: usize,
    ) -> Result<(), EditError> {
        let total = self.branch.seq(field).total().chars as usize;
        match pos.checked_add(len) {
            Some(end) if end <= total => {}
            _ => {
                return Err(EditError::OutOfRange {
                    pos: pos.saturating_add(len),
                    len: total,
                });
            }
        }
        if !self.ensure_capacity(len, 0) {
            return Err(EditError::TooLarge);
        }
        let mut remaining = len as u32;
        while remaining > 0 {
            let (tree, index) = self.branch.seq_and_index(field);
            let (cur, _) = tree.find_char(pos as u32).expect("range was checked");
            let r = *tree.run(cur.leaf, cur.idx);
            let take = remaining.min(r.len - cur.off);
            let target = r.lv + cur.off;
            tree.add_dels_at(cur, take, true, &self.log.content, index);
            self.record_touched(field, target, take, true);
            self.push_local(
                field,
                Op::Delete {
                    target,
                    backward: false,
                },
                take,
            );
            remaining -= take;
        }
        Ok(())
    }

    /// Deletes items `lo..lo + len` of `field` by id, visible or not (an undo of their
    /// insertion: a later undo of someone's delete must not bring them back).
    pub(crate) fn local_delete_items(
        &mut self,
        field: u32,
        lo: Lv,
        len: u32,
    ) -> Result<(), EditError> {
        if !self.ensure_capacity(len as usize, 0) {
            return Err(EditError::TooLarge);
        }
        self.push_local(
            field,
            Op::Delete {
                target: lo,
                backward: false,
            },
            len,
        );
        self.change_dels(field, lo, lo + len - 1, true);
        Ok(())
    }

    /// Undoes this replica's delete ops `target..target + len` of `field`.
    pub(crate) fn local_undelete(
        &mut self,
        field: u32,
        target: Lv,
        len: u32,
    ) -> Result<(), EditError> {
        if !self.ensure_capacity(len as usize, 0) {
            return Err(EditError::TooLarge);
        }
        self.push_local(field, Op::Undelete { target }, len);
        self.undelete(field, target, len);
        Ok(())
    }

    /// Forgets the fields from `from` on.
    fn drop_fields(&mut self, from: usize) {
        for f in from..self.log.fields.len() {
            let key = (
                self.log.fields[f].parent,
                name_hash(&self.log.fields[f].name),
            );
            if let Some(v) = self.log.field_index.get_mut(&key) {
                v.retain(|&x| (x as usize) < from);
                if v.is_empty() {
                    self.log.field_index.remove(&key);
                }
            }
        }
        self.log.fields.truncate(from);
        self.branch.bodies.truncate(from);
        self.branch.first.truncate(from);
        if self.last_field as usize >= from {
            self.last_field = 0;
        }
    }

    /// Drops every op from `t.lv` on and rebuilds the fields from the log.
    fn rollback(&mut self, t: &Rollback) {
        let lv = t.lv;
        if self.log.next_lv() == lv {
            // No ops: at most some fields were named, and they are still empty.
            self.drop_fields(t.fields);
            return;
        }
        self.log.truncate(lv);
        self.log.content.truncate(t.content);
        self.log.elems.truncate(t.elems);
        self.log.atoms.truncate(t.atoms);
        self.log.hlc = t.hlc;
        self.drop_fields(t.fields);
        self.branch.index.start(lv as usize);
        for (f, body) in self.log.fields.iter().zip(&mut self.branch.bodies) {
            *body = Body::new(&f.kind);
        }
        self.branch.first.fill(None);
        self.branch.undone.clear();
        // The log stays in place: integrating reads it (replica ids for ties).
        for i in 0..self.log.entries.len() {
            let e = self.log.entries[i];
            let replica = self.log.agents[e.agent as usize].id;
            self.touch(e.field, e.lamport, replica, e.lv);
            match e.op {
                Op::Insert {
                    origin_left,
                    origin_right,
                    byte_start,
                    byte_len,
                } => {
                    let utf16_len = if self.log.fields[e.field as usize].kind == Kind::List {
                        e.len
                    } else {
                        self.log.content[byte_start as usize..(byte_start + byte_len) as usize]
                            .chars()
                            .map(|c| c.len_utf16() as u32)
                            .sum()
                    };
                    let run = Run {
                        lv: e.lv,
                        len: e.len,
                        origin_left,
                        origin_right,
                        byte_start,
                        byte_len,
                        utf16_len,
                        dels: 0,
                    };
                    self.integrate_insert(e.field, run, replica);
                }
                Op::Delete { .. } => {
                    let (lo, hi) = e.delete_targets().expect("a delete");
                    self.delete_range(e.field, lo, hi);
                }
                Op::Atom { idx } => self.apply_atom(e.field, e.lv, idx),
                Op::Undelete { target } => self.undelete(e.field, target, e.len),
            }
        }
    }
}

/// The operations of one committed transaction, all made by this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The replica that made it (this document's replica).
    pub replica: ReplicaId,
    /// The sequence numbers of its operations.
    pub seqs: Range<u64>,
    /// The Lamport timestamp of its first operation; later ones follow consecutively.
    pub lamport: u64,
}

/// A group of local edits that becomes one [`Change`] on [`commit`](Self::commit).
///
/// Edits apply to the document at once (reads through [`TextMut::view`] see them);
/// a transaction dropped without `commit` rolls them all back.
pub struct Transaction<'d> {
    pub(crate) doc: &'d mut Doc,
    start_lv: Lv,
    start_seq: u64,
    start_lamport: u64,
    start_content: usize,
    start_elems: usize,
    start_atoms: usize,
    start_hlc: u64,
    fields_before: usize,
}

/// Editing access to one text field inside a transaction.
pub struct TextMut<'t> {
    pub(crate) doc: &'t mut Doc,
    pub(crate) field: u32,
}

impl<'d> Transaction<'d> {
    /// The text field `name`, created on first use.
    pub fn text(&mut self, name: &str) -> TextMut<'_> {
        let field = self.doc.field_id(ROOT, name, &Kind::Text);
        TextMut {
            doc: self.doc,
            field,
        }
    }

    /// Commits; `None` if the transaction made no operations.
    pub fn commit(self) -> Option<Change> {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.finish()
    }

    /// Commits with a message and time kept in the log and sent with the change's
    /// operations (see [`Doc::history`] and [`TextView::blame`]); `None` if the
    /// transaction made no operations (nothing is recorded then).
    pub fn commit_with(self, options: CommitOptions) -> Option<Change> {
        let mut this = std::mem::ManuallyDrop::new(self);
        let change = this.finish()?;
        if !options.is_empty() {
            this.doc.log.changes.insert(ChangeMeta {
                replica: change.replica,
                seq: change.seqs.start,
                len: change.seqs.end - change.seqs.start,
                time: options.time,
                message: options.message.map(Into::into),
            });
        }
        Some(change)
    }

    /// What committing does but for metadata; the caller must not drop `self` after
    /// (that would roll the edits back).
    #[inline]
    fn finish(&mut self) -> Option<Change> {
        let me = self.doc.me;
        self.doc.log.refresh_version(me);
        self.doc.finish_recording(true);
        let doc: &Doc = &*self.doc;
        let end = doc.log.agents[doc.me as usize].next_seq();
        (end > self.start_seq).then_some(Change {
            replica: doc.replica,
            seqs: self.start_seq..end,
            lamport: self.start_lamport,
        })
    }

    /// Discards the transaction's edits (what dropping it does).
    pub fn rollback(self) {}
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let t = Rollback {
            lv: self.start_lv,
            content: self.start_content,
            elems: self.start_elems,
            atoms: self.start_atoms,
            hlc: self.start_hlc,
            fields: self.fields_before,
        };
        self.doc.recorder = None;
        self.doc.rollback(&t);
    }
}

/// Where a transaction started: what rolling it back truncates to.
struct Rollback {
    lv: Lv,
    content: usize,
    elems: usize,
    atoms: usize,
    hlc: u64,
    fields: usize,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("replica", &self.doc.replica)
            .field("start_seq", &self.start_seq)
            .finish_non_exhaustive()
    }
}

impl TextMut<'_> {
    /// Inserts `text` at char position `pos` (0 ≤ `pos` ≤ `len()`).
    pub fn insert(&mut self, pos: usize, text: &str) -> Result<(), EditError> {
        self.doc.local_insert(self.field, pos, text)
    }

    /// Deletes `len` chars starting at char position `pos`.
    pub fn delete(&mut self, pos: usize, len: usize) -> Result<(), EditError> {
        self.doc.local_delete(self.field, pos, len)
    }

    /// Inserts `text` at UTF-16 position `pos`.
    pub fn insert_utf16(&mut self, pos: usize, text: &str) -> Result<(), EditError> {
        let p = self.doc.utf16_to_char_in(Some(self.field), pos)?;
        self.insert(p, text)
    }

    /// Deletes `len` UTF-16 code units starting at UTF-16 position `pos`; both ends
    /// must fall on char boundaries.
    pub fn delete_utf16(&mut self, pos: usize, len: usize) -> Result<(), EditError> {
        let end = pos.checked_add(len).ok_or(EditError::OutOfRange {
            pos: usize::MAX,
            len: self.view().len_utf16(),
        })?;
        let a = self.doc.utf16_to_char_in(Some(self.field), pos)?;
        let b = self.doc.utf16_to_char_in(Some(self.field), end)?;
        self.delete(a, b - a)
    }

    /// Length in chars.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A read-only view of the field as edited so far.
    pub fn view(&self) -> TextView<'_> {
        TextView {
            doc: self.doc,
            branch: &self.doc.branch,
            field: Some(self.field),
        }
    }
}

impl fmt::Debug for TextMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TextMut")
            .field(&self.view().to_string())
            .finish()
    }
}

/// Values nest at most [`MAX_VALUE_DEPTH`](crate::value::MAX_VALUE_DEPTH) arrays deep,
/// or peers could not decode them.
fn check_depth(v: &Value) -> Result<(), EditError> {
    if v.array_depth() > crate::value::MAX_VALUE_DEPTH {
        Err(EditError::TooDeep)
    } else {
        Ok(())
    }
}

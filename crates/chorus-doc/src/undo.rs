//! The undo manager: undoes and redoes the local user's own changes.
//!
//! Undo makes new operations that invert the undone ones, so it syncs like any edit
//! and converges on every replica. Undoing a delete does not re-insert copies: it
//! undoes the delete operations themselves, so the original characters come back,
//! exactly once even when several replicas deleted them and all undo. Undoing an
//! insert deletes its characters by id, including ones someone else deleted already,
//! so undoing that other delete later does not bring them back.

use std::ops::Range;

use crate::{Change, CommitOptions, Doc, EditError, ReplicaId};

/// One undo (or redo) step: the local changes it consists of.
#[derive(Clone, Debug, Default)]
struct Step {
    /// This replica's op sequence numbers.
    seqs: Vec<Range<u64>>,
}

/// Undo and redo stacks for one replica of one document.
///
/// ```
/// use chorus_doc::{Doc, ReplicaId, UndoManager};
///
/// let mut doc = Doc::new(ReplicaId::from_u128(1));
/// let mut undo = UndoManager::new(500);
/// let mut tx = doc.transact();
/// tx.text("body").insert(0, "hello").unwrap();
/// let change = tx.commit();
/// undo.record(&doc, change.as_ref(), 1_000);
///
/// undo.undo(&mut doc, 2_000).unwrap();
/// assert_eq!(doc.text("body").to_string(), "");
/// undo.redo(&mut doc, 3_000).unwrap();
/// assert_eq!(doc.text("body").to_string(), "hello");
/// ```
#[derive(Clone, Debug)]
pub struct UndoManager {
    capture_ms: u64,
    replica: Option<ReplicaId>,
    undo: Vec<Step>,
    redo: Vec<Step>,
    /// When the last recorded change was made, while it may still be joined.
    last_ms: Option<u64>,
}

impl UndoManager {
    /// An empty manager. Changes recorded less than `capture_ms` milliseconds after
    /// the previous one join its undo step (typing a word undoes as one).
    pub fn new(capture_ms: u64) -> Self {
        UndoManager {
            capture_ms,
            replica: None,
            undo: Vec::new(),
            redo: Vec::new(),
            last_ms: None,
        }
    }

    /// Records a local change (what [`Transaction::commit`](crate::Transaction::commit)
    /// returned) made at `now_ms`. A new change clears the redo stack.
    pub fn record(&mut self, doc: &Doc, change: Option<&Change>, now_ms: u64) {
        let Some(change) = change else {
            return;
        };
        if change.replica != doc.replica_id() || change.seqs.is_empty() {
            return;
        }
        if self.replica.is_some_and(|r| r != change.replica) {
            // Another replica's manager: start over rather than mix them.
            self.clear();
        }
        self.replica = Some(change.replica);
        self.redo.clear();
        let joins = self
            .last_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.capture_ms);
        match self.undo.last_mut() {
            Some(step) if joins => push_range(&mut step.seqs, change.seqs.clone()),
            _ => self.undo.push(Step {
                seqs: vec![change.seqs.clone()],
            }),
        }
        self.last_ms = Some(now_ms);
    }

    /// Makes the next recorded change start a new undo step.
    pub fn stop_capturing(&mut self) {
        self.last_ms = None;
    }

    /// Undoes the last step; `Ok(false)` if there was nothing left to undo.
    pub fn undo(&mut self, doc: &mut Doc, now_ms: u64) -> Result<bool, EditError> {
        self.undo_with(doc, now_ms, CommitOptions::default())
    }

    /// [`undo`](Self::undo), its change committed with a message and time like
    /// [`Transaction::commit_with`](crate::Transaction::commit_with).
    pub fn undo_with(
        &mut self,
        doc: &mut Doc,
        now_ms: u64,
        options: CommitOptions,
    ) -> Result<bool, EditError> {
        self.last_ms = None;
        while let Some(step) = self.undo.pop() {
            match invert(doc, &step, now_ms, &options) {
                Ok(Some(done)) => {
                    self.redo.push(done);
                    return Ok(true);
                }
                // Nothing of it is in effect any more (others overwrote it): go on.
                Ok(None) => {}
                Err(e) => {
                    self.undo.push(step);
                    return Err(e);
                }
            }
        }
        Ok(false)
    }

    /// Redoes the last undone step; `Ok(false)` if there was nothing to redo.
    pub fn redo(&mut self, doc: &mut Doc, now_ms: u64) -> Result<bool, EditError> {
        self.redo_with(doc, now_ms, CommitOptions::default())
    }

    /// [`redo`](Self::redo), its change committed with a message and time.
    pub fn redo_with(
        &mut self,
        doc: &mut Doc,
        now_ms: u64,
        options: CommitOptions,
    ) -> Result<bool, EditError> {
        self.last_ms = None;
        while let Some(step) = self.redo.pop() {
            match invert(doc, &step, now_ms, &options) {
                Ok(Some(done)) => {
                    self.undo.push(done);
                    return Ok(true);
                }
                Ok(None) => {}
                Err(e) => {
                    self.redo.push(step);
                    return Err(e);
                }
            }
        }
        Ok(false)
    }

    /// Whether there is a step to undo.
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Whether there is a step to redo.
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Forgets both stacks.
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
        self.last_ms = None;
    }
}

/// Applies the inverse of `step` in one transaction; the step that inverts it back.
fn invert(
    doc: &mut Doc,
    step: &Step,
    now_ms: u64,
    options: &CommitOptions,
) -> Result<Option<Step>, EditError> {
    let tx = doc.transact();
    tx.doc.invert(&step.seqs, now_ms)?;
    Ok(tx
        .commit_with(options.clone())
        .map(|c| Step { seqs: vec![c.seqs] }))
}

fn push_range(v: &mut Vec<Range<u64>>, r: Range<u64>) {
    match v.last_mut() {
        Some(last) if last.end == r.start => last.end = r.end,
        _ => v.push(r),
    }
}

//! Events: what a local commit or a remote apply changed, for editors to follow.
//!
//! While anybody observes the document, every commit and every apply records what it
//! touches (the state of counters, registers and map keys before their first change;
//! the pre-existing items that deletes hide). At the end the recording becomes one
//! [`Event`]: text and list deltas relative to the state before (retain / insert /
//! delete, in the unit each observer asked for), counter deltas, register changes with
//! conflicts appearing or resolved, and map key changes. Applying the deltas of every
//! event, in order, to a copy of the document's state gives the document's state.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::tree::Lv;
use crate::{Kind, MapValue, ReplicaId, Value, Write};

/// The unit text deltas count in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextUnit {
    /// Unicode scalar values.
    Char,
    /// UTF-16 code units (browsers, CodeMirror).
    Utf16,
}

/// Who made the changes of an [`Event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A local transaction's commit.
    Local,
    /// An applied update: the replicas whose operations it applied.
    Remote(Vec<ReplicaId>),
}

/// What one commit or one apply changed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// Who made the changes.
    pub origin: Origin,
    /// One entry per changed container, parents before their children.
    pub changes: Vec<FieldChange>,
}

/// The change of one container.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FieldChange {
    /// The names from the root to the container: the root field's name, then the map
    /// keys leading to it.
    pub path: Vec<String>,
    /// The container's kind (with the path, its identity).
    pub kind: Kind,
    /// What changed.
    pub diff: Diff,
}

/// A container's change.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Diff {
    /// Text: a delta on the text as it was before.
    Text(Vec<TextDelta>),
    /// A list: a delta on the list as it was before.
    List(Vec<ListDelta>),
    /// A counter moved by `delta` (wrapping) to `value`.
    Counter {
        /// The change.
        delta: i64,
        /// The new value.
        value: i64,
    },
    /// A register's new state.
    Register {
        /// The new value (see [`RegisterView::value`]).
        value: Option<Value>,
        /// The conflicting writes now held (empty if none).
        conflicts: Vec<Write<Value>>,
        /// Whether the register was in conflict before.
        was_conflict: bool,
    },
    /// Map keys whose shown value or conflict state changed.
    Map(Vec<KeyChange>),
}

/// One step of a text delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextDelta {
    /// Keep this many units.
    Retain(usize),
    /// Insert this text.
    Insert(String),
    /// Remove this many units.
    Delete(usize),
}

/// One step of a list delta.
#[derive(Clone, Debug, PartialEq)]
pub enum ListDelta {
    /// Keep this many elements.
    Retain(usize),
    /// Insert these elements.
    Insert(Vec<Value>),
    /// Remove this many elements.
    Delete(usize),
}

/// A map key's new state.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// What the key shows now (`None`: deleted).
    pub value: Option<MapValue>,
    /// Whether concurrent writes to the key now conflict (see [`MapView::conflicts`]).
    pub conflict: bool,
}

/// Names an observer, to remove it with [`Doc::unobserve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub(crate) u64);

/// A register's or map key's state before a batch first touched it.
#[derive(Clone, Debug)]
pub(crate) enum Before {
    Counter(i64),
    Register(Option<Value>, Vec<Write<Value>>),
    Map(BTreeMap<Arc<str>, (Option<MapValue>, bool)>),
}

/// What the current batch (a transaction or an apply) touched, while observed.
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    pub(crate) start_lv: Lv,
    /// Items that existed before the batch and whose visibility it changed, in the
    /// order it changed them: (field, lv, len, visible before that change).
    pub(crate) touched: Vec<(u32, Lv, u32, bool)>,
    pub(crate) before: BTreeMap<u32, Before>,
    pub(crate) replicas: Vec<ReplicaId>,
}

pub(crate) fn push_text(d: &mut Vec<TextDelta>, op: TextDelta) {
    match (d.last_mut(), op) {
        (Some(TextDelta::Retain(a)), TextDelta::Retain(b)) => *a += b,
        (Some(TextDelta::Delete(a)), TextDelta::Delete(b)) => *a += b,
        (Some(TextDelta::Insert(a)), TextDelta::Insert(b)) => a.push_str(&b),
        (_, op) => d.push(op),
    }
}

pub(crate) fn push_list(d: &mut Vec<ListDelta>, op: ListDelta) {
    match (d.last_mut(), op) {
        (Some(ListDelta::Retain(a)), ListDelta::Retain(b)) => *a += b,
        (Some(ListDelta::Delete(a)), ListDelta::Delete(b)) => *a += b,
        (Some(ListDelta::Insert(a)), ListDelta::Insert(b)) => a.extend(b),
        (_, op) => d.push(op),
    }
}

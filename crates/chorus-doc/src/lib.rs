//! The Chorus CRDT document.
//!
//! Every replica of a document accepts edits locally, at once, and merges everybody
//! else's edits without conflicts. Replicas exchange *updates*: compact binary deltas
//! of exactly the operations the other side lacks, computed from its
//! [`VersionVector`].
//!
//! ```
//! use chorus_doc::{Doc, ReplicaId};
//!
//! let mut alice = Doc::new(ReplicaId::from_u128(1));
//! let mut bob = Doc::new(ReplicaId::from_u128(2));
//!
//! // Both type at the same place, concurrently.
//! let mut tx = alice.transact();
//! tx.text("body").insert(0, "Hello ").unwrap();
//! tx.commit();
//! let mut tx = bob.transact();
//! tx.text("body").insert(0, "world").unwrap();
//! tx.commit();
//!
//! // Each sends the other what it lacks.
//! let to_bob = alice.encode_since(bob.version());
//! let to_alice = bob.encode_since(alice.version());
//! bob.apply_update(&to_bob).unwrap();
//! alice.apply_update(&to_alice).unwrap();
//!
//! // Both show the same text, and neither word is torn apart.
//! assert_eq!(alice.text("body").to_string(), bob.text("body").to_string());
//! assert_eq!(alice.text("body").to_string(), "Hello world");
//! ```
//!
//! Text uses FugueMax ordering (Weidner & Kleppmann, "The Art of the Fugue"), so
//! runs typed concurrently at the same place never interleave, whether they were typed
//! forwards or backwards. Positions count Unicode scalar values by default;
//! `*_utf16` methods take UTF-16 code units, as browsers and CodeMirror do.

mod apply;
mod blame;
mod branch;
mod changes;
mod check;
mod containers;
mod cursor;
mod doc;
mod encoding;
mod error;
mod events;
mod grow;
mod history;
mod ids;
mod integrate;
mod invert;
mod local;
mod merge;
mod observe;
mod oplog;
mod text;
mod tree;
mod types;
mod undo;
mod value;
mod version;
pub mod wire;

pub use changes::{BlameRun, ChangeInfo, CommitOptions, HistoryGroup};
pub use containers::{
    CounterMut, CounterView, FieldConflict, ListMut, ListView, MapMut, MapView, RegisterMut,
    RegisterView,
};
pub use cursor::{Assoc, Cursor};
pub use doc::{ApplyReport, Doc};
pub use error::{CheckError, DecodeError, EditError, HistoryError};
pub use events::{
    Diff, Event, FieldChange, KeyChange, ListDelta, Origin, SubscriptionId, TextDelta, TextUnit,
};
pub use history::Checkout;
pub use ids::{OpId, ReplicaId};
pub use local::{Change, TextMut, Transaction};
pub use merge::{Max, MergeRule, Min, Union};
pub use text::TextView;
pub use types::{Kind, MapValue, Rule, Write};
pub use undo::UndoManager;
pub use value::Value;
pub use version::{Causality, VersionVector};

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

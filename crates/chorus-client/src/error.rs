//! The client's errors: what went wrong at its boundary (configuration, the state file).

use std::io;
use std::path::PathBuf;

use chorus_doc::ReplicaId;

/// Why a [`Client`](crate::Client) could not open, or could not take an edit.
///
/// Problems with the relay or the network are not errors: the client reconnects, and
/// reports them as [`ClientEvent::Disconnected`](crate::ClientEvent::Disconnected).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The document id is not 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -`.
    #[error(
        "invalid document id {0:?}: a document id is 1 to 128 characters of A-Z, a-z, 0-9, \
         '.', '_', '~' and '-'"
    )]
    InvalidDocId(String),
    /// The relay URL is not `ws://host[:port][/path]` or `wss://…`.
    #[error(
        "invalid relay URL {0:?}: expected the relay's base URL, such as ws://127.0.0.1:8080, \
         without a query"
    )]
    InvalidUrl(String),
    /// The state file is damaged before its last record (a torn last record, left by a
    /// crash while appending, is dropped silently instead).
    #[error(
        "the state file {} is corrupt at byte {offset}: {why}; move it away to start over \
         (edits in it that were never sent are lost then)",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        why: String,
    },
    /// The state file belongs to another replica than the one configured.
    #[error(
        "the state file {} belongs to replica {found}, not {expected}: configure no replica \
         (the file's is used) or use another file",
        path.display()
    )]
    ReplicaMismatch {
        /// The state file.
        path: PathBuf,
        /// The replica configured.
        expected: ReplicaId,
        /// The replica the file names.
        found: ReplicaId,
    },
    /// The state file holds another document.
    #[error(
        "the state file {} holds document {found:?}, not {expected:?}: use one file per document",
        path.display()
    )]
    DocMismatch {
        /// The state file.
        path: PathBuf,
        /// The document configured.
        expected: String,
        /// The document the file holds.
        found: String,
    },
    /// Another client (in this process or another) is using the state file.
    #[error(
        "the state file {} is in use by another client{}: one client per state file; close \
         the other, or delete {} if no client is running",
        path.display(),
        pid.map(|p| format!(" (process {p})")).unwrap_or_default(),
        lock.display()
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// The process holding the lock, as the lock file says.
        pid: Option<u32>,
    },
    /// Reading or writing the state file failed. After a failed write the client stops
    /// syncing (edits made since cannot be kept across a restart, so sending them could
    /// later reuse their ids): reopen it once the disk is fixed.
    #[error("cannot {action} the state file {}: {source}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// What the client was doing.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The client was closed, or stopped after its state file could not be written.
    #[error("the client is closed")]
    Closed,
}

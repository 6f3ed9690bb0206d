//! Durable storage of documents: an append-only log of updates per document,
//! periodically compacted into a snapshot.
//!
//! The relay acknowledges an update only after [`Store::append`] (or
//! [`Store::append_batch`]) has returned for it: from then on the update survives a
//! crash of the process (`kill -9`) and, with the default [`SqliteStore`], a power loss.
//! When a document's log has grown ([`Store::log_len`]), the room encodes its state and
//! calls [`Store::compact`], which stores that snapshot and deletes the log entries it
//! covers in one transaction, so a crash leaves either the old snapshot and the whole
//! log, or the new snapshot and the rest of the log — never a gap.
//!
//! ```
//! use chorus_doc::{Doc, ReplicaId};
//! use chorus_relay::storage::{SqliteStore, Store, load_doc};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("chorus-storage-doctest-{}", std::process::id()));
//! let mut store = SqliteStore::open(&dir)?;
//!
//! // A client's edit arrives as an update; store it before acknowledging it.
//! let mut client = Doc::new(ReplicaId::from_u128(1));
//! let mut tx = client.transact();
//! tx.text("body").insert(0, "hello").unwrap();
//! tx.commit();
//! let seq = store.append("notes", &client.encode())?;
//!
//! // Compact: the snapshot replaces the log entries up to `seq`.
//! let room = load_doc(&mut store, "notes", ReplicaId::from_u128(99))?.expect("stored");
//! store.compact("notes", &room.encode(), seq)?;
//! assert_eq!(store.log_len("notes")?.entries, 0);
//!
//! // After a restart the document loads the same.
//! drop(store);
//! let mut store = SqliteStore::open(&dir)?;
//! let loaded = load_doc(&mut store, "notes", ReplicaId::from_u128(99))?.expect("stored");
//! assert_eq!(loaded.text("body").to_string(), "hello");
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Sequence numbers
//!
//! Each document numbers its log entries 1, 2, 3, … in the order they were appended;
//! numbers are never reused while the document exists (a snapshot remembers the last
//! one it covers), so "every acknowledged seq is still there" is checkable after a
//! crash. [`Store::delete`] forgets the document, numbering included.
//!
//! # The SQLite schema
//!
//! One file, `chorus.sqlite3` in the data directory, in WAL mode with
//! `synchronous=FULL` (every commit syncs the write-ahead log before it returns):
//!
//! ```sql
//! -- At most one snapshot per document: the encoded state that covers every logged
//! -- update with seq <= up_to (those entries are deleted when it is written).
//! CREATE TABLE snapshots (
//!     doc   TEXT PRIMARY KEY NOT NULL,
//!     data  BLOB NOT NULL,
//!     up_to INTEGER NOT NULL
//! ) WITHOUT ROWID;
//! -- The updates appended since the snapshot, by seq.
//! CREATE TABLE updates (
//!     doc  TEXT NOT NULL,
//!     seq  INTEGER NOT NULL,
//!     data BLOB NOT NULL,
//!     PRIMARY KEY (doc, seq)
//! ) WITHOUT ROWID;
//! ```
//!
//! `PRAGMA user_version` holds the schema version ([`SCHEMA_VERSION`]); a file written
//! by a newer schema is refused rather than misread.
//!
//! # Corrupt data
//!
//! Storage keeps bytes; only [`load_doc`] decodes them. A snapshot or update that does
//! not decode makes [`load_doc`] return [`StorageError::Corrupt`] naming the document
//! and the seq. The relay should then refuse to open that room (close its connections
//! with an error and log it) and leave the stored bytes alone for an operator to
//! inspect; every other document is stored independently and is unaffected.
//!
//! # Blocking
//!
//! Every method blocks on disk I/O (an append waits for an fsync), so an async relay
//! calls them from `spawn_blocking` or a dedicated thread. Several [`SqliteStore`]s may
//! be opened on the same directory (say one per worker thread): WAL lets readers run
//! beside the writer, and writers wait for each other up to [`BUSY_TIMEOUT`].

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chorus_doc::{DecodeError, Doc, ReplicaId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The version of the SQLite schema this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another connection's write to finish before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which stored record of a document is meant by a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The snapshot; its seq is the last log entry it covers.
    Snapshot,
    /// A logged update.
    Update,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Snapshot => "snapshot",
            Part::Update => "update",
        })
    }
}

/// Storage failed; what was asked for did not happen (a transaction is all or nothing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database reported an error (disk full, file locked too long, I/O error…).
    #[error("SQLite storage error: {0}; check the data directory's disk space and permissions")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored snapshot or update of one document does not decode. Other documents are
    /// unaffected; this one should not be served until an operator has looked at it.
    #[error(
        "document {doc:?} is corrupt in storage: its {part} at seq {seq} does not decode ({source}); \
         the document cannot be loaded, restore it from a backup or delete it"
    )]
    Corrupt {
        /// The document.
        doc: String,
        /// The seq of the update, or for a snapshot the last seq it covers.
        seq: u64,
        /// Whether the snapshot or a logged update is corrupt.
        part: Part,
        /// Why it does not decode.
        #[source]
        source: DecodeError,
    },
    /// A file or directory could not be created or opened.
    #[error("cannot use the data directory {path:?}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The database file was written by a newer version of Chorus.
    #[error(
        "the database uses schema version {found}, but this build reads version {supported} at most; upgrade Chorus"
    )]
    UnsupportedSchema {
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// [`Store::compact`] was asked for a snapshot that would not cover what it must:
    /// beyond the last appended seq, or behind the current snapshot. Nothing changed.
    #[error(
        "cannot compact document {doc:?} up to seq {up_to}: the log ends at seq {last} and the \
         current snapshot covers up to seq {snapshot_up_to}; pass the seq of an appended update \
         that the snapshot includes"
    )]
    BadCompaction {
        /// The document.
        doc: String,
        /// The seq asked for.
        up_to: u64,
        /// The last seq appended.
        last: u64,
        /// The last seq the current snapshot covers (0 without one).
        snapshot_up_to: u64,
    },
}

/// What is stored for one document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    /// The latest snapshot, if the document was ever compacted.
    pub snapshot: Option<Vec<u8>>,
    /// The last seq the snapshot covers (0 without a snapshot).
    pub snapshot_up_to: u64,
    /// The updates appended after the snapshot, in order, with their seqs.
    pub updates: Vec<(u64, Vec<u8>)>,
    /// The total size of `updates` in bytes.
    pub log_bytes: u64,
}

impl Stored {
    /// The last seq appended to the document (covered by the snapshot or in the log).
    pub fn last_seq(&self) -> u64 {
        self.updates
            .last()
            .map_or(self.snapshot_up_to, |&(seq, _)| seq)
    }
}

/// The size of a document's log since its last snapshot: what decides when to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogLen {
    /// Updates in the log.
    pub entries: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The last seq appended (0 for a document never written); pass it to
    /// [`Store::compact`] with a snapshot that includes every logged update.
    pub last_seq: u64,
}

/// Durable storage of documents, as an update log per document with snapshots.
///
/// Documents are named by their id (the relay's room id); they are independent of each
/// other. [`SqliteStore`] is the default; the trait leaves room for others. An
/// implementation must make [`append`](Store::append) and
/// [`append_batch`](Store::append_batch) durable before they return, and
/// [`compact`](Store::compact) atomic.
pub trait Store: Send {
    /// Everything stored for `doc`, or `None` if nothing is.
    fn load(&mut self, doc: &str) -> Result<Option<Stored>, StorageError>;

    /// Appends `updates` to `doc`'s log as one durable transaction and returns their
    /// seqs (empty for no updates). When it returns, all of them are durable; on error,
    /// none was stored. Grouping updates makes one disk sync serve them all.
    fn append_batch(&mut self, doc: &str, updates: &[&[u8]]) -> Result<Range<u64>, StorageError>;

    /// Appends updates to several documents' logs (in order, a document may appear
    /// more than once) and returns each one's seq. A store that can should make it
    /// one durable transaction, so one disk sync serves every document (a relay's
    /// group commit); the default appends document by document.
    fn append_many(&mut self, batch: &[(&str, &[u8])]) -> Result<Vec<u64>, StorageError> {
        batch
            .iter()
            .map(|(doc, update)| self.append(doc, update))
            .collect()
    }

    /// Appends one update to `doc`'s log and returns its seq once it is durable.
    fn append(&mut self, doc: &str, update: &[u8]) -> Result<u64, StorageError> {
        Ok(self.append_batch(doc, &[update])?.start)
    }

    /// Stores `snapshot` as `doc`'s state up to and including seq `up_to_seq`, and
    /// deletes the log entries it covers, in one transaction. `snapshot` must include
    /// every update with seq `<= up_to_seq`; updates appended after it stay in the log.
    /// Refused with [`StorageError::BadCompaction`] if `up_to_seq` is beyond the last
    /// appended seq or behind the current snapshot.
    fn compact(&mut self, doc: &str, snapshot: &[u8], up_to_seq: u64) -> Result<(), StorageError>;

    /// The size of `doc`'s log since its last snapshot.
    fn log_len(&self, doc: &str) -> Result<LogLen, StorageError>;

    /// The ids of every stored document, sorted.
    fn list_docs(&self) -> Result<Vec<String>, StorageError>;

    /// Forgets `doc`: its snapshot, log and numbering. Returns whether anything was
    /// stored.
    fn delete(&mut self, doc: &str) -> Result<bool, StorageError>;
}

/// The default [`Store`]: one SQLite file in the data directory (see the
/// [module docs](self) for the schema).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// The name of the database file inside the data directory.
    pub const FILE_NAME: &str = "chorus.sqlite3";

    /// Opens (creating them if needed) the directory `dir` and the database inside it.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(Self::FILE_NAME);
        let conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: appends write sequentially and readers never block the writer.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Io {
                path,
                source: std::io::Error::other(format!(
                    "SQLite refused WAL mode (journal mode is {mode:?}); use a local file system"
                )),
            });
        }
        // FULL: a commit syncs the WAL, so a returned append survives a power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut store = SqliteStore { conn, path };
        store.migrate()?;
        Ok(store)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        match found {
            0 => {
                tx.execute_batch(
                    "CREATE TABLE snapshots (
                         doc   TEXT PRIMARY KEY NOT NULL,
                         data  BLOB NOT NULL,
                         up_to INTEGER NOT NULL
                     ) WITHOUT ROWID;
                     CREATE TABLE updates (
                         doc  TEXT NOT NULL,
                         seq  INTEGER NOT NULL,
                         data BLOB NOT NULL,
                         PRIMARY KEY (doc, seq)
                     ) WITHOUT ROWID;",
                )?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            SCHEMA_VERSION => {}
            _ => {
                return Err(StorageError::UnsupportedSchema {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The last seq the snapshot of `doc` covers (0 without one).
fn snapshot_up_to(conn: &Connection, doc: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT up_to FROM snapshots WHERE doc = ?1")?
        .query_row([doc], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The last seq logged for `doc` (0 for none).
fn last_logged(conn: &Connection, doc: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT coalesce(max(seq), 0) FROM updates WHERE doc = ?1")?
        .query_row([doc], |row| row.get(0))
}

impl Store for SqliteStore {
    fn load(&mut self, doc: &str) -> Result<Option<Stored>, StorageError> {
        // One read transaction, so the snapshot and the log are from the same moment.
        let tx = self.conn.transaction()?;
        let snapshot: Option<(Vec<u8>, u64)> = tx
            .prepare_cached("SELECT data, up_to FROM snapshots WHERE doc = ?1")?
            .query_row([doc], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let (snapshot, snapshot_up_to) = match snapshot {
            Some((data, up_to)) => (Some(data), up_to),
            None => (None, 0),
        };
        let updates = tx
            .prepare_cached(
                "SELECT seq, data FROM updates WHERE doc = ?1 AND seq > ?2 ORDER BY seq",
            )?
            .query_map(params![doc, snapshot_up_to], |row| {
                Ok((row.get::<_, u64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        tx.finish()?;
        if snapshot.is_none() && updates.is_empty() {
            return Ok(None);
        }
        let log_bytes = updates.iter().map(|(_, u)| u.len() as u64).sum();
        Ok(Some(Stored {
            snapshot,
            snapshot_up_to,
            updates,
            log_bytes,
        }))
    }

    fn append_batch(&mut self, doc: &str, updates: &[&[u8]]) -> Result<Range<u64>, StorageError> {
        // IMMEDIATE takes the write lock first, so no other connection can number
        // updates between our read of the last seq and our insert.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first = last_logged(&tx, doc)?.max(snapshot_up_to(&tx, doc)?) + 1;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO updates (doc, seq, data) VALUES (?1, ?2, ?3)")?;
            for (seq, update) in (first..).zip(updates) {
                insert.execute(params![doc, seq, update])?;
            }
        }
        // With synchronous=FULL the commit returns after the WAL is synced.
        tx.commit()?;
        Ok(first..first + updates.len() as u64)
    }

    fn append_many(&mut self, batch: &[(&str, &[u8])]) -> Result<Vec<u64>, StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut next: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        let mut seqs = Vec::with_capacity(batch.len());
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO updates (doc, seq, data) VALUES (?1, ?2, ?3)")?;
            for &(doc, update) in batch {
                let seq = match next.get_mut(doc) {
                    Some(n) => n,
                    None => next
                        .entry(doc)
                        .or_insert(last_logged(&tx, doc)?.max(snapshot_up_to(&tx, doc)?)),
                };
                *seq += 1;
                insert.execute(params![doc, *seq, update])?;
                seqs.push(*seq);
            }
        }
        tx.commit()?;
        Ok(seqs)
    }

    fn compact(&mut self, doc: &str, snapshot: &[u8], up_to_seq: u64) -> Result<(), StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let covered = snapshot_up_to(&tx, doc)?;
        let last = last_logged(&tx, doc)?.max(covered);
        if up_to_seq > last || up_to_seq < covered {
            return Err(StorageError::BadCompaction {
                doc: doc.to_owned(),
                up_to: up_to_seq,
                last,
                snapshot_up_to: covered,
            });
        }
        tx.prepare_cached(
            "INSERT INTO snapshots (doc, data, up_to) VALUES (?1, ?2, ?3)
             ON CONFLICT (doc) DO UPDATE SET data = excluded.data, up_to = excluded.up_to",
        )?
        .execute(params![doc, snapshot, up_to_seq])?;
        tx.prepare_cached("DELETE FROM updates WHERE doc = ?1 AND seq <= ?2")?
            .execute(params![doc, up_to_seq])?;
        tx.commit()?;
        Ok(())
    }

    fn log_len(&self, doc: &str) -> Result<LogLen, StorageError> {
        // Reads in one statement, so the numbers agree with each other.
        let (entries, bytes, last): (u64, u64, u64) = self
            .conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(length(data)), 0),
                        max(coalesce(max(seq), 0),
                            coalesce((SELECT up_to FROM snapshots WHERE doc = ?1), 0))
                 FROM updates WHERE doc = ?1",
            )?
            .query_row([doc], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(LogLen {
            entries,
            bytes,
            last_seq: last,
        })
    }

    fn list_docs(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT doc FROM snapshots UNION SELECT DISTINCT doc FROM updates ORDER BY doc",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn delete(&mut self, doc: &str) -> Result<bool, StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let snapshots = tx.execute("DELETE FROM snapshots WHERE doc = ?1", [doc])?;
        let updates = tx.execute("DELETE FROM updates WHERE doc = ?1", [doc])?;
        tx.commit()?;
        Ok(snapshots + updates > 0)
    }
}

/// Loads `doc_id` from `store` into a replica named `replica`: decodes the snapshot,
/// then applies every logged update after it, in order. `None` if nothing is stored.
///
/// A snapshot or update that does not decode is [`StorageError::Corrupt`], naming the
/// document and seq: the relay should refuse to open that room and leave the data for
/// an operator; other documents are unaffected. Operations whose dependencies were never
/// stored stay pending in the document, as they were in the room that stored them.
pub fn load_doc<S: Store + ?Sized>(
    store: &mut S,
    doc_id: &str,
    replica: ReplicaId,
) -> Result<Option<Doc>, StorageError> {
    let Some(stored) = store.load(doc_id)? else {
        return Ok(None);
    };
    doc_from_stored(doc_id, &stored, replica).map(Some)
}

/// The document `stored` holds (see [`load_doc`]).
pub fn doc_from_stored(
    doc_id: &str,
    stored: &Stored,
    replica: ReplicaId,
) -> Result<Doc, StorageError> {
    let corrupt = |seq, part, source| StorageError::Corrupt {
        doc: doc_id.to_owned(),
        seq,
        part,
        source,
    };
    let mut doc = match &stored.snapshot {
        Some(bytes) => Doc::decode(bytes, replica)
            .map_err(|e| corrupt(stored.snapshot_up_to, Part::Snapshot, e))?,
        None => Doc::new(replica),
    };
    for (seq, update) in &stored.updates {
        doc.apply_update(update)
            .map_err(|e| corrupt(*seq, Part::Update, e))?;
    }
    Ok(doc)
}

//! The local state file: an append-only log of records that makes the client a full
//! offline replica, so edits survive a restart before they reach the relay.
//!
//! ```text
//! file   = record*
//! record = len:u32 (LE) · crc32(bytes):u32 (LE) · bytes          (len ≥ 1)
//! first record  = "CHRC" · format:u8 (=1) · replica (16 bytes) · len:u8 · doc id (UTF-8)
//! other records = an update (local changes and remote updates, in the order applied)
//! ```
//!
//! Appending a local change ends with `fsync`, and the client sends a change only
//! after that, so an operation never reaches the relay before it is on disk here: a
//! restart cannot hand out its id again. A crash while appending leaves a torn last
//! record, which loading drops (truncating the file to the last good record); damage
//! before the last record is [`ClientError::Corrupt`]. When the file has grown past a
//! threshold it is rewritten as the header and the full state, into a temporary file
//! that is synced and renamed over the old one.
//!
//! One client at a time may use a file: two appending under the same replica id would
//! give different operations the same ids. A lock file beside it (`<file>.lock`,
//! holding the owner's process id) keeps a second one out; a lock left by a process
//! that is gone is taken over (on Linux, where `/proc` tells).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chorus_doc::{Doc, ReplicaId};

use crate::ClientError;

const MAGIC: &[u8; 4] = b"CHRC";
const FORMAT: u8 = 1;
const RECORD_HEADER: usize = 8;
/// The file is rewritten once it exceeds this size and twice its size after the last
/// rewrite.
pub(crate) const COMPACT_MIN: u64 = 1 << 20;

/// An open state file.
#[derive(Debug)]
pub(crate) struct FileStore {
    path: PathBuf,
    file: File,
    doc_id: String,
    replica: ReplicaId,
    /// The file's length.
    len: u64,
    /// The length right after opening or the last compaction.
    base: u64,
    compact_min: u64,
    /// Removed when the store is dropped.
    _lock: LockFile,
}

/// One record found while reading a file.
struct Record<'a> {
    offset: u64,
    bytes: &'a [u8],
}

impl FileStore {
    /// Opens (or creates) the state file of document `doc_id` and loads the document.
    /// `replica`, if given, must be the one the file names; a new file takes it, or a
    /// random one.
    pub(crate) fn open(
        path: &Path,
        doc_id: &str,
        replica: Option<ReplicaId>,
    ) -> Result<(FileStore, Doc), ClientError> {
        let io = |action| {
            move |source| ClientError::Io {
                path: path.to_owned(),
                action,
                source,
            }
        };
        let lock = LockFile::acquire(path)?;
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("read")(e)),
        };
        let (records, good_len) = parse(path, &data)?;
        let Some(first) = records.first() else {
            // A new file, or one whose header never got written completely (so nothing
            // else was written either).
            let replica = replica.unwrap_or_else(ReplicaId::random);
            let store = FileStore::create(path, doc_id, replica, lock)?;
            return Ok((store, Doc::new(replica)));
        };
        let (found_replica, found_doc) = parse_header(path, first)?;
        if found_doc != doc_id {
            return Err(ClientError::DocMismatch {
                path: path.to_owned(),
                expected: doc_id.to_owned(),
                found: found_doc,
            });
        }
        if let Some(r) = replica {
            if r != found_replica {
                return Err(ClientError::ReplicaMismatch {
                    path: path.to_owned(),
                    expected: r,
                    found: found_replica,
                });
            }
        }
        let mut doc = Doc::new(found_replica);
        for r in &records[1..] {
            doc.apply_update(r.bytes)
                .map_err(|e| ClientError::Corrupt {
                    path: path.to_owned(),
                    offset: r.offset,
                    why: format!("the update in it cannot be applied: {e}"),
                })?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open"))?;
        if good_len < data.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                dropped = data.len() as u64 - good_len,
                "dropping the torn last record of the state file (a crash while appending)"
            );
            file.set_len(good_len).map_err(io("truncate"))?;
            file.sync_all().map_err(io("sync"))?;
        }
        let store = FileStore {
            path: path.to_owned(),
            file,
            doc_id: doc_id.to_owned(),
            replica: found_replica,
            len: good_len,
            base: good_len,
            compact_min: COMPACT_MIN,
            _lock: lock,
        };
        Ok((store, doc))
    }

    /// A new file holding only the header.
    fn create(
        path: &Path,
        doc_id: &str,
        replica: ReplicaId,
        lock: LockFile,
    ) -> Result<FileStore, ClientError> {
        let io = |action| {
            move |source| ClientError::Io {
                path: path.to_owned(),
                action,
                source,
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .map_err(io("create"))?;
        let header = record(&header(doc_id, replica));
        file.write_all(&header).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        sync_dir(path).map_err(io("sync the directory of"))?;
        drop(file);
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open"))?;
        Ok(FileStore {
            path: path.to_owned(),
            file,
            doc_id: doc_id.to_owned(),
            replica,
            len: header.len() as u64,
            base: header.len() as u64,
            compact_min: COMPACT_MIN,
            _lock: lock,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Sets the size past which the file is compacted (tests).
    #[cfg(test)]
    pub(crate) fn set_compact_min(&mut self, bytes: u64) {
        self.compact_min = bytes;
    }

    /// Appends an update; with `sync`, returns once it is on disk.
    pub(crate) fn append(&mut self, update: &[u8], sync: bool) -> Result<(), ClientError> {
        let io = |action| {
            let path = self.path.clone();
            move |source| ClientError::Io {
                path,
                action,
                source,
            }
        };
        if update.is_empty() {
            return Ok(());
        }
        let rec = record(update);
        self.file.write_all(&rec).map_err(io("write"))?;
        if sync {
            self.file.sync_data().map_err(io("sync"))?;
        }
        self.len += rec.len() as u64;
        Ok(())
    }

    /// Whether the file has grown enough to be rewritten.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.len > self.compact_min && self.len > 2 * self.base
    }

    /// Rewrites the file as the header and `doc`'s full state. On error the old file is
    /// still in place and still appended to.
    pub(crate) fn compact(&mut self, doc: &Doc) -> Result<(), ClientError> {
        let io = |action| {
            let path = self.path.clone();
            move |source| ClientError::Io {
                path,
                action,
                source,
            }
        };
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = self.path.with_file_name(tmp_name);
        let mut bytes = record(&header(&self.doc_id, self.replica));
        bytes.extend_from_slice(&record(&doc.encode()));
        let mut f = File::create(&tmp).map_err(io("create the temporary copy of"))?;
        f.write_all(&bytes)
            .map_err(io("write the temporary copy of"))?;
        f.sync_all().map_err(io("sync the temporary copy of"))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io("replace"))?;
        sync_dir(&self.path).map_err(io("sync the directory of"))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io("reopen"))?;
        self.len = bytes.len() as u64;
        self.base = self.len;
        Ok(())
    }

    /// Flushes everything to disk.
    pub(crate) fn sync(&mut self) -> Result<(), ClientError> {
        self.file.sync_all().map_err(|source| ClientError::Io {
            path: self.path.clone(),
            action: "sync",
            source,
        })
    }
}

fn header(doc_id: &str, replica: ReplicaId) -> Vec<u8> {
    let mut h = Vec::with_capacity(22 + doc_id.len());
    h.extend_from_slice(MAGIC);
    h.push(FORMAT);
    h.extend_from_slice(replica.as_bytes());
    // Document ids are at most 128 bytes (checked before a store is opened).
    h.push(u8::try_from(doc_id.len()).unwrap_or(u8::MAX));
    h.extend_from_slice(doc_id.as_bytes());
    h
}

fn parse_header(path: &Path, r: &Record<'_>) -> Result<(ReplicaId, String), ClientError> {
    let corrupt = |why: &str| ClientError::Corrupt {
        path: path.to_owned(),
        offset: r.offset,
        why: why.to_owned(),
    };
    let b = r.bytes;
    if b.len() < 4 || &b[..4] != MAGIC {
        return Err(corrupt("this is not a Chorus client state file"));
    }
    if b.len() < 22 {
        return Err(corrupt("the header is too short"));
    }
    if b[4] != FORMAT {
        return Err(corrupt(&format!(
            "format {} is not supported (this build reads format {FORMAT}); upgrade Chorus",
            b[4]
        )));
    }
    let replica = ReplicaId::from_bytes(b[5..21].try_into().expect("16 bytes"));
    let n = usize::from(b[21]);
    let doc = b
        .get(22..22 + n)
        .filter(|_| b.len() == 22 + n)
        .and_then(|d| std::str::from_utf8(d).ok())
        .ok_or_else(|| corrupt("the header's document id is malformed"))?;
    Ok((replica, doc.to_owned()))
}

/// `bytes` framed as a record.
fn record(bytes: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(RECORD_HEADER + bytes.len());
    let len = u32::try_from(bytes.len()).expect("an update under 4 GiB");
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    r.extend_from_slice(bytes);
    r
}

/// The records of a file and the length of its good prefix. A bad record that reaches
/// the end of the file is a torn append and ends the good prefix; one followed by
/// more data is corruption.
fn parse<'a>(path: &Path, data: &'a [u8]) -> Result<(Vec<Record<'a>>, u64), ClientError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let torn = |why: &str| -> Result<(Vec<Record<'a>>, u64), ClientError> {
            Err(ClientError::Corrupt {
                path: path.to_owned(),
                offset: at as u64,
                why: why.to_owned(),
            })
        };
        if rest.len() < RECORD_HEADER {
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len == 0 {
            // Never written: a crash can leave zeros where an append was going.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return torn("a record of length 0");
        }
        let Some(bytes) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            break;
        };
        if crc32fast::hash(bytes) != crc {
            if RECORD_HEADER + len == rest.len() {
                break;
            }
            return torn("checksum mismatch");
        }
        records.push(Record {
            offset: at as u64,
            bytes,
        });
        at += RECORD_HEADER + len;
    }
    Ok((records, at as u64))
}

/// `<state file>.lock`, held while a client uses the state file.
#[derive(Debug)]
struct LockFile {
    path: PathBuf,
}

impl LockFile {
    fn acquire(state: &Path) -> Result<LockFile, ClientError> {
        let mut name = state.file_name().unwrap_or_default().to_owned();
        name.push(".lock");
        let path = state.with_file_name(name);
        let mut took_over = false;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(LockFile { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if !took_over && holder.is_some_and(gone) {
                        tracing::warn!(lock = %path.display(), "taking over the lock of a client that is gone");
                        let _ = fs::remove_file(&path);
                        took_over = true;
                        continue;
                    }
                    return Err(ClientError::Locked {
                        path: state.to_owned(),
                        lock: path,
                        pid: holder,
                    });
                }
                Err(source) => {
                    return Err(ClientError::Io {
                        path: path.clone(),
                        action: "create the lock file of",
                        source,
                    });
                }
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is known to have ended (only where `/proc` tells).
fn gone(pid: u32) -> bool {
    pid != std::process::id()
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Makes a rename or a creation in `path`'s directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(doc: &mut Doc, at: usize, s: &str) -> Vec<u8> {
        let before = doc.version().clone();
        let mut tx = doc.transact();
        tx.text("t").insert(at, s).unwrap();
        tx.commit();
        doc.encode_since(&before)
    }

    fn text(doc: &Doc) -> String {
        doc.text("t").to_string()
    }

    #[test]
    fn round_trip_keeps_replica_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.chorus");
        let (mut store, mut doc) = FileStore::open(&path, "notes", None).unwrap();
        let replica = doc.replica_id();
        for (i, w) in ["hello", " world", "!"].iter().enumerate() {
            let at = if i == 0 { 0 } else { doc.text("t").len() };
            let u = typed(&mut doc, at, w);
            store.append(&u, true).unwrap();
        }
        // A remote update goes in too.
        let mut other = Doc::new(ReplicaId::from_u128(7));
        other.apply_update(&doc.encode()).unwrap();
        let before = doc.version().clone();
        typed(&mut other, 0, ">> ");
        doc.apply_update(&other.encode_since(&before)).unwrap();
        store.append(&doc.encode_since(&before), false).unwrap();
        drop(store);

        let (_, loaded) = FileStore::open(&path, "notes", None).unwrap();
        assert_eq!(loaded.replica_id(), replica);
        assert_eq!(text(&loaded), ">> hello world!");
        assert_eq!(loaded.version(), doc.version());
        // The configured replica must match; the document too.
        assert!(matches!(
            FileStore::open(&path, "notes", Some(ReplicaId::from_u128(3))),
            Err(ClientError::ReplicaMismatch { .. })
        ));
        assert!(FileStore::open(&path, "notes", Some(replica)).is_ok());
        assert!(matches!(
            FileStore::open(&path, "other", None),
            Err(ClientError::DocMismatch { .. })
        ));
    }

    #[test]
    fn one_client_at_a_time_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.chorus");
        let lock = dir.path().join("doc.chorus.lock");
        let (store, _) = FileStore::open(&path, "d", None).unwrap();
        match FileStore::open(&path, "d", None) {
            Err(ClientError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(store);
        assert!(!lock.exists());
        let (store, _) = FileStore::open(&path, "d", None).unwrap();
        drop(store);
        // A lock left by a process that is gone is taken over (where /proc tells).
        if Path::new("/proc/self").exists() {
            fs::write(&lock, "4000000000").unwrap();
            assert!(FileStore::open(&path, "d", None).is_ok());
        }
    }

    #[test]
    fn a_new_file_takes_the_configured_replica() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.chorus");
        let r = ReplicaId::from_u128(42);
        let (_, doc) = FileStore::open(&path, "d", Some(r)).unwrap();
        assert_eq!(doc.replica_id(), r);
        let (_, doc) = FileStore::open(&path, "d", None).unwrap();
        assert_eq!(doc.replica_id(), r);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.chorus");
        let (mut store, mut doc) = FileStore::open(&path, "d", None).unwrap();
        let u = typed(&mut doc, 0, "kept");
        store.append(&u, true).unwrap();
        let good = store.len();
        let u = typed(&mut doc, 4, " torn");
        store.append(&u, true).unwrap();
        drop(store);
        let full = fs::read(&path).unwrap();
        // Every cut inside the last record, and a last record of zeros or garbage of
        // the right length, loads the first edit only.
        let last = &full[good as usize..];
        let mut cases: Vec<Vec<u8>> = (1..last.len()).map(|n| last[..n].to_vec()).collect();
        cases.push(vec![0; last.len()]);
        let mut garbled = last.to_vec();
        *garbled.last_mut().unwrap() ^= 0xff;
        cases.push(garbled);
        for tail in cases {
            let mut bytes = full[..good as usize].to_vec();
            bytes.extend_from_slice(&tail);
            fs::write(&path, &bytes).unwrap();
            let (store, loaded) = FileStore::open(&path, "d", None).unwrap();
            assert_eq!(text(&loaded), "kept", "tail {tail:?}");
            assert_eq!(store.len(), good);
            assert_eq!(fs::metadata(&path).unwrap().len(), good);
        }
        // A file whose header was torn is a new file.
        fs::write(&path, &full[..5]).unwrap();
        let (_, loaded) = FileStore::open(&path, "d", None).unwrap();
        assert_eq!(text(&loaded), "");
    }

    #[test]
    fn damage_before_the_last_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.chorus");
        let (mut store, mut doc) = FileStore::open(&path, "d", None).unwrap();
        let first = store.len();
        for (at, s) in [(0, "one"), (3, " two"), (7, " three")] {
            let u = typed(&mut doc, at, s);
            store.append(&u, true).unwrap();
        }
        drop(store);
        let good = fs::read(&path).unwrap();
        // A flipped byte inside the first update.
        let mut bad = good.clone();
        bad[first as usize + RECORD_HEADER + 2] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        match FileStore::open(&path, "d", None) {
            Err(ClientError::Corrupt { offset, .. }) => assert_eq!(offset, first),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Not a state file at all.
        fs::write(&path, record(b"something else entirely")).unwrap();
        assert!(matches!(
            FileStore::open(&path, "d", None),
            Err(ClientError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn compaction_keeps_the_content_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.chorus");
        let (mut store, mut doc) = FileStore::open(&path, "d", None).unwrap();
        store.set_compact_min(4096);
        let mut compactions = 0;
        for i in 0..2000 {
            let len = doc.text("t").len();
            let u = typed(&mut doc, (i * 7) % (len + 1), "ab");
            store.append(&u, false).unwrap();
            if store.wants_compaction() {
                let before = store.len();
                store.compact(&doc).unwrap();
                assert!(store.len() < before);
                compactions += 1;
            }
        }
        assert!(compactions >= 2, "{compactions} compactions");
        // Appends after a compaction land in the new file.
        let u = typed(&mut doc, 0, "last");
        store.append(&u, true).unwrap();
        drop(store);
        let (_, loaded) = FileStore::open(&path, "d", None).unwrap();
        assert_eq!(text(&loaded), text(&doc));
        assert_eq!(loaded.version(), doc.version());
        assert!(!dir.path().join("doc.chorus.tmp").exists());
    }
}

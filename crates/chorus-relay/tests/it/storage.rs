//! The relay's storage against real SQLite files: reopening, independence of
//! documents, compaction, corruption. (`tests/crash.rs` kills a writer with SIGKILL.)

use std::path::Path;

use chorus_doc::{Doc, ReplicaId};
use chorus_relay::storage::{
    LogLen, Part, SCHEMA_VERSION, SqliteStore, StorageError, Store, load_doc,
};

const ROOM: ReplicaId = ReplicaId::from_u128(0xAAAA);

/// Types `text` at the end of `doc`'s body and returns the update carrying it.
fn edit(doc: &mut Doc, text: &str) -> Vec<u8> {
    let before = doc.version().clone();
    let end = doc.text("body").len();
    let mut tx = doc.transact();
    tx.text("body").insert(end, text).unwrap();
    tx.counter("edits").add(1).unwrap();
    tx.commit();
    doc.encode_since(&before)
}

fn assert_same(loaded: &Doc, expected: &Doc) {
    loaded.check().unwrap();
    assert_eq!(loaded.to_json(), expected.to_json());
    assert_eq!(loaded.version(), expected.version());
}

fn load(store: &mut SqliteStore, doc: &str) -> Doc {
    load_doc(store, doc, ROOM)
        .unwrap()
        .expect("document is stored")
}

#[test]
fn appended_updates_load_the_same_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let mut client = Doc::new(ReplicaId::from_u128(1));
    {
        let mut store = SqliteStore::open(&data).unwrap();
        assert_eq!(store.path(), data.join(SqliteStore::FILE_NAME));
        assert!(store.load("notes").unwrap().is_none());
        assert!(load_doc(&mut store, "notes", ROOM).unwrap().is_none());
        for i in 0..20 {
            let seq = store
                .append("notes", &edit(&mut client, &format!("line {i}\n")))
                .unwrap();
            assert_eq!(seq, i + 1);
        }
    }
    let mut store = SqliteStore::open(&data).unwrap();
    let loaded = load(&mut store, "notes");
    assert_same(&loaded, &client);
    assert!(
        loaded
            .text("body")
            .to_string()
            .starts_with("line 0\nline 1\n")
    );
    let stored = store.load("notes").unwrap().unwrap();
    assert_eq!(stored.snapshot, None);
    assert_eq!(
        stored.updates.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(stored.last_seq(), 20);

    // The file is in WAL mode, as seen by any other connection.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn documents_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let names = ["b", "a", "c/with/slashes", "d ünïcode", "e"];
    let mut clients: Vec<Doc> = (0..names.len())
        .map(|i| Doc::new(ReplicaId::from_u128(i as u128 + 1)))
        .collect();
    for round in 0..10u64 {
        for (name, client) in names.iter().zip(&mut clients) {
            let seq = store
                .append(name, &edit(client, &format!("{name}{round} ")))
                .unwrap();
            assert_eq!(seq, round + 1, "each document numbers its own log");
        }
    }
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(store.list_docs().unwrap(), sorted);
    for (name, client) in names.iter().zip(&clients) {
        assert_same(&load(&mut store, name), client);
    }

    // Deleting one forgets it, numbering included, and leaves the others alone.
    assert!(store.delete("a").unwrap());
    assert!(!store.delete("a").unwrap());
    assert!(store.load("a").unwrap().is_none());
    assert_eq!(store.log_len("a").unwrap(), LogLen::default());
    assert!(!store.list_docs().unwrap().contains(&"a".to_owned()));
    let mut fresh = Doc::new(ReplicaId::from_u128(99));
    assert_eq!(store.append("a", &edit(&mut fresh, "again")).unwrap(), 1);
    assert_same(&load(&mut store, "a"), &fresh);
    drop(store);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    for (name, client) in names.iter().zip(&clients).skip(2) {
        assert_same(&load(&mut store, name), client);
    }
}

#[test]
fn compaction_keeps_the_document_and_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut client = Doc::new(ReplicaId::from_u128(1));
    let mut bytes = 0;
    for i in 0..30 {
        let update = edit(&mut client, &format!("{i},"));
        bytes += update.len() as u64;
        store.append("doc", &update).unwrap();
    }
    assert_eq!(
        store.log_len("doc").unwrap(),
        LogLen {
            entries: 30,
            bytes,
            last_seq: 30
        }
    );
    let before = load(&mut store, "doc");
    assert_same(&before, &client);

    store.compact("doc", &before.encode(), 30).unwrap();
    assert_eq!(
        store.log_len("doc").unwrap(),
        LogLen {
            entries: 0,
            bytes: 0,
            last_seq: 30
        }
    );
    let stored = store.load("doc").unwrap().unwrap();
    assert_eq!(stored.snapshot_up_to, 30);
    assert!(stored.updates.is_empty());
    assert_eq!(stored.log_bytes, 0);
    assert_same(&load(&mut store, "doc"), &client);

    // Appends after compaction continue the numbering and keep their order.
    for i in 0..5 {
        let seq = store
            .append("doc", &edit(&mut client, &format!("after{i},")))
            .unwrap();
        assert_eq!(seq, 31 + i);
    }
    drop(store);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let stored = store.load("doc").unwrap().unwrap();
    assert_eq!(
        stored.updates.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![31, 32, 33, 34, 35]
    );
    assert_eq!(stored.last_seq(), 35);
    let loaded = load(&mut store, "doc");
    assert_same(&loaded, &client);
    assert!(
        loaded
            .text("body")
            .to_string()
            .ends_with("29,after0,after1,after2,after3,after4,")
    );

    // Compacting part of the log leaves the rest, and a second compaction replaces the
    // first snapshot.
    let mut partial = Doc::decode(&stored.snapshot.unwrap(), ROOM).unwrap();
    for (_, u) in &stored.updates[..2] {
        partial.apply_update(u).unwrap();
    }
    store.compact("doc", &partial.encode(), 32).unwrap();
    assert_eq!(store.log_len("doc").unwrap().entries, 3);
    assert_same(&load(&mut store, "doc"), &client);
}

#[test]
fn compaction_refuses_a_seq_it_cannot_cover() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut client = Doc::new(ReplicaId::from_u128(1));
    for i in 0..4 {
        store
            .append("doc", &edit(&mut client, &i.to_string()))
            .unwrap();
    }
    let err = store.compact("doc", &client.encode(), 5).unwrap_err();
    assert!(
        matches!(&err, StorageError::BadCompaction { doc, up_to: 5, last: 4, snapshot_up_to: 0 } if doc == "doc"),
        "{err}"
    );
    store.compact("doc", &client.encode(), 3).unwrap();
    let err = store.compact("doc", &client.encode(), 2).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::BadCompaction {
                up_to: 2,
                snapshot_up_to: 3,
                ..
            }
        ),
        "{err}"
    );
    // A document never written cannot be compacted either.
    assert!(matches!(
        store.compact("none", &client.encode(), 1),
        Err(StorageError::BadCompaction { .. })
    ));
    assert!(store.load("none").unwrap().is_none());
    // Nothing changed.
    assert_eq!(store.log_len("doc").unwrap().entries, 1);
    assert_same(&load(&mut store, "doc"), &client);
}

#[test]
fn a_batch_is_numbered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut client = Doc::new(ReplicaId::from_u128(1));
    assert_eq!(store.append_batch("doc", &[]).unwrap(), 1..1);
    assert!(store.load("doc").unwrap().is_none());
    let updates: Vec<Vec<u8>> = (0..7).map(|i| edit(&mut client, &format!("{i}"))).collect();
    let refs: Vec<&[u8]> = updates.iter().map(Vec::as_slice).collect();
    assert_eq!(store.append_batch("doc", &refs[..3]).unwrap(), 1..4);
    assert_eq!(store.append("doc", refs[3]).unwrap(), 4);
    assert_eq!(store.append_batch("doc", &refs[4..]).unwrap(), 5..8);
    drop(store);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let stored = store.load("doc").unwrap().unwrap();
    let expected: Vec<(u64, Vec<u8>)> = (1..).zip(updates).collect();
    assert_eq!(stored.updates, expected);
    assert_eq!(load(&mut store, "doc").text("body").to_string(), "0123456");
}

#[test]
fn an_append_survives_a_store_that_is_never_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut client = Doc::new(ReplicaId::from_u128(1));
    let mut store = SqliteStore::open(dir.path()).unwrap();
    store.append("doc", &edit(&mut client, "kept")).unwrap();
    // No close, no checkpoint: the update lives only in the WAL.
    std::mem::forget(store);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_same(&load(&mut store, "doc"), &client);
}

/// Overwrites a stored blob behind the store's back.
fn vandalize(path: &Path, sql: &str, doc: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let changed = conn
        .execute(
            sql,
            rusqlite::params![doc, b"\x00garbage, not an update".as_slice()],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[test]
fn a_corrupt_update_fails_only_its_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    for i in 0..3 {
        store.append("a", &edit(&mut a, &i.to_string())).unwrap();
        store.append("b", &edit(&mut b, &i.to_string())).unwrap();
    }
    vandalize(
        store.path(),
        "UPDATE updates SET data = ?2 WHERE doc = ?1 AND seq = 2",
        "b",
    );
    let err = load_doc(&mut store, "b", ROOM).unwrap_err();
    match &err {
        StorageError::Corrupt {
            doc,
            seq: 2,
            part: Part::Update,
            ..
        } if doc == "b" => {}
        other => panic!("expected a corrupt update, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("\"b\"") && message.contains("seq 2"),
        "{message}"
    );
    assert!(std::error::Error::source(&err).is_some());
    // The other document, and the raw bytes, are still there.
    assert_same(&load(&mut store, "a"), &a);
    assert_eq!(store.load("b").unwrap().unwrap().updates.len(), 3);
    store.append("a", &edit(&mut a, "more")).unwrap();
    assert_same(&load(&mut store, "a"), &a);
}

#[test]
fn a_corrupt_snapshot_fails_only_its_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    for i in 0..3 {
        store.append("a", &edit(&mut a, &i.to_string())).unwrap();
        store.append("b", &edit(&mut b, &i.to_string())).unwrap();
    }
    store.compact("a", &a.encode(), 3).unwrap();
    store.compact("b", &b.encode(), 2).unwrap();
    vandalize(
        store.path(),
        "UPDATE snapshots SET data = ?2 WHERE doc = ?1",
        "b",
    );
    drop(store);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert!(matches!(
        load_doc(&mut store, "b", ROOM),
        Err(StorageError::Corrupt { ref doc, seq: 2, part: Part::Snapshot, .. }) if doc == "b"
    ));
    assert_same(&load(&mut store, "a"), &a);
}

#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = SqliteStore::open(dir.path()).unwrap().path().to_owned();
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StorageError::UnsupportedSchema { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
}

#[test]
fn an_unusable_data_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = SqliteStore::open(&file.join("data")).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
}

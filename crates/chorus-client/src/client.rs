//! The client: one document's local replica, kept in sync with a relay by a
//! background task, optionally backed by a local state file.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chorus_doc::{Doc, Event, Origin, ReplicaId, TextUnit, Transaction, VersionVector};
use chorus_sync::{Message, ProtocolError, Session};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::ClientError;
use crate::link::{Backoff, Link, LinkEvent};
use crate::store::FileStore;

/// After the relay reported an error, how long to wait for it to close before
/// reconnecting anyway.
const ERROR_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long [`Client::close`] waits for the close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a [`Client`] connects and where it keeps its state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The relay's base URL, such as `ws://127.0.0.1:8080` (the client adds
    /// `/ws/{doc}` and the token).
    pub url: String,
    /// The document id: 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -`.
    pub doc: String,
    /// An access token, sent as the `token` query parameter.
    pub token: Option<String>,
    /// The local state file (see the crate docs), used by one client at a time; `None`
    /// keeps the replica in memory only, so edits not yet acknowledged are lost when
    /// the process ends.
    pub state_file: Option<PathBuf>,
    /// This replica's id. With a state file, the file's replica (and this must match
    /// it); without, a random one when `None`. A memory-only client must never reuse
    /// an id after a restart: its new edits would take ids the old ones had.
    pub replica: Option<ReplicaId>,
    /// How often lost frames are repaired (see `chorus_sync::Session::tick`).
    pub tick: Duration,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// The unit of the text deltas in [`ClientEvent::Remote`].
    pub text_unit: TextUnit,
}

impl ClientConfig {
    /// A memory-only client of document `doc` on the relay at `url`, with defaults:
    /// no token, a random replica, a tick of 200 ms, backoff from 100 ms to 10 s,
    /// text deltas in chars.
    pub fn new(url: impl Into<String>, doc: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            doc: doc.into(),
            token: None,
            state_file: None,
            replica: None,
            tick: Duration::from_millis(200),
            backoff: Backoff::default(),
            text_unit: TextUnit::Char,
        }
    }
}

/// What happens to a [`Client`], in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected to the relay; the replicas are catching up with each other.
    Connected,
    /// The connection went down (see [`LinkEvent::Disconnected`]). Edits go on
    /// locally; the client reconnects unless the relay refused it for good (a close
    /// code 1003, 1007 or 1008, or an HTTP error such as 401 on connecting).
    Disconnected {
        /// The WebSocket close code, if there was one.
        code: Option<u16>,
        /// Why, for people.
        reason: String,
    },
    /// Changes made by other replicas arrived: what changed, for the editor to apply.
    Remote(Event),
    /// The relay acknowledged that every local edit so far is durably stored ("all
    /// changes saved"): the relay's durable version.
    Saved(VersionVector),
}

/// A local replica of one document, kept in sync with a relay. Clones share it; a
/// background task does the network I/O, and stops when [`close`](Self::close) is
/// called or every clone is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Held by clients only: when the last one goes, the task stops.
    handle: Arc<Handle>,
}

struct Handle {
    cmd: mpsc::UnboundedSender<Cmd>,
}

enum Cmd {
    Close(oneshot::Sender<()>),
    /// The state file failed: stop syncing.
    Stop,
}

struct Shared {
    doc_id: String,
    replica: ReplicaId,
    link: Link,
    state: Mutex<State>,
    /// Bumped whenever the local version or the acknowledged one grows.
    changed: watch::Sender<()>,
    events: mpsc::UnboundedSender<ClientEvent>,
}

struct State {
    doc: Doc,
    /// The sync session of the current connection (none while disconnected, or once
    /// the relay reported an error on it).
    session: Option<Session>,
    /// The number of the current connection (see [`Link::send_on`]).
    connection: u64,
    /// When the current session broke on an error from the relay.
    broken_since: Option<Instant>,
    /// The relay's durable version, from its `Ack`s.
    acked: VersionVector,
    store: Option<FileStore>,
    /// Closed, or stopped after the state file failed.
    closed: bool,
}

impl State {
    fn saved(&self, me: &ReplicaId) -> bool {
        self.acked.get(me) >= self.doc.version().get(me)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("doc", &self.shared.doc_id)
            .field("replica", &self.shared.replica)
            .field("connected", &self.shared.link().is_connected())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the local state file, if any (loading the replica id and the document
    /// from it, so edits not sent before a restart are sent once connected), and
    /// starts syncing in the background. Fails on a bad document id or URL, or a
    /// state file that is corrupt, belongs to another replica or document, or is in
    /// use by another client.
    ///
    /// Must be called within a Tokio runtime.
    pub async fn open(
        config: ClientConfig,
    ) -> Result<(Client, mpsc::UnboundedReceiver<ClientEvent>), ClientError> {
        check_doc_id(&config.doc)?;
        let url = ws_url(&config.url, &config.doc, config.token.as_deref())?;
        let (mut doc, store) = match config.state_file.clone() {
            Some(path) => {
                let id = config.doc.clone();
                let replica = config.replica;
                let (store, doc) =
                    tokio::task::spawn_blocking(move || FileStore::open(&path, &id, replica))
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                (doc, Some(store))
            }
            None => (
                Doc::new(config.replica.unwrap_or_else(ReplicaId::random)),
                None,
            ),
        };
        let (events, rx) = mpsc::unbounded_channel();
        let remote = events.clone();
        doc.observe(config.text_unit, move |_, e| {
            // Nobody listening (a load test, a headless backend): skip the copy.
            if matches!(e.origin, Origin::Remote(_)) && !remote.is_closed() {
                let _ = remote.send(ClientEvent::Remote(e.clone()));
            }
        });
        let (link, link_events) = Link::spawn(url.clone(), config.backoff);
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            doc_id: config.doc,
            replica: doc.replica_id(),
            link,
            state: Mutex::new(State {
                doc,
                session: None,
                connection: 0,
                broken_since: None,
                acked: VersionVector::new(),
                store,
                closed: false,
            }),
            changed: watch::Sender::new(()),
            events,
        });
        let tick = config.tick.max(Duration::from_millis(1));
        tokio::spawn(run(shared.clone(), link_events, cmd_rx, tick));
        let client = Client {
            shared,
            handle: Arc::new(Handle { cmd }),
        };
        Ok((client, rx))
    }

    /// A local change: runs `f` in a transaction, commits it, appends it to the state
    /// file (returning once it is on disk) and sends it. Returns what `f` returned.
    ///
    /// With a state file this waits for the disk (an `fsync`), as a save does.
    /// Edits work offline too; they are sent when the connection is back. On
    /// [`ClientError::Io`] the edit is in the document but not on disk, and the client
    /// stops syncing (see there).
    pub fn edit<R>(&self, f: impl FnOnce(&mut Transaction<'_>) -> R) -> Result<R, ClientError> {
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        if st.closed {
            return Err(ClientError::Closed);
        }
        let before = st.doc.version().clone();
        let mut tx = st.doc.transact();
        let r = f(&mut tx);
        if tx.commit().is_none() {
            return Ok(r);
        }
        if let Some(store) = &mut st.store {
            let update = st.doc.encode_since(&before);
            if let Err(e) = store.append(&update, true) {
                tracing::error!(error = %e, "cannot write the state file; the client stops syncing");
                st.closed = true;
                st.session = None;
                let _ = self.handle.cmd.send(Cmd::Stop);
                return Err(e);
            }
            compact_if_due(store, &st.doc);
        }
        if let Some(s) = &mut st.session {
            if let Some(frame) = s.local_change(&st.doc) {
                self.shared.link().send_on(st.connection, frame);
            }
        }
        drop(guard);
        self.shared.changed.send_replace(());
        Ok(r)
    }

    /// Reads the document.
    pub fn read<R>(&self, f: impl FnOnce(&Doc) -> R) -> R {
        f(&self.shared.lock().doc)
    }

    /// This replica's id.
    pub fn replica(&self) -> ReplicaId {
        self.shared.replica
    }

    /// The document id.
    pub fn doc_id(&self) -> &str {
        &self.shared.doc_id
    }

    /// The operations this replica has.
    pub fn version(&self) -> VersionVector {
        self.shared.lock().doc.version().clone()
    }

    /// The relay's durable version as last acknowledged.
    pub fn acked(&self) -> VersionVector {
        self.shared.lock().acked.clone()
    }

    /// Whether the relay acknowledged every local edit as durably stored ("all changes
    /// saved"). Other replicas' edits do not count: they are theirs to save.
    pub fn is_saved(&self) -> bool {
        self.shared.lock().saved(&self.shared.replica)
    }

    /// Waits until [`is_saved`](Self::is_saved); `false` if `timeout` passed first.
    pub async fn wait_saved(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.is_saved()).await
    }

    /// Waits until the relay acknowledged everything in `version` as durable (say,
    /// the version right after an edit); `false` if `timeout` passed first.
    pub async fn wait_acked(&self, version: &VersionVector, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.shared.lock().acked.dominates(version))
            .await
    }

    /// Waits until `done()`, checking whenever the version or the acknowledged one
    /// changes.
    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut changed = self.shared.changed.subscribe();
        loop {
            if done() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return done(),
            }
        }
    }

    /// Whether a connection to the relay is up.
    pub fn is_connected(&self) -> bool {
        self.shared.link().is_connected()
    }

    /// Flushes the state file, closes the connection with 1000 and stops the task.
    /// Other clones can still read; edits return [`ClientError::Closed`].
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.handle.cmd.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in an `edit` closure rolls its transaction back while unwinding, so
        // the state is consistent even then.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn link(&self) -> &Link {
        &self.link
    }

    fn emit(&self, e: ClientEvent) {
        let _ = self.events.send(e);
    }

    fn on_link_event(&self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => {
                let mut st = self.lock();
                if st.closed {
                    return;
                }
                st.connection += 1;
                // A fresh session per connection: the relay knows nothing of the last
                // one, and the Hellos resync by version vector.
                let mut session = Session::new(self.doc_id.clone());
                let hello = session.open(&st.doc);
                self.link().send_on(st.connection, hello);
                st.session = Some(session);
                st.broken_since = None;
                drop(st);
                self.emit(ClientEvent::Connected);
            }
            LinkEvent::Frame(frame) => self.on_frame(&frame),
            LinkEvent::Disconnected { code, reason } => {
                let mut st = self.lock();
                st.session = None;
                st.broken_since = None;
                drop(st);
                self.emit(ClientEvent::Disconnected { code, reason });
            }
        }
    }

    fn on_frame(&self, frame: &[u8]) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(session) = &mut st.session else {
            return;
        };
        let before = st.doc.version().clone();
        let received = match session.receive(&mut st.doc, frame) {
            Ok(r) => r,
            Err(e) => {
                st.session = None;
                if let ProtocolError::Remote { code, message } = &e {
                    // The relay closes the connection after its error; its close code
                    // says whether to come back.
                    tracing::warn!(doc = %self.doc_id, code, %message, "the relay reported an error");
                    st.broken_since = Some(Instant::now());
                } else {
                    tracing::warn!(doc = %self.doc_id, error = %e, "the relay broke the protocol; reconnecting");
                    self.link()
                        .send_on(st.connection, Message::error(&e).encode());
                    self.link().reconnect(1002, e.to_string());
                }
                return;
            }
        };
        for reply in received.reply {
            self.link().send_on(st.connection, reply);
        }
        if received.applied > 0 {
            if let Some(store) = &mut st.store {
                // Not synced: losing it costs only a download, and the next local
                // edit's sync covers it (one file, written in order).
                let update = st.doc.encode_since(&before);
                if let Err(e) = store.append(&update, false) {
                    tracing::error!(error = %e, "cannot write the state file; the client stops syncing");
                    st.closed = true;
                    st.session = None;
                    self.link().close();
                    return;
                }
                compact_if_due(store, &st.doc);
            }
        }
        let mut saved = None;
        let mut acked_more = false;
        if let Some(acked) = received.acked {
            acked_more = !st.acked.dominates(&acked);
            let was = st.acked.get(&self.replica);
            st.acked.merge(&acked);
            if st.acked.get(&self.replica) > was && st.saved(&self.replica) {
                saved = Some(st.acked.clone());
            }
        }
        drop(guard);
        if received.applied > 0 || acked_more {
            self.changed.send_replace(());
        }
        if let Some(v) = saved {
            self.emit(ClientEvent::Saved(v));
        }
    }

    fn on_tick(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        match &mut st.session {
            Some(s) => {
                if let Some(f) = s.tick(&st.doc) {
                    self.link().send_on(st.connection, f);
                }
            }
            None => {
                if st
                    .broken_since
                    .is_some_and(|t| t.elapsed() >= ERROR_CLOSE_GRACE)
                {
                    st.broken_since = None;
                    self.link()
                        .reconnect(1002, "the relay reported an error and did not close");
                }
            }
        }
    }

    /// Stops syncing: flushes the file and closes the connection.
    async fn shut_down(&self, link_events: &mut mpsc::UnboundedReceiver<LinkEvent>) {
        {
            let mut st = self.lock();
            st.closed = true;
            st.session = None;
            // Flushed and unlocked, so the file can be opened again at once.
            if let Some(mut store) = st.store.take() {
                if let Err(e) = store.sync() {
                    tracing::error!(error = %e, "cannot flush the state file");
                }
            }
        }
        self.link().close();
        let deadline = Instant::now() + CLOSE_WAIT;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, link_events.recv()).await {
            if let LinkEvent::Disconnected { code, reason } = e {
                self.emit(ClientEvent::Disconnected { code, reason });
            }
        }
    }
}

fn compact_if_due(store: &mut FileStore, doc: &Doc) {
    if store.wants_compaction() {
        if let Err(e) = store.compact(doc) {
            // The old file is still whole and still appended to.
            tracing::warn!(path = %store.path().display(), error = %e, "cannot compact the state file");
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    mut link_events: mpsc::UnboundedReceiver<LinkEvent>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    tick: Duration,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut link_open = true;
    loop {
        tokio::select! {
            e = link_events.recv(), if link_open => match e {
                Some(e) => shared.on_link_event(e),
                // Refused for good (the Disconnected saying why came before).
                None => link_open = false,
            },
            _ = ticker.tick() => shared.on_tick(),
            c = cmds.recv() => {
                shared.shut_down(&mut link_events).await;
                if let Some(Cmd::Close(done)) = c {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// Checks a document id: 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -`.
pub fn check_doc_id(id: &str) -> Result<(), ClientError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidDocId(id.to_owned()))
    }
}

/// The WebSocket URL of document `doc` on the relay at `base`.
pub(crate) fn ws_url(base: &str, doc: &str, token: Option<&str>) -> Result<String, ClientError> {
    let rest = base
        .strip_prefix("ws://")
        .or_else(|| base.strip_prefix("wss://"));
    let ok =
        rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(['?', '#', ' ']));
    if !ok {
        return Err(ClientError::InvalidUrl(base.to_owned()));
    }
    let mut url = format!("{}/ws/{doc}", base.trim_end_matches('/'));
    if let Some(t) = token {
        url.push_str("?token=");
        for b in t.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_are_checked() {
        for ok in ["a", "notes-1", "A.b_c~d-9", &"x".repeat(128)] {
            assert!(check_doc_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", "a?b", "%41", &"x".repeat(129)] {
            assert!(
                matches!(check_doc_id(bad), Err(ClientError::InvalidDocId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_carry_the_doc_and_an_encoded_token() {
        assert_eq!(
            ws_url("ws://127.0.0.1:8080", "d", None).unwrap(),
            "ws://127.0.0.1:8080/ws/d"
        );
        assert_eq!(
            ws_url("wss://relay.example/chorus/", "d", Some("a.b-c_d+e/f=")).unwrap(),
            "wss://relay.example/chorus/ws/d?token=a.b-c_d%2Be%2Ff%3D"
        );
        for bad in [
            "http://x",
            "ws://",
            "127.0.0.1:8080",
            "ws://x/?a=1",
            "ws:///x",
        ] {
            assert!(
                matches!(ws_url(bad, "d", None), Err(ClientError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn edits_work_offline_and_are_kept_in_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        // Nothing listens there: the client stays offline.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut config = ClientConfig::new(&url, "offline");
        config.state_file = Some(path.clone());
        let (client, _events) = Client::open(config.clone()).await.unwrap();
        let replica = client.replica();
        client
            .edit(|tx| tx.text("t").insert(0, "draft"))
            .unwrap()
            .unwrap();
        assert!(!client.is_saved());
        assert!(!client.wait_saved(Duration::from_millis(50)).await);
        let other = client.clone();
        client.close().await;
        assert!(matches!(other.edit(|_| ()), Err(ClientError::Closed)));

        let (client, _events) = Client::open(config.clone()).await.unwrap();
        assert_eq!(client.replica(), replica);
        assert_eq!(client.read(|d| d.text("t").to_string()), "draft");
        client.close().await;

        config.replica = Some(ReplicaId::from_u128(5));
        assert!(matches!(
            Client::open(config.clone()).await,
            Err(ClientError::ReplicaMismatch { .. })
        ));
        config.doc = "no/slash".into();
        assert!(matches!(
            Client::open(config).await,
            Err(ClientError::InvalidDocId(_))
        ));
    }
}

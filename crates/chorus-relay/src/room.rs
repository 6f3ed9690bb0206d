//! A room: the task that owns one open document — its replica, its connections, its
//! links to peer relays — and stores every update before the `Ack` that covers it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_client::{Backoff, Link, LinkEvent};
use chorus_doc::{Doc, ReplicaId, VersionVector};
use chorus_sync::{Awareness, LinkId, Message, Node, Outbox};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{self, Claims, Right};
use crate::refusal::{Refusal, close_reason};
use crate::server::Shared;
use crate::storage::doc_from_stored;

/// Closes one connection: its writer sends the `Error` frame (if any) and the close
/// at once, ahead of whatever is still queued (for a slow connection that queue is the
/// problem).
#[derive(Clone, Debug)]
pub(crate) struct Closer(Arc<watch::Sender<Option<Close>>>);

/// A close code, its reason, and the `Error` frame that goes before it.
#[derive(Clone, Debug)]
pub(crate) struct Close {
    pub code: u16,
    pub reason: String,
    pub error: Option<Vec<u8>>,
}

impl Closer {
    pub fn new() -> (Closer, watch::Receiver<Option<Close>>) {
        let (tx, rx) = watch::channel(None);
        (Closer(Arc::new(tx)), rx)
    }

    /// Closes with `code` (the first close asked for wins).
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        self.close_with(Close {
            code,
            reason: close_reason(&reason.into()),
            error: None,
        });
    }

    /// Closes for `refusal`: its `Error` frame, then its close code.
    pub fn refuse(&self, refusal: &Refusal) {
        tracing::info!(code = refusal.code(), reason = %refusal, "refusing a connection");
        self.close_with(Close {
            code: refusal.close_code(),
            reason: close_reason(&refusal.to_string()),
            error: Some(refusal.frame()),
        });
    }

    fn close_with(&self, close: Close) {
        self.0.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(close);
            true
        });
    }
}

/// What a room is told.
#[derive(Debug)]
pub(crate) enum RoomMsg {
    /// A connection joins; `reply` is answered once it is part of the room (dropped
    /// if the room is closing: the connection then asks for the room again).
    Join {
        conn: LinkId,
        out: mpsc::Sender<Vec<u8>>,
        closer: Closer,
        right: Right,
        reply: oneshot::Sender<()>,
    },
    Frame {
        conn: LinkId,
        bytes: Vec<u8>,
    },
    Leave {
        conn: LinkId,
    },
    /// Something happened on a link to a peer relay.
    Peer {
        link: LinkId,
        event: LinkEvent,
    },
    /// A link to a peer relay ended for good (the peer refused it).
    PeerGone {
        link: LinkId,
    },
}

/// Messages a room takes in one batch before storing and answering.
const BATCH: usize = 256;
/// Link ids from here on are links to peer relays (connections count up from 1).
const PEER_LINKS: LinkId = 1 << 63;

struct Conn {
    out: mpsc::Sender<Vec<u8>>,
    closer: Closer,
    right: Right,
    /// The replica its `Hello` announced (for clients, bound to this connection).
    replica: Option<ReplicaId>,
    joined: Instant,
}

struct Room {
    doc_id: String,
    shared: Arc<Shared>,
    /// Our own queue, to hand to the tasks that forward peer link events.
    me: mpsc::WeakSender<RoomMsg>,
    node: Node,
    conns: HashMap<LinkId, Conn>,
    /// Replica id → the client connection it is bound to.
    bound: HashMap<ReplicaId, LinkId>,
    /// Open links to peer relays, with the number of their current connection.
    peers: HashMap<LinkId, (Link, u64)>,
    /// The id of the next link to a peer relay (never reused, so events of a closed
    /// link cannot be taken for a new one's).
    next_peer: LinkId,
    awareness: Awareness,
    started: Instant,
    /// What is stored: the version, the bytes, the log entries since the snapshot and
    /// the last seq.
    persisted: VersionVector,
    stored_bytes: u64,
    log_entries: u64,
    last_seq: u64,
    /// Frames to send once what was applied is stored.
    out: Outbox,
    /// When operations last arrived or a client was here.
    last_activity: Instant,
    /// Storage failed: the room closes.
    failed: bool,
}

pub(crate) async fn run_room(
    doc_id: String,
    mut rx: mpsc::Receiver<RoomMsg>,
    me: mpsc::WeakSender<RoomMsg>,
    shared: Arc<Shared>,
) {
    let _alive = shared.alive.clone();
    let metrics = shared.metrics.clone();
    metrics.rooms.inc();
    match open(&doc_id, &shared, me).await {
        Ok(mut room) => {
            room.run(&mut rx).await;
            tracing::debug!("room closed");
        }
        Err(why) => {
            tracing::error!(error = %why, "cannot open the document");
            let reason = close_reason(&format!("document cannot be opened: {why}"));
            close_queue(&shared, &doc_id, &mut rx, |msg| {
                if let RoomMsg::Join { closer, reply, .. } = msg {
                    closer.close(1011, reason.clone());
                    let _ = reply.send(());
                }
            });
        }
    }
    metrics.rooms.dec();
}

async fn open(
    doc_id: &str,
    shared: &Arc<Shared>,
    me: mpsc::WeakSender<RoomMsg>,
) -> Result<Room, String> {
    // The room never authors operations, so its replica id only has to be its own.
    let replica = ReplicaId::random();
    let stored = shared
        .writer
        .load(doc_id)
        .await
        .map_err(|e| e.to_string())?;
    let (doc, stored_bytes, log_entries, last_seq) = match stored {
        None => (Doc::new(replica), 0, 0, 0),
        Some(stored) => {
            let id = doc_id.to_owned();
            let bytes = stored.snapshot.as_ref().map_or(0, |s| s.len() as u64) + stored.log_bytes;
            let entries = stored.updates.len() as u64;
            let last = stored.last_seq();
            let doc = tokio::task::spawn_blocking(move || doc_from_stored(&id, &stored, replica))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            (doc, bytes, entries, last)
        }
    };
    let mut doc = doc;
    let config = &shared.config;
    doc.set_pending_limit(config.limits.max_pending_ops);
    let persisted = doc.version().clone();
    Ok(Room {
        doc_id: doc_id.to_owned(),
        shared: shared.clone(),
        me,
        node: Node::new(doc_id, doc),
        conns: HashMap::new(),
        bound: HashMap::new(),
        peers: HashMap::new(),
        next_peer: PEER_LINKS,
        awareness: Awareness::new(replica, config.awareness_timeout.as_millis() as u64),
        started: Instant::now(),
        persisted,
        stored_bytes,
        log_entries,
        last_seq,
        out: Outbox::new(),
        last_activity: Instant::now(),
        failed: false,
    })
}

/// Leaves the room map and closes the queue; what was queued is handed to `each`.
fn close_queue(
    shared: &Shared,
    doc_id: &str,
    rx: &mut mpsc::Receiver<RoomMsg>,
    mut each: impl FnMut(RoomMsg),
) {
    {
        let mut rooms = shared.rooms.lock().expect("rooms lock");
        rooms.remove(doc_id);
        rx.close();
    }
    while let Ok(msg) = rx.try_recv() {
        each(msg);
    }
}

impl Room {
    async fn run(&mut self, rx: &mut mpsc::Receiver<RoomMsg>) {
        let mut shutdown = self.shared.shutdown.clone();
        let mut tick = tokio::time::interval(self.shared.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !self.shared.config.peers.is_empty() {
            self.open_peers();
        }
        loop {
            tokio::select! {
                () = crate::server::stopped(&mut shutdown) => {
                    self.shut_down(rx).await;
                    return;
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    self.handle(msg);
                    for _ in 1..BATCH {
                        match rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                    self.flush().await;
                }
                _ = tick.tick() => {
                    self.tick();
                    self.flush().await;
                    if self.evictable() && self.evict(rx).await {
                        return;
                    }
                }
            }
            if self.failed {
                close_queue(&self.shared, &self.doc_id, rx, |_| {});
                return;
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn handle(&mut self, msg: RoomMsg) {
        match msg {
            RoomMsg::Join {
                conn,
                out,
                closer,
                right,
                reply,
            } => {
                self.node.accept(conn);
                self.conns.insert(
                    conn,
                    Conn {
                        out,
                        closer,
                        right,
                        replica: None,
                        joined: Instant::now(),
                    },
                );
                if right < Right::Relay {
                    self.last_activity = Instant::now();
                    if self.peers.is_empty() && !self.shared.config.peers.is_empty() {
                        self.open_peers();
                    }
                }
                let _ = reply.send(());
            }
            RoomMsg::Leave { conn } => self.drop_conn(conn),
            RoomMsg::Frame { conn, bytes } => {
                if let Some(c) = self.conns.get(&conn) {
                    let right = c.right;
                    if let Err(refusal) = self.on_frame(conn, right, &bytes) {
                        self.refuse(conn, &refusal);
                    }
                }
            }
            RoomMsg::PeerGone { link } => {
                // Refused (a token the peer does not accept, say): retrying would only
                // repeat it, and waiting for it would keep the room open for ever.
                if self.peers.remove(&link).is_some() {
                    tracing::error!(
                        link,
                        "a peer relay refused our link; not retrying for this room"
                    );
                    self.node.disconnect(link);
                }
            }
            RoomMsg::Peer { link, event } => {
                if !self.peers.contains_key(&link) {
                    return;
                }
                match event {
                    LinkEvent::Connected => {
                        if let Some((_, n)) = self.peers.get_mut(&link) {
                            *n += 1;
                        }
                        let out = self.node.connect(link);
                        self.out.extend(out);
                    }
                    LinkEvent::Frame(bytes) => {
                        if self.node.link(link).is_some() {
                            if let Err(refusal) = self.on_frame(link, Right::Relay, &bytes) {
                                tracing::warn!(link, error = %refusal, "a peer relay broke the protocol");
                                if let Some((l, n)) = self.peers.get(&link) {
                                    l.send_on(*n, refusal.frame());
                                    l.reconnect(
                                        refusal.close_code(),
                                        close_reason(&refusal.to_string()),
                                    );
                                }
                                self.node.disconnect(link);
                            }
                        }
                    }
                    LinkEvent::Disconnected { code, reason } => {
                        tracing::debug!(link, ?code, %reason, "peer link down");
                        self.node.disconnect(link);
                    }
                }
            }
        }
    }

    /// Checks a frame against the connection's rights and the limits, then applies it.
    fn on_frame(&mut self, link: LinkId, right: Right, bytes: &[u8]) -> Result<(), Refusal> {
        let msg = Message::decode(bytes)?;
        let bound = self.conns.get(&link).and_then(|c| c.replica);
        match &msg {
            Message::Hello(h) if right < Right::Relay => {
                if let Some(&other) = self.bound.get(&h.replica) {
                    if other != link {
                        return Err(Refusal::ReplicaInUse(h.replica));
                    }
                }
            }
            Message::Delta { update, .. } => {
                let limit = self.shared.config.limits.max_doc_bytes;
                if self.stored_bytes.saturating_add(update.len() as u64) > limit {
                    return Err(Refusal::DocTooBig(limit));
                }
                if right < Right::Relay {
                    if bound.is_none() {
                        return Err(Refusal::Protocol(chorus_sync::ProtocolError::Unexpected(
                            "a Delta before the Hello",
                        )));
                    }
                    let extent =
                        Doc::update_extent(update).map_err(|e| Refusal::Protocol(e.into()))?;
                    let version = self.node.doc().version();
                    for (replica, end) in extent.iter() {
                        if end > version.get(&replica) {
                            if right < Right::Write {
                                return Err(Refusal::ReadOnly);
                            }
                            if bound != Some(replica) {
                                return Err(Refusal::NotYourReplica(replica));
                            }
                        }
                    }
                }
            }
            Message::Awareness(entries) if right < Right::Relay => {
                if let Some(e) = entries.iter().find(|e| Some(e.replica) != bound) {
                    return Err(Refusal::NotYourReplica(e.replica));
                }
            }
            _ => {}
        }
        let was_live = self.node.link(link).is_some_and(|s| s.is_live());
        let started = Instant::now();
        let hello = match &msg {
            Message::Hello(h) => Some((h.replica, right < Right::Relay)),
            _ => None,
        };
        let (out, received) = self.node.receive_message(link, msg, bytes.len())?;
        if received.applied > 0 {
            self.shared
                .metrics
                .apply_seconds
                .observe(started.elapsed().as_secs_f64());
            self.last_activity = Instant::now();
            if self.peers.is_empty() && !self.shared.config.peers.is_empty() {
                self.open_peers();
            }
        }
        self.out.extend(out);
        if let Some((replica, bind)) = hello {
            // What is stored already: a client that has it all is "saved" at once.
            let persisted = self.persisted.clone();
            let acks = self.node.ack_all(&persisted);
            self.out.extend(acks);
            if bind {
                if let Some(c) = self.conns.get_mut(&link) {
                    c.replica = Some(replica);
                }
                self.bound.insert(replica, link);
            }
        }
        if !was_live && self.node.link(link).is_some_and(|s| s.is_live()) {
            // A new peer learns everyone's presence.
            if let Some(all) = self.awareness.encode_all() {
                self.out
                    .extend(self.node.send_to(link, &all).map(|f| (link, f)));
            }
        }
        if let Some(entries) = received.awareness {
            let now = self.now_ms();
            let change = self.awareness.apply(&entries, now);
            if let Some(m) = self.awareness.encode(change.replicas()) {
                let out = self.node.broadcast(&m, Some(link));
                self.out.extend(out);
            }
        }
        Ok(())
    }

    /// Closes `conn` with an `Error` frame and the close code of `refusal`.
    fn refuse(&mut self, conn: LinkId, refusal: &Refusal) {
        if let Some(c) = self.conns.get(&conn) {
            c.closer.refuse(refusal);
        }
        self.drop_conn(conn);
    }

    /// Forgets a connection (closed or refused): its link, its replica binding, its
    /// presence.
    fn drop_conn(&mut self, conn: LinkId) {
        self.node.disconnect(conn);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if c.right < Right::Relay {
            self.last_activity = Instant::now();
        }
        if let Some(replica) = c.replica {
            if self.bound.get(&replica) == Some(&conn) {
                self.bound.remove(&replica);
                let now = self.now_ms();
                let change = self.awareness.remove_replica(replica, now);
                if !change.is_empty() {
                    let m = self.awareness.removal_message(replica);
                    let out = self.node.broadcast(&m, None);
                    self.out.extend(out);
                }
            }
        }
    }

    /// Stores what was applied since the last flush, acknowledges it, then sends
    /// everything queued.
    async fn flush(&mut self) {
        if self.node.doc().version() != &self.persisted {
            let update = self.node.doc().encode_since(&self.persisted);
            let version = self.node.doc().version().clone();
            let len = update.len() as u64;
            match self.shared.writer.append(&self.doc_id, update).await {
                Ok(seq) => {
                    self.persisted = version.clone();
                    self.stored_bytes += len;
                    self.log_entries += 1;
                    self.last_seq = seq;
                    let acks = self.node.ack_all(&version);
                    self.out.extend(acks);
                    if self.log_entries >= self.shared.config.compact_after.max(1) {
                        self.compact().await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "storage failed; closing the room");
                    self.out.clear();
                    for c in self.conns.values() {
                        c.closer.close(1011, "storage failed");
                    }
                    self.failed = true;
                    return;
                }
            }
        }
        self.send();
    }

    async fn compact(&mut self) {
        let state = self.node.doc().encode();
        let len = state.len() as u64;
        match self
            .shared
            .writer
            .compact(&self.doc_id, state, self.last_seq)
            .await
        {
            Ok(()) => {
                self.stored_bytes = len;
                self.log_entries = 0;
            }
            // The log is intact: compaction is tried again later.
            Err(e) => tracing::warn!(error = %e, "compaction failed"),
        }
    }

    /// Sends the queued frames; a connection whose queue is full is closed (1013),
    /// never skipped.
    fn send(&mut self) {
        let out = std::mem::take(&mut self.out);
        let mut slow = Vec::new();
        for (link, frame) in out {
            if let Some(c) = self.conns.get(&link) {
                if c.out.try_send(frame).is_err() {
                    c.closer.close(1013, "too slow: outgoing queue full");
                    slow.push(link);
                }
            } else if let Some((l, n)) = self.peers.get(&link) {
                l.send_on(*n, frame);
            }
        }
        for link in slow {
            tracing::info!(conn = link, "closing a slow connection");
            self.drop_conn(link);
        }
        // Closing a slow connection may have queued presence removals.
        if !self.out.is_empty() {
            self.send();
        }
    }

    fn tick(&mut self) {
        let out = self.node.tick();
        self.out.extend(out);
        let deadline = self.shared.config.limits.handshake;
        let late: Vec<LinkId> = self
            .conns
            .iter()
            .filter(|(link, c)| {
                c.joined.elapsed() > deadline
                    && self.node.link(**link).is_some_and(|s| s.peer().is_none())
            })
            .map(|(&l, _)| l)
            .collect();
        for link in late {
            self.refuse(link, &Refusal::NoHello(deadline.as_millis()));
        }
        let now = self.now_ms();
        let _ = self.awareness.tick(now);
        // Links to peer relays stay open while the room has clients or news, and
        // until every peer has stored what we have.
        if !self.peers.is_empty() && !self.wants_peers() && self.peers_synced() {
            self.close_peers();
        }
    }

    fn has_clients(&self) -> bool {
        self.conns.values().any(|c| c.right < Right::Relay)
    }

    fn wants_peers(&self) -> bool {
        self.has_clients() || self.last_activity.elapsed() < self.shared.config.room_idle
    }

    fn peers_synced(&self) -> bool {
        let version = self.node.doc().version();
        self.peers.keys().all(|&l| {
            self.node
                .link(l)
                .is_some_and(|s| s.peer_acked().dominates(version))
        })
    }

    fn open_peers(&mut self) {
        let Some(me) = self.me.upgrade() else { return };
        let config = &self.shared.config;
        for base in &config.peers {
            let id = self.next_peer;
            self.next_peer += 1;
            let url = peer_url(base, &self.doc_id, config.auth_secret.as_deref());
            let (link, mut events) = Link::spawn(
                url,
                Backoff {
                    min: Duration::from_millis(100),
                    max: Duration::from_secs(5),
                },
            );
            let me = me.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if me.send(RoomMsg::Peer { link: id, event }).await.is_err() {
                        return;
                    }
                }
                let _ = me.send(RoomMsg::PeerGone { link: id }).await;
            });
            self.peers.insert(id, (link, 0));
        }
        tracing::debug!(peers = self.peers.len(), "peer links opened");
    }

    fn close_peers(&mut self) {
        for (id, (link, _)) in self.peers.drain() {
            link.close();
            self.node.disconnect(id);
        }
        tracing::debug!("peer links closed");
    }

    fn evictable(&self) -> bool {
        self.conns.is_empty()
            && self.peers.is_empty()
            && self.last_activity.elapsed() >= self.shared.config.room_idle
            && self.node.doc().version() == &self.persisted
    }

    /// Stores a snapshot and closes the room, unless someone arrived meanwhile.
    async fn evict(&mut self, rx: &mut mpsc::Receiver<RoomMsg>) -> bool {
        if self.log_entries > 0 {
            self.compact().await;
        }
        {
            let mut rooms = self.shared.rooms.lock().expect("rooms lock");
            if !rx.is_empty() {
                return false;
            }
            rooms.remove(&self.doc_id);
            rx.close();
        }
        // Whatever slipped in before the close: a connection whose join goes
        // unanswered asks for the room again and gets a new one.
        while rx.try_recv().is_ok() {}
        tracing::debug!("room evicted");
        true
    }

    async fn shut_down(&mut self, rx: &mut mpsc::Receiver<RoomMsg>) {
        self.flush().await;
        self.close_peers();
        for c in self.conns.values() {
            c.closer.close(1001, "the relay is shutting down");
        }
        if self.log_entries > 0 {
            self.compact().await;
        }
        close_queue(&self.shared, &self.doc_id, rx, |_| {});
    }
}

/// The URL of `doc` on a peer relay, with a relay token when tokens are in use.
fn peer_url(base: &str, doc: &str, secret: Option<&[u8]>) -> String {
    let base = base.trim_end_matches('/');
    match secret {
        Some(secret) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let token = auth::mint(
                secret,
                &Claims {
                    doc: Some(doc.to_owned()),
                    prefix: None,
                    right: Right::Relay,
                    exp: now + PEER_TOKEN_TTL.as_secs(),
                },
            );
            format!("{base}/ws/{doc}?token={token}")
        }
        None => format!("{base}/ws/{doc}?role=relay"),
    }
}

/// How long the token of a link to a peer relay is valid (a room reopens its links,
/// with new tokens, whenever it goes quiet and comes back).
const PEER_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

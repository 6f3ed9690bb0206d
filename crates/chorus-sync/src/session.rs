//! A session: one end of one link between two replicas of a document.
//!
//! Sans-IO: the session turns frames received into frames to send, and local changes
//! into frames to send. The caller moves the bytes and passes ticks in.
//!
//! 1. Both ends send `Hello` (protocol, document, replica, version vector).
//! 2. On a `Hello`, an end answers with its own `Hello` (unless it sent one since its
//!    last tick) and a `Delta` with exactly the operations the other lacks, computed
//!    for that peer from its version vector, in causal order.
//! 3. Then local changes stream out as `Delta`s; each carries the sender's version, so
//!    each end knows what the other has, and every operation goes over a link once.
//! 4. A message may be lost: on each [`tick`](Session::tick), an end whose peer may
//!    lack something, or that may lack something itself, sends a `Hello` again, which
//!    repairs the loss. An idle, in-sync link sends nothing, and no message is answered
//!    by more than a bounded number of messages, so a session cannot livelock.

use chorus_doc::{Doc, VersionVector};

use crate::ProtocolError;
use crate::frame::{AwarenessEntry, Hello, Message, PROTOCOL_VERSION};

/// Counters of one session's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Frames sent.
    pub frames_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Operations applied from this link.
    pub ops_applied: u64,
    /// Operations received on this link that were already here (sent twice).
    pub ops_duplicate: u64,
}

/// What receiving a frame produced.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Received {
    /// Frames to send back on this link.
    pub reply: Vec<Vec<u8>>,
    /// Operations newly applied to the document (the node forwards them to its other
    /// links when this is not 0).
    pub applied: u64,
    /// The peer's durable version, when it sent an `Ack`.
    pub acked: Option<VersionVector>,
    /// Presence states the peer sent.
    pub awareness: Option<Vec<AwarenessEntry>>,
}

/// One end of a link.
#[derive(Debug, Clone)]
pub struct Session {
    doc_id: String,
    /// Whether we sent our `Hello`.
    opened: bool,
    /// The peer's `Hello`, once received.
    peer: Option<chorus_doc::ReplicaId>,
    /// What the peer has: what it last reported, plus what we sent it since.
    peer_has: VersionVector,
    /// What the peer last reported having (without our optimistic additions).
    peer_reported: VersionVector,
    /// `peer_has` at the last tick: what was sent before it has had time to arrive.
    peer_has_at_tick: VersionVector,
    /// The peer's durable version (its last `Ack`).
    peer_acked: VersionVector,
    /// Whether we sent a `Hello` since the last tick.
    hello_this_tick: bool,
    /// The last `Ack` we sent.
    acked: VersionVector,
    stats: SessionStats,
}

impl Session {
    /// A session for document `doc_id`, not opened yet.
    pub fn new(doc_id: impl Into<String>) -> Self {
        Session {
            doc_id: doc_id.into(),
            opened: false,
            peer: None,
            peer_has: VersionVector::new(),
            peer_reported: VersionVector::new(),
            peer_has_at_tick: VersionVector::new(),
            peer_acked: VersionVector::new(),
            hello_this_tick: false,
            acked: VersionVector::new(),
            stats: SessionStats::default(),
        }
    }

    /// The document this session syncs.
    pub fn doc_id(&self) -> &str {
        &self.doc_id
    }

    /// The peer's replica, once its `Hello` arrived.
    pub fn peer(&self) -> Option<chorus_doc::ReplicaId> {
        self.peer
    }

    /// Whether both `Hello`s were exchanged.
    pub fn is_live(&self) -> bool {
        self.opened && self.peer.is_some()
    }

    /// What the peer has, as far as this end knows (what it reported and what was sent
    /// to it since).
    pub fn peer_version(&self) -> &VersionVector {
        &self.peer_has
    }

    /// The peer's durable version: what its last `Ack` covered.
    pub fn peer_acked(&self) -> &VersionVector {
        &self.peer_acked
    }

    /// Traffic counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Opens the link: our `Hello`.
    pub fn open(&mut self, doc: &Doc) -> Vec<u8> {
        self.hello(doc)
    }

    fn hello(&mut self, doc: &Doc) -> Vec<u8> {
        self.opened = true;
        self.hello_this_tick = true;
        self.out(Message::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            doc: self.doc_id.clone(),
            replica: doc.replica_id(),
            version: doc.version().clone(),
        }))
    }

    fn out(&mut self, m: Message) -> Vec<u8> {
        let bytes = m.encode();
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        bytes
    }

    /// The `Delta` of what the peer lacks, if anything; counted as sent.
    fn delta(&mut self, doc: &Doc) -> Option<Vec<u8>> {
        if self.peer_has.dominates(doc.version()) {
            return None;
        }
        let update = doc.encode_since(&self.peer_has);
        self.peer_has.merge(doc.version());
        Some(self.out(Message::Delta {
            version: doc.version().clone(),
            update,
        }))
    }

    /// Handles one frame from the peer. On `Err` the caller sends
    /// [`Message::error`] for it and closes the link; the document is unchanged by
    /// the frame that failed.
    pub fn receive(&mut self, doc: &mut Doc, frame: &[u8]) -> Result<Received, ProtocolError> {
        let message = Message::decode(frame)?;
        self.receive_message(doc, message, frame.len())
    }

    /// Like [`receive`](Self::receive), for a frame of `frame_len` bytes the caller
    /// already decoded (a relay looks at a frame before letting it in).
    pub fn receive_message(
        &mut self,
        doc: &mut Doc,
        message: Message,
        frame_len: usize,
    ) -> Result<Received, ProtocolError> {
        self.stats.frames_received += 1;
        self.stats.bytes_received += frame_len as u64;
        let mut r = Received::default();
        match message {
            Message::Hello(h) => {
                if h.protocol != PROTOCOL_VERSION {
                    return Err(ProtocolError::UnsupportedProtocol(h.protocol));
                }
                if h.doc != self.doc_id {
                    return Err(ProtocolError::WrongDocument {
                        ours: self.doc_id.clone(),
                        theirs: h.doc,
                    });
                }
                if self.peer.is_some_and(|p| p != h.replica) {
                    return Err(ProtocolError::Unexpected("a Hello from another replica"));
                }
                self.peer = Some(h.replica);
                // A Hello says what the peer had when it sent it. What we sent before
                // the last tick and it does not report was lost: send it again. What
                // we sent since may still be on its way: do not send it twice.
                self.peer_has = rewind(&self.peer_has, &self.peer_has_at_tick, &h.version);
                self.peer_reported.merge(&h.version);
                // Our Hello in return (at most once per tick): it opens the link, asks
                // for what the peer has and we lack, and confirms what we have.
                if !self.hello_this_tick {
                    let hello = self.hello(doc);
                    r.reply.push(hello);
                }
                if let Some(d) = self.delta(doc) {
                    r.reply.push(d);
                }
            }
            Message::Delta { version, update } => {
                // Before any Hello (either way) a Delta is a protocol error; after
                // ours, the peer's Hello may just have been lost.
                if self.peer.is_none() && !self.opened {
                    return Err(ProtocolError::Unexpected("a Delta before the Hello"));
                }
                let report = doc.apply_update(&update)?;
                r.applied = report.applied;
                self.stats.ops_applied += report.applied;
                self.stats.ops_duplicate += report.duplicate;
                self.peer_has.merge(&version);
                self.peer_reported.merge(&version);
                // Something is missing (a lost message) and the peer may have it: ask
                // for it, once per tick.
                if doc.pending_len() > 0
                    && !doc.version().dominates(&version)
                    && !self.hello_this_tick
                {
                    let hello = self.hello(doc);
                    r.reply.push(hello);
                }
            }
            Message::Ack(version) => {
                self.peer_acked.merge(&version);
                self.peer_reported.merge(&version);
                self.peer_has.merge(&version);
                r.acked = Some(self.peer_acked.clone());
            }
            Message::Awareness(entries) => r.awareness = Some(entries),
            Message::Error { code, message } => {
                return Err(ProtocolError::Remote { code, message });
            }
        }
        Ok(r)
    }

    /// After local changes (or ops that arrived on another link): the `Delta` of what
    /// the peer lacks, if the link is live and the peer lacks anything.
    pub fn local_change(&mut self, doc: &Doc) -> Option<Vec<u8>> {
        if !self.is_live() {
            return None;
        }
        self.delta(doc)
    }

    /// Tells the peer that our document has durably stored `version` (an `Ack`), if
    /// that is news.
    pub fn ack(&mut self, version: &VersionVector) -> Option<Vec<u8>> {
        if !self.is_live() || self.acked.dominates(version) {
            return None;
        }
        self.acked.merge(version);
        let ack = self.acked.clone();
        Some(self.out(Message::Ack(ack)))
    }

    /// Periodic repair: a `Hello` when the peer may lack something (its last report
    /// does not cover our version) or we may lack something (operations wait for
    /// missing dependencies), or when our version changed since our last `Hello`
    /// without the peer confirming it. Nothing on an idle, in-sync link.
    pub fn tick(&mut self, doc: &Doc) -> Option<Vec<u8>> {
        self.hello_this_tick = false;
        self.peer_has_at_tick = self.peer_has.clone();
        if !self.opened {
            return None;
        }
        if self.peer.is_none() {
            // Our Hello may have been lost.
            return Some(self.hello(doc));
        }
        let unconfirmed = !self.peer_reported.dominates(doc.version());
        // Operations wait for dependencies this peer reported having: ask for them.
        // (Dependencies nobody reachable has would otherwise keep the link talking.)
        let peer_can_help = doc.pending_len() > 0 && !doc.version().dominates(&self.peer_reported);
        if unconfirmed || peer_can_help {
            // The peer answers with its Hello (what it has) and a Delta of what we lack.
            return Some(self.hello(doc));
        }
        None
    }

    /// A message to send on this link (such as awareness), counted in the stats.
    pub fn send(&mut self, m: &Message) -> Vec<u8> {
        self.out(m.clone())
    }
}

/// What the peer has after its `Hello` reported `hello`: per replica, if the peer has
/// everything we had sent it by the last tick (`at_tick`), what we sent since is
/// still on its way and counts as had; otherwise the peer lost something and has
/// exactly what it reported.
fn rewind(sent: &VersionVector, at_tick: &VersionVector, hello: &VersionVector) -> VersionVector {
    let mut out = hello.clone();
    for (r, n) in sent.iter() {
        if hello.get(&r) >= at_tick.get(&r) {
            out.observe(r, n);
        }
    }
    out
}

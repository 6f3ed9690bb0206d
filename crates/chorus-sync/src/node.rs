//! A node: one replica of a document with any number of links, forwarding what it
//! learns on one link to the others. Wiring nodes gives any topology — a star around
//! a relay, a ring, a mesh, trees of relays.

use std::collections::BTreeMap;

use chorus_doc::{Doc, Transaction};

use crate::{Message, ProtocolError, Received, Session};

/// Names a link of a node (chosen by the caller).
pub type LinkId = u64;

/// Frames to send: (link, frame bytes).
pub type Outbox = Vec<(LinkId, Vec<u8>)>;

/// A replica with its links.
#[derive(Debug)]
pub struct Node {
    doc_id: String,
    doc: Doc,
    links: BTreeMap<LinkId, Session>,
}

impl Node {
    /// A node holding `doc`, a replica of document `doc_id`.
    pub fn new(doc_id: impl Into<String>, doc: Doc) -> Self {
        Node {
            doc_id: doc_id.into(),
            doc,
            links: BTreeMap::new(),
        }
    }

    /// The document.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The document, to edit or observe. After editing call [`committed`](Self::committed)
    /// so the links get the changes.
    pub fn doc_mut(&mut self) -> &mut Doc {
        &mut self.doc
    }

    /// Starts a transaction; after committing it, call [`committed`](Self::committed).
    pub fn transact(&mut self) -> Transaction<'_> {
        self.doc.transact()
    }

    /// The node's links.
    pub fn links(&self) -> impl Iterator<Item = (LinkId, &Session)> + '_ {
        self.links.iter().map(|(&l, s)| (l, s))
    }

    /// One link's session.
    pub fn link(&self, link: LinkId) -> Option<&Session> {
        self.links.get(&link)
    }

    /// Adds a link and opens it (our `Hello`).
    pub fn connect(&mut self, link: LinkId) -> Outbox {
        let mut s = Session::new(self.doc_id.clone());
        let hello = s.open(&self.doc);
        self.links.insert(link, s);
        vec![(link, hello)]
    }

    /// Adds a link that waits for the peer's `Hello`.
    pub fn accept(&mut self, link: LinkId) {
        self.links.insert(link, Session::new(self.doc_id.clone()));
    }

    /// Removes a link (closed or failed).
    pub fn disconnect(&mut self, link: LinkId) -> Option<Session> {
        self.links.remove(&link)
    }

    /// Handles a frame from `link`: the replies, and the new operations forwarded to
    /// every other link (each computed for that link's peer, never a copy of this
    /// link's frame). On `Err` the caller sends the error and closes `link`.
    pub fn receive(
        &mut self,
        link: LinkId,
        frame: &[u8],
    ) -> Result<(Outbox, Received), ProtocolError> {
        let message = Message::decode(frame)?;
        self.receive_message(link, message, frame.len())
    }

    /// Like [`receive`](Self::receive), for a frame of `frame_len` bytes the caller
    /// already decoded.
    pub fn receive_message(
        &mut self,
        link: LinkId,
        message: Message,
        frame_len: usize,
    ) -> Result<(Outbox, Received), ProtocolError> {
        let session = self
            .links
            .get_mut(&link)
            .ok_or(ProtocolError::Unexpected("a frame on an unknown link"))?;
        let mut received = session.receive_message(&mut self.doc, message, frame_len)?;
        let mut out: Outbox = received.reply.drain(..).map(|f| (link, f)).collect();
        if received.applied > 0 {
            for (&other, s) in &mut self.links {
                if other != link {
                    if let Some(d) = s.local_change(&self.doc) {
                        out.push((other, d));
                    }
                }
            }
        }
        Ok((out, received))
    }

    /// After a local commit: a `Delta` to every link whose peer lacks it.
    pub fn committed(&mut self) -> Outbox {
        let mut out = Outbox::new();
        for (&link, s) in &mut self.links {
            if let Some(d) = s.local_change(&self.doc) {
                out.push((link, d));
            }
        }
        out
    }

    /// Tells every link's peer that `version` is durably stored here (an `Ack` where
    /// that is news).
    pub fn ack_all(&mut self, version: &chorus_doc::VersionVector) -> Outbox {
        let mut out = Outbox::new();
        for (&link, s) in &mut self.links {
            if let Some(f) = s.ack(version) {
                out.push((link, f));
            }
        }
        out
    }

    /// `message` (such as awareness) for every live link but `except`.
    pub fn broadcast(&mut self, message: &Message, except: Option<LinkId>) -> Outbox {
        let mut out = Outbox::new();
        for (&link, s) in &mut self.links {
            if Some(link) != except && s.is_live() {
                out.push((link, s.send(message)));
            }
        }
        out
    }

    /// `message` for one link, if it is live.
    pub fn send_to(&mut self, link: LinkId, message: &Message) -> Option<Vec<u8>> {
        let s = self.links.get_mut(&link)?;
        s.is_live().then(|| s.send(message))
    }

    /// Periodic repair on every link (see [`Session::tick`]).
    pub fn tick(&mut self) -> Outbox {
        let mut out = Outbox::new();
        for (&link, s) in &mut self.links {
            if let Some(f) = s.tick(&self.doc) {
                out.push((link, f));
            }
        }
        out
    }

    /// Restarts from a persisted state: the document is replaced and every link is
    /// dropped (the caller reconnects them).
    pub fn restart(&mut self, doc: Doc) {
        self.doc = doc;
        self.links.clear();
    }
}

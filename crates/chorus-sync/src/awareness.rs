//! Awareness: who else is here — each replica's ephemeral presence (user name, colour,
//! cursor), as in Yjs's awareness protocol.
//!
//! ```
//! use chorus_doc::ReplicaId;
//! use chorus_sync::{Awareness, Message};
//! use serde_json::json;
//!
//! let (ann, bob) = (ReplicaId::from_u128(1), ReplicaId::from_u128(2));
//! let mut at_ann = Awareness::new(ann, Awareness::DEFAULT_TIMEOUT_MS);
//! let mut at_bob = Awareness::new(bob, Awareness::DEFAULT_TIMEOUT_MS);
//!
//! // Ann says who she is; the message goes to every peer (here, through bytes).
//! let msg = at_ann.set_local(json!({ "user": "Ann", "color": "#f00" }), 0);
//! let Message::Awareness(entries) = Message::decode(&msg.encode()).unwrap() else {
//!     unreachable!()
//! };
//! let change = at_bob.apply(&entries, 10);
//! assert_eq!(change.added, vec![ann]);
//! assert_eq!(at_bob.get(&ann).unwrap()["user"], "Ann");
//!
//! // Ann goes silent: 30 s later Bob forgets her. (Had Ann called `tick` every few
//! // seconds and sent what it returned, she would have stayed.)
//! let (change, _) = at_bob.tick(30_010);
//! assert_eq!(change.removed, vec![ann]);
//! assert!(at_bob.get(&ann).is_none());
//! ```
//!
//! # The protocol
//!
//! Every replica has a state (any JSON value but `null`, or none) and a clock that
//! grows with every change of it. An [`AwarenessEntry`] `(replica, clock, state)`
//! replaces what a receiver holds for that replica when its clock is higher; at an
//! equal clock only a removal is taken (so a replica, or a relay on its behalf, can
//! retract a state at the clock that was last seen). Hence entries may be duplicated,
//! reordered and forwarded along any path, and every replica ends up holding each
//! replica's latest entry.
//!
//! Presence expires: a remote state not heard of for `timeout_ms` is dropped (a crashed
//! tab never says goodbye), so every replica renews its own state, from
//! [`tick`](Awareness::tick), every `timeout_ms / 2`. A removal is remembered for
//! another `timeout_ms`, so that a stale copy of the state cannot bring it back.
//!
//! Awareness is never stored with the document: it is not part of [`chorus_doc::Doc`],
//! is not in updates, and nothing of it survives a restart. A restarted replica that
//! keeps its [`ReplicaId`] starts again at clock 0; when a peer shows it a higher clock
//! of its own (from before the restart), it jumps past it and re-announces itself.
//!
//! Like the rest of the crate this is sans-IO: time is passed in as `now_ms`
//! (milliseconds from any fixed origin; it must not matter which, as long as all calls
//! to one `Awareness` use the same), and messages are returned, not sent.
//!
//! # Hostile peers
//!
//! A peer may send anything. At most [`max_entries`](Awareness::with_max_entries)
//! remote replicas are held (entries about more are ignored until some expire), and a
//! state longer than [`max_state_bytes`](Awareness::with_max_state_bytes) of compact
//! JSON is ignored. No input panics. A peer can still claim to speak for another
//! replica; a relay that knows which replica each client is should only accept
//! entries about that replica from it.

use std::collections::BTreeMap;
use std::io;

use chorus_doc::ReplicaId;
use serde_json::Value;

use crate::frame::{AwarenessEntry, Message};

/// What applying awareness entries, or a [`tick`](Awareness::tick), changed. Each list
/// is sorted by replica and names a replica at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwarenessChange {
    /// Replicas that have a state now and had none before.
    pub added: Vec<ReplicaId>,
    /// Replicas whose state is different now.
    pub updated: Vec<ReplicaId>,
    /// Replicas that had a state and have none now (they left, or expired).
    pub removed: Vec<ReplicaId>,
    /// Replicas whose entry was taken (a higher clock) with no visible change: a
    /// renewal of the same state, or a newer removal of a replica already gone. Nothing
    /// to show, but a node that forwards awareness must forward these too, or replicas
    /// further away would let the state expire.
    pub renewed: Vec<ReplicaId>,
}

impl AwarenessChange {
    /// Whether no replica's state appeared, changed or went away (`renewed` aside:
    /// there is nothing to redraw).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }

    /// Every replica named in this change (renewals included): what a forwarding node
    /// passes to [`Awareness::encode`] after [`Awareness::apply`].
    pub fn replicas(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.added
            .iter()
            .chain(&self.updated)
            .chain(&self.removed)
            .chain(&self.renewed)
            .copied()
    }
}

/// What is held about one remote replica.
#[derive(Clone, Debug)]
struct Remote {
    clock: u64,
    /// `None`: removed (remembered until it expires, so stale copies stay dead).
    state: Option<Value>,
    /// When an entry about it was last taken or confirmed (or it was removed).
    last_seen_ms: u64,
}

/// Every replica's presence, as known here, and our own.
///
/// The caller moves the [`Message`]s: it broadcasts what [`set_local`](Self::set_local),
/// [`clear_local`](Self::clear_local) and [`tick`](Self::tick) return, sends
/// [`encode_all`](Self::encode_all) to a new peer, and passes the entries of every
/// `Awareness` message received to [`apply`](Self::apply). It calls `tick` regularly —
/// every second or so, well under `timeout_ms / 2`.
#[derive(Clone, Debug)]
pub struct Awareness {
    local: ReplicaId,
    timeout_ms: u64,
    max_entries: usize,
    max_state_bytes: usize,
    local_clock: u64,
    local_state: Option<Value>,
    last_announced_ms: u64,
    /// A peer holds an entry of ours that is newer than, or conflicts with, ours: the
    /// next `tick` re-announces.
    reannounce: bool,
    remotes: BTreeMap<ReplicaId, Remote>,
}

impl Awareness {
    /// Yjs's default timeout: a replica silent for 30 s is gone (and renews its own
    /// state every 15 s).
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// How many remote replicas are held by default.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
    /// The longest state taken by default: 64 KiB of compact JSON.
    pub const DEFAULT_MAX_STATE_BYTES: usize = 64 * 1024;

    /// The awareness of replica `local`, which has no state yet. Remote states expire
    /// after `timeout_ms` of silence, and ours is renewed every `timeout_ms / 2`;
    /// [`DEFAULT_TIMEOUT_MS`](Self::DEFAULT_TIMEOUT_MS) (30 000) is what Yjs uses, and
    /// every replica of a document should use the same.
    pub fn new(local: ReplicaId, timeout_ms: u64) -> Self {
        Awareness {
            local,
            timeout_ms,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_state_bytes: Self::DEFAULT_MAX_STATE_BYTES,
            local_clock: 0,
            local_state: None,
            last_announced_ms: 0,
            reannounce: false,
            remotes: BTreeMap::new(),
        }
    }

    /// Holds at most `max` remote replicas (states and remembered removals); entries
    /// about further replicas are ignored until some expire. Default
    /// [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES).
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// Ignores remote states longer than `max` bytes of compact JSON. Default
    /// [`DEFAULT_MAX_STATE_BYTES`](Self::DEFAULT_MAX_STATE_BYTES). Our own state is not
    /// checked, but peers with the same limit ignore a longer one.
    pub fn with_max_state_bytes(mut self, max: usize) -> Self {
        self.max_state_bytes = max;
        self
    }

    /// Our replica.
    pub fn local(&self) -> ReplicaId {
        self.local
    }

    /// After how long a silent replica is forgotten.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Sets our state and returns the message to broadcast. `null` means no state: it
    /// is [`clear_local`](Self::clear_local).
    pub fn set_local(&mut self, state: Value, now_ms: u64) -> Message {
        if state.is_null() {
            return self.clear_local(now_ms);
        }
        self.local_state = Some(state);
        self.announce(now_ms)
    }

    /// Removes our state (we are leaving, or hide) and returns the message telling
    /// peers so.
    pub fn clear_local(&mut self, now_ms: u64) -> Message {
        self.local_state = None;
        self.announce(now_ms)
    }

    /// Our state, if set.
    pub fn local_state(&self) -> Option<&Value> {
        self.local_state.as_ref()
    }

    /// The state of `replica` (ours included), if it has one.
    pub fn get(&self, replica: &ReplicaId) -> Option<&Value> {
        if *replica == self.local {
            return self.local_state.as_ref();
        }
        self.remotes.get(replica)?.state.as_ref()
    }

    /// The clock held for `replica` (ours included), also when its state was removed
    /// but the removal is still remembered.
    pub fn clock(&self, replica: &ReplicaId) -> Option<u64> {
        if *replica == self.local {
            return Some(self.local_clock);
        }
        Some(self.remotes.get(replica)?.clock)
    }

    /// Every replica that has a state, with it: ours first, then the others by replica.
    pub fn states(&self) -> impl Iterator<Item = (ReplicaId, &Value)> {
        let local = self.local_state.as_ref().map(|s| (self.local, s));
        let remotes = self
            .remotes
            .iter()
            .filter_map(|(r, e)| Some((*r, e.state.as_ref()?)));
        local.into_iter().chain(remotes)
    }

    /// Takes what a peer sent: each entry replaces what is held for its replica when
    /// its clock is higher (or the replica is new), or when its clock is equal and it
    /// is a removal. An entry that is not newer but confirms the state held (same
    /// clock) keeps that replica alive. A `null` state counts as a removal.
    ///
    /// Entries about our own replica never change our state. When one shows that a peer
    /// holds a newer clock of ours, or a different state at our clock (we restarted, or
    /// a relay removed us when we disconnected), our clock jumps past it and the next
    /// [`tick`](Self::tick) re-announces our state; call `tick` right after `apply` to
    /// send it at once.
    ///
    /// A node that forwards awareness to other links sends
    /// `encode(change.replicas())` on (see [`encode`](Self::encode)): only entries that
    /// were taken, so forwarding ends even around cycles.
    pub fn apply(&mut self, entries: &[AwarenessEntry], now_ms: u64) -> AwarenessChange {
        // Each touched replica's state before this call, to report the net change.
        let mut before: BTreeMap<ReplicaId, Option<Value>> = BTreeMap::new();
        for e in entries {
            let state = e.state.as_ref().filter(|s| !s.is_null());
            if e.replica == self.local {
                self.observe_own(e.clock, state);
                continue;
            }
            let held = self.remotes.get(&e.replica);
            let take = match held {
                None => self.remotes.len() < self.max_entries,
                Some(h) => {
                    e.clock > h.clock
                        || (e.clock == h.clock && state.is_none() && h.state.is_some())
                }
            };
            if !take {
                // The same state again (a duplicate, or a forward by another path): the
                // replica is alive.
                if let Some(h) = self.remotes.get_mut(&e.replica) {
                    if e.clock == h.clock && h.state.is_some() && state.is_some() {
                        h.last_seen_ms = now_ms;
                    }
                }
                continue;
            }
            if state.is_some_and(|s| !fits(s, self.max_state_bytes)) {
                continue;
            }
            let previous = held.and_then(|h| h.state.clone());
            before.entry(e.replica).or_insert(previous);
            self.remotes.insert(
                e.replica,
                Remote {
                    clock: e.clock,
                    state: state.cloned(),
                    last_seen_ms: now_ms,
                },
            );
        }
        let mut change = AwarenessChange::default();
        for (r, was) in before {
            let now = self.remotes.get(&r).and_then(|h| h.state.as_ref());
            match (was, now) {
                (None, Some(_)) => change.added.push(r),
                (Some(_), None) => change.removed.push(r),
                (Some(a), Some(b)) if a != *b => change.updated.push(r),
                _ => change.renewed.push(r),
            }
        }
        change
    }

    /// An entry about us from a peer (see [`apply`](Self::apply)).
    fn observe_own(&mut self, clock: u64, state: Option<&Value>) {
        let newer = clock > self.local_clock;
        let conflicting = clock == self.local_clock && state != self.local_state.as_ref();
        if newer || conflicting {
            self.local_clock = self.local_clock.max(clock);
            // A peer holding our removal while we have none needs no correction.
            if state.is_some() || self.local_state.is_some() {
                self.reannounce = true;
            }
        }
    }

    /// Time passes: remote replicas silent for `timeout_ms` are removed (reported in
    /// `removed`; do not forward these — every replica expires them itself), removals
    /// older than that are forgotten, and when our state was last announced
    /// `timeout_ms / 2` ago or more (or a peer holds a newer entry of ours, see
    /// [`apply`](Self::apply)), it is announced again with the next clock: the message
    /// to broadcast, so that peers keep us.
    pub fn tick(&mut self, now_ms: u64) -> (AwarenessChange, Option<Message>) {
        let mut change = AwarenessChange::default();
        let timeout = self.timeout_ms;
        self.remotes.retain(|r, h| {
            if now_ms.saturating_sub(h.last_seen_ms) < timeout {
                return true;
            }
            if h.state.is_none() {
                return false;
            }
            // Keep the clock: a stale copy of the state stays dead, and the replica's
            // next renewal (a higher clock) brings it back if it was only cut off.
            h.state = None;
            h.last_seen_ms = now_ms;
            change.removed.push(*r);
            true
        });
        let renew = self.local_state.is_some()
            && now_ms.saturating_sub(self.last_announced_ms) >= self.timeout_ms / 2;
        let msg = (renew || self.reannounce).then(|| self.announce(now_ms));
        (change, msg)
    }

    /// Every entry known here — our own, every state, and the removals still remembered
    /// — for a new peer; `None` when there is nothing to tell.
    pub fn encode_all(&self) -> Option<Message> {
        let mut entries = Vec::with_capacity(self.remotes.len() + 1);
        if self.local_clock > 0 {
            entries.push(self.local_entry());
        }
        entries.extend(self.remotes.iter().map(|(r, h)| AwarenessEntry {
            replica: *r,
            clock: h.clock,
            state: h.state.clone(),
        }));
        (!entries.is_empty()).then_some(Message::Awareness(entries))
    }

    /// The entries held for `replicas` (ours included, removals too; replicas not known
    /// here are skipped): what a node forwards after [`apply`](Self::apply), with
    /// [`AwarenessChange::replicas`]. `None` when none is known.
    pub fn encode(&self, replicas: impl IntoIterator<Item = ReplicaId>) -> Option<Message> {
        let entries: Vec<AwarenessEntry> = replicas
            .into_iter()
            .filter_map(|r| {
                if r == self.local {
                    return (self.local_clock > 0).then(|| self.local_entry());
                }
                let h = self.remotes.get(&r)?;
                Some(AwarenessEntry {
                    replica: r,
                    clock: h.clock,
                    state: h.state.clone(),
                })
            })
            .collect();
        (!entries.is_empty()).then_some(Message::Awareness(entries))
    }

    /// Removes `replica`'s state here, for a relay whose client (that replica) has
    /// disconnected without saying goodbye; broadcast
    /// [`removal_message`](Self::removal_message) so the other peers drop it too. The
    /// removal takes the next clock, so it beats the state peers hold, and the
    /// replica, when it reconnects, learns of it and re-announces itself above it. Our
    /// own replica is never removed this way (use [`clear_local`](Self::clear_local)).
    pub fn remove_replica(&mut self, replica: ReplicaId, now_ms: u64) -> AwarenessChange {
        let mut change = AwarenessChange::default();
        if replica == self.local {
            return change;
        }
        if let Some(h) = self.remotes.get_mut(&replica) {
            if h.state.is_some() {
                h.clock = h.clock.saturating_add(1);
                h.state = None;
                h.last_seen_ms = now_ms;
                change.removed.push(replica);
            }
        }
        change
    }

    /// The message telling peers that `replica` is gone: a removal with a clock above
    /// the last state known here (the same message before and after
    /// [`remove_replica`](Self::remove_replica)). For a replica not known here, the
    /// clock is 0, which removes nothing that was ever announced.
    pub fn removal_message(&self, replica: ReplicaId) -> Message {
        let clock = if replica == self.local {
            self.local_clock.saturating_add(1)
        } else {
            match self.remotes.get(&replica) {
                Some(h) if h.state.is_some() => h.clock.saturating_add(1),
                Some(h) => h.clock,
                None => 0,
            }
        };
        Message::Awareness(vec![AwarenessEntry {
            replica,
            clock,
            state: None,
        }])
    }

    /// The next clock for our current state, announced now.
    fn announce(&mut self, now_ms: u64) -> Message {
        self.local_clock = self.local_clock.saturating_add(1);
        self.last_announced_ms = now_ms;
        self.reannounce = false;
        Message::Awareness(vec![self.local_entry()])
    }

    fn local_entry(&self) -> AwarenessEntry {
        AwarenessEntry {
            replica: self.local,
            clock: self.local_clock,
            state: self.local_state.clone(),
        }
    }
}

/// Whether `state` takes at most `max` bytes of compact JSON (measured without building
/// the string, and stopping as soon as it is too long).
fn fits(state: &Value, max: usize) -> bool {
    struct Counter {
        len: usize,
        max: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.len = self.len.saturating_add(buf.len());
            if self.len > self.max {
                return Err(io::Error::other("too long"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { len: 0, max }, state).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fits_measures_compact_json() {
        let v = json!({"a": 1});
        assert_eq!(v.to_string().len(), 7);
        assert!(fits(&v, 7));
        assert!(!fits(&v, 6));
        assert!(fits(&json!("x".repeat(100)), 102));
        assert!(!fits(&json!("x".repeat(100)), 101));
    }
}

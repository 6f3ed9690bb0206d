//! A deterministic, seeded discrete-event network simulator: N replicas wired in a
//! [`Topology`], editing concurrently over links that delay, reorder, duplicate, drop
//! and partition frames, with links failing and replicas crashing and restarting.
//! It measures what the topologies cost — convergence latency, frames and bytes, links,
//! the busiest replica's load — instead of asserting it.
//!
//! ```
//! use chorus_sync::sim::{self, SimConfig};
//! use chorus_sync::Topology;
//!
//! let mut config = SimConfig::new(Topology::Ring, 5);
//! config.ops_per_replica = 10;
//! config.loss = 0.05;
//! config.duplicate = 0.05;
//! let report = sim::run(&config);
//! assert!(report.converged, "{report}");
//! assert_eq!(report, sim::run(&config)); // same seed, same run
//! ```
//!
//! # The model
//!
//! - **Time** is simulated milliseconds; nothing reads a clock. Events (a frame
//!   arriving, a tick, an edit, a fault) run in time order, ties in the order they were
//!   scheduled, so a run is a function of its [`SimConfig`] alone.
//! - **Randomness** comes from SplitMix64 generators seeded from [`SimConfig::seed`]:
//!   one for the network (delays, loss, duplication) and one per replica for its
//!   workload, so every topology run with one seed gets the same edit schedule and the
//!   same random choices.
//! - **Links.** Each [`Edge`] is one link (its index in [`Topology::edges`] is its
//!   [`LinkId`] at both ends). A frame takes `latency_ms` plus a uniform `0..=jitter_ms`,
//!   so frames overtake each other (reordering); it is lost with probability `loss`
//!   and delivered twice with probability `duplicate` (the copy with its own delay). A
//!   link that is partitioned or failed drops every frame sent on it or arriving over
//!   it; the sessions at its ends are not told (as with a network that silently drops
//!   packets) and repair themselves with their periodic `Hello`s once it heals.
//! - **One-way links** ([`Topology::RingOneWay`]): the accepting end never sends a
//!   `Delta`; the simulator drops those frames before they reach the network (they
//!   are not counted as sent). `Hello`s and `Ack`s go both ways.
//! - **Crashes.** A crashed replica loses its sessions and in-flight frames; its peers
//!   notice at once (the connection resets) and drop their sessions too. On restart
//!   the replica loads its persisted state with [`Doc::decode`] and reopens every link
//!   whose other end is up; the other end accepts. What is persisted is set by
//!   [`Persistence`].
//! - **Workload.** Each replica makes [`SimConfig::ops_per_replica`] edits (one
//!   transaction each, sometimes of several operations), `edit_interval_ms` plus up to
//!   `edit_jitter_ms` apart, mixing text inserts and deletes, counter adds, map sets
//!   and deletes with nested maps, lists, texts and counters, list inserts and
//!   deletes, and last-writer-wins and multi-value register sets (with the simulated
//!   time as `now_ms`). An edit due while its replica is down is skipped.
//! - **Ticks.** Every replica calls [`Node::tick`] every `tick_ms` (each with its own
//!   phase), which repairs lost frames.
//! - **The end.** The run stops when every edit was made, every scheduled fault is
//!   over, nothing is in flight and every live replica has the same version; or when
//!   nothing changed any replica's version for `quiet_ms` (the replicas that can
//!   still converge have; the report says which did not); or at `max_time_ms`.
//!
//! # What is measured
//!
//! An edit is the operations of one transaction, `(replica, seq range)`. Its
//! convergence latency is the time from its commit until the last replica that is
//! live at the end first had all of it (tracked by comparing each replica's version
//! vector after every frame it applies). Latencies are reported over the edits that
//! reached every live replica; the others are counted.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;

use chorus_doc::{Doc, ReplicaId, Rule, VersionVector};

use crate::topology::{Edge, Topology};
use crate::{LinkId, Message, Node, Outbox, SessionStats};

/// The document id every simulated replica syncs.
pub const DOC_ID: &str = "sim";

// ------------------------------------------------------------------ configuration

/// Links between two replica sets cut for a while, then healed.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// The links cut, by their ends (in either order).
    pub links: Vec<(usize, usize)>,
    /// When the links go down (simulated ms).
    pub from_ms: u64,
    /// When they come back (simulated ms); frames sent before are lost.
    pub until_ms: u64,
}

/// A link that goes down for good.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkFailure {
    /// The link, by its ends (in either order).
    pub link: (usize, usize),
    /// When it fails (simulated ms).
    pub at_ms: u64,
}

/// A replica that crashes, and maybe restarts.
#[derive(Clone, Debug, PartialEq)]
pub struct Crash {
    /// The replica.
    pub node: usize,
    /// When it crashes (simulated ms).
    pub at_ms: u64,
    /// When it restarts from its persisted state; `None`: never.
    pub restart_ms: Option<u64>,
}

/// What a replica keeps across a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Its document's full state ([`Doc::encode`]) at the moment of the crash: storage
    /// that makes every change durable before going on, as the relay does (fsync
    /// before ack). The replica restarts under the same [`ReplicaId`]: it has every
    /// operation it made, so it can never reuse a sequence number.
    OnCrash,
    /// Its document's full state saved every `every_ms` (and at the start); what came
    /// after the last checkpoint is lost. The replica restarts under a *new*
    /// [`ReplicaId`] (see [`Sim::replica_id`]): under the old one it would number its
    /// next operations from the checkpoint and reuse sequence numbers of operations
    /// its peers may already have — two different operations with one id. Its own
    /// lost operations come back from peers that had them; those nobody had are lost
    /// (counted in [`SimReport::edits_lost`]).
    Checkpoint {
        /// Time between checkpoints (simulated ms).
        every_ms: u64,
    },
}

/// What to simulate. [`SimConfig::new`] gives defaults for everything but the
/// topology and the number of replicas.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// How replicas are wired.
    pub topology: Topology,
    /// The number of replicas (at least 1).
    pub replicas: usize,
    /// Seeds every random choice.
    pub seed: u64,
    /// The fixed part of a frame's delay (ms).
    pub latency_ms: u64,
    /// The random part of a frame's delay: uniform in `0..=jitter_ms` (reorders frames).
    pub jitter_ms: u64,
    /// The probability that a frame is lost (0 ≤ p < 1).
    pub loss: f64,
    /// The probability that a frame is delivered twice (0 ≤ p < 1).
    pub duplicate: f64,
    /// Time between a replica's ticks (ms, > 0).
    pub tick_ms: u64,
    /// Edits each replica makes.
    pub ops_per_replica: usize,
    /// Time between a replica's edits (ms), plus up to `edit_jitter_ms`.
    pub edit_interval_ms: u64,
    /// The random part of the time between edits (ms).
    pub edit_jitter_ms: u64,
    /// Links cut for a while.
    pub partitions: Vec<Partition>,
    /// Links that fail for good.
    pub link_failures: Vec<LinkFailure>,
    /// Replicas that crash (and maybe restart).
    pub crashes: Vec<Crash>,
    /// What a crashed replica keeps.
    pub persistence: Persistence,
    /// Stop when no replica's version changed for this long after the workload and
    /// the faults are over (ms).
    pub quiet_ms: u64,
    /// Stop at this time whatever happens (ms).
    pub max_time_ms: u64,
}

impl SimConfig {
    /// `replicas` replicas wired as `topology`, with 20 edits each 100–200 ms apart,
    /// links of 50 ms + 0–20 ms, no loss, no duplication, a tick every 200 ms, no
    /// faults, seed 1.
    pub fn new(topology: Topology, replicas: usize) -> Self {
        SimConfig {
            topology,
            replicas,
            seed: 1,
            latency_ms: 50,
            jitter_ms: 20,
            loss: 0.0,
            duplicate: 0.0,
            tick_ms: 200,
            ops_per_replica: 20,
            edit_interval_ms: 100,
            edit_jitter_ms: 100,
            partitions: Vec::new(),
            link_failures: Vec::new(),
            crashes: Vec::new(),
            persistence: Persistence::OnCrash,
            quiet_ms: 10_000,
            max_time_ms: 3_600_000,
        }
    }

    /// The links of the configured topology.
    pub fn edges(&self) -> Vec<Edge> {
        self.topology.edges(self.replicas)
    }

    /// Cuts every link between `side` and the other replicas during
    /// `[from_ms, until_ms)`.
    pub fn partition_off(&mut self, side: &[usize], from_ms: u64, until_ms: u64) {
        let links = self
            .edges()
            .iter()
            .filter(|e| side.contains(&e.from) != side.contains(&e.to))
            .map(|e| (e.from, e.to))
            .collect();
        self.partitions.push(Partition {
            links,
            from_ms,
            until_ms,
        });
    }

    /// When the last edit is due, at the latest.
    pub fn workload_end_ms(&self) -> u64 {
        let per = self.edit_interval_ms + self.edit_jitter_ms;
        per * (self.ops_per_replica as u64 + 1)
    }

    /// Checks the configuration; [`Sim::new`] and [`run`] panic on what this refuses.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let bad = |s: String| Err(SimConfigError(s));
        if self.replicas == 0 {
            return bad("at least one replica is needed".into());
        }
        if self.replicas > 100_000 {
            return bad(format!("{} replicas are too many", self.replicas));
        }
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} probability {p} is not in [0, 1)"));
            }
        }
        if self.tick_ms == 0 {
            return bad("tick_ms must be more than 0".into());
        }
        if let Persistence::Checkpoint { every_ms: 0 } = self.persistence {
            return bad("the checkpoint interval must be more than 0 ms".into());
        }
        let edges = self.edges();
        let link = |(a, b): (usize, usize)| {
            if edges.iter().any(|e| e.joins(a, b)) {
                Ok(())
            } else {
                Err(SimConfigError(format!(
                    "there is no link {a}-{b} in a {} of {} replicas",
                    self.topology, self.replicas
                )))
            }
        };
        for p in &self.partitions {
            if p.until_ms < p.from_ms {
                return bad(format!(
                    "a partition ends ({} ms) before it starts ({} ms)",
                    p.until_ms, p.from_ms
                ));
            }
            p.links.iter().copied().try_for_each(link)?;
        }
        for f in &self.link_failures {
            link(f.link)?;
        }
        for c in &self.crashes {
            if c.node >= self.replicas {
                return bad(format!("replica {} does not exist", c.node));
            }
            if c.restart_ms.is_some_and(|r| r < c.at_ms) {
                return bad(format!("replica {} restarts before it crashes", c.node));
            }
        }
        Ok(())
    }
}

/// A [`SimConfig`] that cannot run; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulation: {0}")]
pub struct SimConfigError(pub String);

// ------------------------------------------------------------------ randomness

/// SplitMix64 (Steele, Lea & Flood): small, fast, and good enough to drive a
/// simulation; seeded by the caller, never from the environment.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..=n`.
    fn upto(&mut self, n: u64) -> u64 {
        if n == u64::MAX {
            self.next_u64()
        } else {
            self.below(n + 1)
        }
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }
}

// ------------------------------------------------------------------ events

#[derive(Debug)]
enum Event {
    /// A frame arrives at replica `to` over `link`, sent on the link's connection
    /// number `conn` (a frame of an older connection is dropped).
    Deliver {
        link: usize,
        conn: u64,
        to: usize,
        frame: Vec<u8>,
    },
    Tick(usize),
    Edit(usize),
    Checkpoint(usize),
    Crash(usize),
    Restart(usize),
    LinkDown(usize),
    LinkUp(usize),
    LinkFail(usize),
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap, the earliest event comes first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

// ------------------------------------------------------------------ state

/// Frames and bytes one replica sent and received over the simulated network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames handed to the network (lost ones included, duplicate copies not).
    pub frames_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Frames delivered to the replica (duplicate copies included).
    pub frames_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
}

impl Traffic {
    /// Frames sent and received.
    pub fn frames(&self) -> u64 {
        self.frames_sent + self.frames_received
    }

    /// Bytes sent and received.
    pub fn bytes(&self) -> u64 {
        self.bytes_sent + self.bytes_received
    }
}

#[derive(Debug)]
struct Replica {
    node: Node,
    up: bool,
    incarnation: u64,
    checkpoint: Vec<u8>,
    rng: Rng,
    edits_left: usize,
    traffic: Traffic,
    /// Session counters of sessions that were closed.
    closed_sessions: SessionStats,
    /// Per origin: how many of its edits this replica has (a cursor into its edits).
    reached: Vec<usize>,
}

#[derive(Debug)]
struct Link {
    edge: Edge,
    /// How many partitions cut it now.
    cut: u32,
    failed: bool,
    /// Closed after a protocol error: never reopened.
    closed: bool,
    /// Both ends hold a session for the current connection.
    connected: bool,
    /// Bumped at every reset, so frames of an old connection are dropped.
    conn: u64,
}

impl Link {
    fn carries(&self) -> bool {
        self.cut == 0 && !self.failed && !self.closed
    }
}

/// One edit: a committed transaction.
#[derive(Debug)]
struct EditRecord {
    /// Its operations are `..end_seq` of the origin's replica (and after the
    /// previous edit's end).
    end_seq: u64,
    at: u64,
    /// When each replica first had all of it (`u64::MAX`: never).
    first_had: Vec<u64>,
}

/// A replica id's edits.
#[derive(Debug)]
struct Origin {
    replica: ReplicaId,
    edits: Vec<EditRecord>,
}

/// A running simulation. [`run`] runs one to its end; tests step it with
/// [`run_until`](Sim::run_until) to look at the replicas midway.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: u64,
    order: u64,
    queue: BinaryHeap<Scheduled>,
    net: Rng,
    replicas: Vec<Replica>,
    links: Vec<Link>,
    origins: Vec<Origin>,
    in_flight: u64,
    /// Edits and faults still to come.
    activity_left: usize,
    last_progress: u64,
    done: bool,
    frames_lost: u64,
    frames_cut: u64,
    frames_duplicated: u64,
    frames_suppressed: u64,
    /// Frames sent by message type (index: the type byte; 0: unknown).
    frames_by_type: [u64; 6],
    edits_skipped: usize,
    errors: Vec<String>,
}

/// The id of replica `node` in its `incarnation` (0 at the start; a new one after each
/// restart from a checkpoint): the number `incarnation · 2⁶⁴ + node + 1`.
pub fn replica_id(node: usize, incarnation: u64) -> ReplicaId {
    ReplicaId::from_u128((u128::from(incarnation) << 64) | (node as u128 + 1))
}

/// The message type of a frame, from its second byte (`frame = version · type ·
/// body`, see `PROTOCOL.md`): 1 Hello, 2 Delta, 3 Ack, 4 Awareness, 5 Error.
fn frame_type(frame: &[u8]) -> usize {
    match frame.get(1) {
        Some(&t @ 1..=5) => usize::from(t),
        _ => 0,
    }
}

const DELTA: usize = 2;

impl Sim {
    /// Sets up the replicas, opens every link and schedules the workload and faults.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid (see [`SimConfig::validate`]).
    pub fn new(config: &SimConfig) -> Sim {
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        let n = config.replicas;
        let edges = config.edges();
        let replicas = (0..n)
            .map(|i| {
                let doc = Doc::new(replica_id(i, 0));
                Replica {
                    checkpoint: doc.encode(),
                    node: Node::new(DOC_ID, doc),
                    up: true,
                    incarnation: 0,
                    rng: Rng::new(config.seed, 1 + i as u64),
                    edits_left: config.ops_per_replica,
                    traffic: Traffic::default(),
                    closed_sessions: SessionStats::default(),
                    reached: vec![0; n],
                }
            })
            .collect();
        let mut sim = Sim {
            now: 0,
            order: 0,
            queue: BinaryHeap::new(),
            net: Rng::new(config.seed, 0),
            replicas,
            links: edges
                .iter()
                .map(|&edge| Link {
                    edge,
                    cut: 0,
                    failed: false,
                    closed: false,
                    connected: false,
                    conn: 0,
                })
                .collect(),
            origins: (0..n)
                .map(|i| Origin {
                    replica: replica_id(i, 0),
                    edits: Vec::new(),
                })
                .collect(),
            in_flight: 0,
            activity_left: 0,
            last_progress: 0,
            done: false,
            frames_lost: 0,
            frames_cut: 0,
            frames_duplicated: 0,
            frames_suppressed: 0,
            frames_by_type: [0; 6],
            edits_skipped: 0,
            errors: Vec::new(),
            config: config.clone(),
        };
        // The faults first: a replica that fails at time 0 makes no edit then.
        let find =
            |(a, b): (usize, usize)| edges.iter().position(|e| e.joins(a, b)).expect("validated");
        for p in &config.partitions {
            for &l in &p.links {
                let l = find(l);
                sim.activity_left += 2;
                sim.schedule(p.from_ms, Event::LinkDown(l));
                sim.schedule(p.until_ms, Event::LinkUp(l));
            }
        }
        for f in &config.link_failures {
            sim.activity_left += 1;
            sim.schedule(f.at_ms, Event::LinkFail(find(f.link)));
        }
        for c in &config.crashes {
            sim.activity_left += 1;
            sim.schedule(c.at_ms, Event::Crash(c.node));
            if let Some(r) = c.restart_ms {
                sim.activity_left += 1;
                sim.schedule(r, Event::Restart(c.node));
            }
        }
        // The workload and the ticks, each replica with its own phase.
        for i in 0..n {
            let phase = sim.net.below(config.tick_ms);
            sim.schedule(phase, Event::Tick(i));
            if config.ops_per_replica > 0 {
                let first = sim.replicas[i].rng.upto(config.edit_interval_ms);
                sim.activity_left += 1;
                sim.schedule(first, Event::Edit(i));
            }
            if let Persistence::Checkpoint { every_ms } = config.persistence {
                sim.schedule(every_ms, Event::Checkpoint(i));
            }
        }
        // Open every link (faults at time 0 come right after).
        for l in 0..sim.links.len() {
            sim.open(l, sim.links[l].edge.from);
        }
        sim
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.order += 1;
        self.queue.push(Scheduled {
            at,
            order: self.order,
            event,
        });
    }

    /// The simulated time (ms): that of the last event run.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Whether the run reached its end (see the [module docs](self)).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Replica `i`'s document (its last state if it is down).
    pub fn doc(&self, i: usize) -> &Doc {
        self.replicas[i].node.doc()
    }

    /// Replica `i`'s node.
    pub fn node(&self, i: usize) -> &Node {
        &self.replicas[i].node
    }

    /// Whether replica `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.replicas[i].up
    }

    /// Replica `i`'s current [`ReplicaId`] (see [`replica_id`]).
    pub fn replica_id(&self, i: usize) -> ReplicaId {
        replica_id(i, self.replicas[i].incarnation)
    }

    /// Runs every event due at or before `t_ms` (fewer if the run ends first).
    pub fn run_until(&mut self, t_ms: u64) {
        while !self.done {
            match self.queue.peek() {
                Some(s) if s.at <= t_ms => self.step(),
                _ => break,
            }
        }
    }

    /// Runs every event due in the next `ms`, even past the end of the run: to see
    /// what the replicas do once they are done (an idle, in-sync link sends nothing).
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            let Some(Scheduled { at, event, .. }) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.handle(event);
        }
        self.now = until;
    }

    /// Frames sent so far, over all replicas.
    pub fn frames_sent(&self) -> u64 {
        self.replicas.iter().map(|r| r.traffic.frames_sent).sum()
    }

    /// Runs to the end; true if every live replica converged.
    pub fn run_to_end(&mut self) -> bool {
        while !self.done {
            self.step();
        }
        self.report().converged
    }

    /// Runs the next event, then decides whether the run is over.
    fn step(&mut self) {
        let Some(Scheduled { at, event, .. }) = self.queue.pop() else {
            self.done = true;
            return;
        };
        self.now = at;
        if at > self.config.max_time_ms {
            self.now = self.config.max_time_ms;
            self.done = true;
            return;
        }
        self.handle(event);
        if self.activity_left == 0 {
            // Settled (everyone agrees, nothing in flight), or stuck.
            let stuck = self.now.saturating_sub(self.last_progress) >= self.config.quiet_ms;
            self.done = stuck || (self.in_flight == 0 && self.live_replicas_agree());
        }
    }

    fn live_replicas_agree(&self) -> bool {
        let mut live = self.replicas.iter().filter(|r| r.up).map(|r| r.node.doc());
        let Some(first) = live.next() else {
            return true;
        };
        first.pending_len() == 0
            && live.all(|d| d.pending_len() == 0 && d.version() == first.version())
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                link,
                conn,
                to,
                frame,
            } => {
                self.in_flight -= 1;
                self.deliver(link, conn, to, &frame);
            }
            Event::Tick(i) => {
                if self.replicas[i].up {
                    let out = self.replicas[i].node.tick();
                    self.send(i, out);
                }
                self.schedule(self.now + self.config.tick_ms, Event::Tick(i));
            }
            Event::Edit(i) => {
                self.activity_left -= 1;
                self.last_progress = self.now;
                self.replicas[i].edits_left -= 1;
                if self.replicas[i].up {
                    self.edit(i);
                } else {
                    self.edits_skipped += 1;
                }
                if self.replicas[i].edits_left > 0 {
                    let r = &mut self.replicas[i];
                    let next = self.now
                        + self.config.edit_interval_ms
                        + r.rng.upto(self.config.edit_jitter_ms);
                    self.activity_left += 1;
                    self.schedule(next, Event::Edit(i));
                }
            }
            Event::Checkpoint(i) => {
                let r = &mut self.replicas[i];
                if r.up {
                    r.checkpoint = r.node.doc().encode();
                }
                if let Persistence::Checkpoint { every_ms } = self.config.persistence {
                    self.schedule(self.now + every_ms, Event::Checkpoint(i));
                }
            }
            Event::Crash(i) => {
                self.activity_left -= 1;
                self.last_progress = self.now;
                self.crash(i);
            }
            Event::Restart(i) => {
                self.activity_left -= 1;
                self.last_progress = self.now;
                self.restart(i);
            }
            Event::LinkDown(l) => {
                self.activity_left -= 1;
                self.last_progress = self.now;
                self.links[l].cut += 1;
            }
            Event::LinkUp(l) => {
                self.activity_left -= 1;
                self.last_progress = self.now;
                self.links[l].cut -= 1;
            }
            Event::LinkFail(l) => {
                self.activity_left -= 1;
                self.last_progress = self.now;
                self.links[l].failed = true;
            }
        }
    }

    /// Opens link `l` from replica `opener` if both ends are up.
    fn open(&mut self, l: usize, opener: usize) {
        let link = &self.links[l];
        let other = link.edge.other(opener);
        if link.closed || link.connected || !self.replicas[opener].up || !self.replicas[other].up {
            return;
        }
        self.links[l].connected = true;
        self.links[l].conn += 1;
        self.replicas[other].node.accept(l as LinkId);
        let out = self.replicas[opener].node.connect(l as LinkId);
        self.send(opener, out);
    }

    /// Resets link `l`: both ends drop their sessions, frames in flight are dropped.
    fn reset(&mut self, l: usize) {
        let link = &mut self.links[l];
        link.conn += 1;
        if !link.connected {
            return;
        }
        link.connected = false;
        let (a, b) = (link.edge.from, link.edge.to);
        for i in [a, b] {
            let r = &mut self.replicas[i];
            if let Some(s) = r.node.disconnect(l as LinkId) {
                add_stats(&mut r.closed_sessions, &s.stats());
            }
        }
    }

    fn send(&mut self, from: usize, out: Outbox) {
        for (link_id, frame) in out {
            let l = link_id as usize;
            let link = &self.links[l];
            let kind = frame_type(&frame);
            if link.edge.one_way && from == link.edge.to && kind == DELTA {
                self.frames_suppressed += 1;
                continue;
            }
            self.frames_by_type[kind] += 1;
            let to = link.edge.other(from);
            let conn = link.conn;
            let carries = link.carries();
            let t = &mut self.replicas[from].traffic;
            t.frames_sent += 1;
            t.bytes_sent += frame.len() as u64;
            if !carries {
                self.frames_cut += 1;
                continue;
            }
            if self.net.chance(self.config.loss) {
                self.frames_lost += 1;
                continue;
            }
            let copies = if self.net.chance(self.config.duplicate) {
                self.frames_duplicated += 1;
                2
            } else {
                1
            };
            let mut frame = Some(frame);
            for c in 0..copies {
                let delay = self.config.latency_ms + self.net.upto(self.config.jitter_ms);
                let frame = if c + 1 == copies {
                    frame.take().expect("the last copy takes the frame")
                } else {
                    frame.clone().expect("the frame is kept for the last copy")
                };
                self.in_flight += 1;
                self.schedule(
                    self.now + delay,
                    Event::Deliver {
                        link: l,
                        conn,
                        to,
                        frame,
                    },
                );
            }
        }
    }

    fn deliver(&mut self, l: usize, conn: u64, to: usize, frame: &[u8]) {
        let link = &self.links[l];
        if link.conn != conn || !link.connected || !self.replicas[to].up {
            return;
        }
        if !link.carries() {
            self.frames_cut += 1;
            return;
        }
        let r = &mut self.replicas[to];
        r.traffic.frames_received += 1;
        r.traffic.bytes_received += frame.len() as u64;
        match r.node.receive(l as LinkId, frame) {
            Ok((out, received)) => {
                if received.applied > 0 {
                    self.observe(to);
                }
                self.send(to, out);
            }
            Err(e) => {
                // A correct peer never gets here: the report lists it as a bug.
                self.errors.push(format!(
                    "at {} ms replica {to} closed link {}-{} on a protocol error: {e}",
                    self.now, link.edge.from, link.edge.to
                ));
                // The Error frame goes out, and the link closes behind it (the peer
                // sees the connection close either way).
                let msg = Message::error(&e).encode();
                self.send(to, vec![(l as LinkId, msg)]);
                self.reset(l);
                self.links[l].closed = true;
            }
        }
    }

    /// Notes which edits replica `i` now has that it did not.
    fn observe(&mut self, i: usize) {
        let now = self.now;
        let r = &mut self.replicas[i];
        let version = r.node.doc().version();
        r.reached.resize(self.origins.len(), 0);
        let mut progress = false;
        for (o, origin) in self.origins.iter_mut().enumerate() {
            let have = version.get(&origin.replica);
            let cursor = &mut r.reached[o];
            while let Some(e) = origin.edits.get_mut(*cursor) {
                if e.end_seq > have {
                    break;
                }
                if e.first_had[i] == u64::MAX {
                    e.first_had[i] = now;
                    progress = true;
                }
                *cursor += 1;
            }
        }
        if progress {
            self.last_progress = now;
        }
    }

    fn origin_of(&self, replica: ReplicaId) -> usize {
        self.origins
            .iter()
            .position(|o| o.replica == replica)
            .expect("every replica id in use is an origin")
    }

    fn edit(&mut self, i: usize) {
        let now = self.now;
        let r = &mut self.replicas[i];
        let result = random_edit(&mut r.node, &mut r.rng, now);
        match result {
            Ok(Some(change)) => {
                let o = self.origin_of(change.replica);
                let mut first_had = vec![u64::MAX; self.config.replicas];
                first_had[i] = now;
                self.origins[o].edits.push(EditRecord {
                    end_seq: change.seqs.end,
                    at: now,
                    first_had,
                });
                self.replicas[i].reached.resize(self.origins.len(), 0);
                self.replicas[i].reached[o] = self.origins[o].edits.len();
                let out = self.replicas[i].node.committed();
                self.send(i, out);
            }
            Ok(None) => {}
            Err(e) => self
                .errors
                .push(format!("at {now} ms replica {i} could not edit: {e}")),
        }
    }

    fn crash(&mut self, i: usize) {
        if !self.replicas[i].up {
            return;
        }
        if self.config.persistence == Persistence::OnCrash {
            self.replicas[i].checkpoint = self.replicas[i].node.doc().encode();
        }
        self.replicas[i].up = false;
        for l in 0..self.links.len() {
            let e = self.links[l].edge;
            if e.from == i || e.to == i {
                self.reset(l);
            }
        }
    }

    fn restart(&mut self, i: usize) {
        if self.replicas[i].up {
            return;
        }
        let incarnation = match self.config.persistence {
            Persistence::OnCrash => self.replicas[i].incarnation,
            Persistence::Checkpoint { .. } => self.replicas[i].incarnation + 1,
        };
        let id = replica_id(i, incarnation);
        let doc = match Doc::decode(&self.replicas[i].checkpoint, id) {
            Ok(d) => d,
            Err(e) => {
                self.errors.push(format!(
                    "at {} ms replica {i} could not load its persisted state: {e}",
                    self.now
                ));
                return;
            }
        };
        if !self.origins.iter().any(|o| o.replica == id) {
            self.origins.push(Origin {
                replica: id,
                edits: Vec::new(),
            });
        }
        // What it has now: a checkpoint may be older than what it had, and the edits
        // it lost count as reached only when they come back.
        for origin in &mut self.origins {
            let have = doc.version().get(&origin.replica);
            for e in origin.edits.iter_mut().filter(|e| e.end_seq > have) {
                e.first_had[i] = u64::MAX;
            }
        }
        let r = &mut self.replicas[i];
        r.incarnation = incarnation;
        r.node.restart(doc);
        r.up = true;
        r.reached = vec![0; self.origins.len()];
        self.observe(i);
        for l in 0..self.links.len() {
            let e = self.links[l].edge;
            if e.from == i || e.to == i {
                self.open(l, i);
            }
        }
    }

    /// What the run measured so far.
    pub fn report(&self) -> SimReport {
        let n = self.config.replicas;
        let live: Vec<usize> = (0..n).filter(|&i| self.replicas[i].up).collect();
        let mut errors = self.errors.clone();

        // Edits: reached by every live replica, by none.
        let mut latencies = Vec::new();
        let mut edits = 0;
        let mut edits_lost = 0;
        for origin in &self.origins {
            for e in &origin.edits {
                edits += 1;
                let had: Vec<u64> = live.iter().map(|&i| e.first_had[i]).collect();
                if had.iter().all(|&t| t != u64::MAX) {
                    latencies.push(had.iter().max().map_or(0, |&t| t - e.at));
                } else if had.iter().all(|&t| t == u64::MAX) {
                    edits_lost += 1;
                }
            }
        }
        let edits_everywhere = latencies.len();

        // Per replica.
        let degree = |i: usize| {
            self.links
                .iter()
                .filter(|l| l.edge.from == i || l.edge.to == i)
                .count()
        };
        let per_node: Vec<NodeReport> = (0..n)
            .map(|i| {
                let r = &self.replicas[i];
                let doc = r.node.doc();
                let mut sessions = r.closed_sessions;
                for (_, s) in r.node.links() {
                    add_stats(&mut sessions, &s.stats());
                }
                NodeReport {
                    up: r.up,
                    links: degree(i),
                    traffic: r.traffic,
                    ops_applied: sessions.ops_applied,
                    ops_duplicate: sessions.ops_duplicate,
                    version: doc.version().clone(),
                    pending: doc.pending_len(),
                    json: doc.to_json(),
                    check: doc.check().map_err(|e| e.to_string()),
                }
            })
            .collect();

        // Live replicas grouped by equal state.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &i in &live {
            let p = &per_node[i];
            match groups.iter_mut().find(|g| {
                let q = &per_node[g[0]];
                q.version == p.version && q.json == p.json
            }) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        for (a, ga) in groups.iter().enumerate() {
            for gb in &groups[a + 1..] {
                if per_node[ga[0]].version == per_node[gb[0]].version {
                    errors.push(format!(
                        "replicas {} and {} have the same version but different documents",
                        ga[0], gb[0]
                    ));
                }
            }
        }
        for &i in &live {
            if let Err(e) = &per_node[i].check {
                errors.push(format!("replica {i} fails its invariant check: {e}"));
            }
        }
        // Operations still waiting count against convergence only while some live
        // replica could still supply what they wait for: once every live replica has
        // the same version, nobody can, and they wait for good (their dependencies
        // died with a replica).
        let converged = groups.len() <= 1 && live.iter().all(|&i| per_node[i].check.is_ok());
        // The largest group of live replicas that agree (the first if several are as
        // large): how fast edits spread among the replicas that still reach each other.
        let main_group = groups
            .iter()
            .fold(None::<&Vec<usize>>, |best, g| match best {
                Some(b) if b.len() >= g.len() => Some(b),
                _ => Some(g),
            })
            .cloned()
            .unwrap_or_default();
        let mut main_latencies = Vec::new();
        for e in self.origins.iter().flat_map(|o| &o.edits) {
            let had: Vec<u64> = main_group.iter().map(|&i| e.first_had[i]).collect();
            if !had.is_empty() && had.iter().all(|&t| t != u64::MAX) {
                main_latencies.push(had.iter().max().map_or(0, |&t| t - e.at));
            }
        }
        let pending_ops = live.iter().map(|&i| per_node[i].pending).sum();

        let busiest = (0..n)
            .max_by_key(|&i| {
                let t = per_node[i].traffic;
                (t.frames(), t.bytes(), std::cmp::Reverse(i))
            })
            .unwrap_or(0);
        let total = per_node.iter().fold(Traffic::default(), |mut t, p| {
            t.frames_sent += p.traffic.frames_sent;
            t.bytes_sent += p.traffic.bytes_sent;
            t.frames_received += p.traffic.frames_received;
            t.bytes_received += p.traffic.bytes_received;
            t
        });

        SimReport {
            topology: self.config.topology,
            replicas: n,
            seed: self.config.seed,
            links: self.links.len(),
            end_ms: self.now,
            quiescent: self.in_flight == 0,
            converged,
            groups,
            edits,
            edits_skipped: self.edits_skipped,
            edits_everywhere,
            edits_lost,
            pending_ops,
            latency: Latency::of(latencies),
            main_group,
            main_group_latency: Latency::of(main_latencies),
            traffic: total,
            frames_lost: self.frames_lost,
            frames_cut: self.frames_cut,
            frames_duplicated: self.frames_duplicated,
            frames_suppressed: self.frames_suppressed,
            frames_by_type: FramesByType {
                hello: self.frames_by_type[1],
                delta: self.frames_by_type[2],
                ack: self.frames_by_type[3],
                other: self.frames_by_type[0] + self.frames_by_type[4] + self.frames_by_type[5],
            },
            busiest,
            per_node,
            errors,
        }
    }
}

fn add_stats(into: &mut SessionStats, s: &SessionStats) {
    into.frames_sent += s.frames_sent;
    into.bytes_sent += s.bytes_sent;
    into.frames_received += s.frames_received;
    into.bytes_received += s.bytes_received;
    into.ops_applied += s.ops_applied;
    into.ops_duplicate += s.ops_duplicate;
}

/// Runs `config` to its end.
///
/// # Panics
///
/// If the configuration is invalid (see [`SimConfig::validate`]).
pub fn run(config: &SimConfig) -> SimReport {
    let mut sim = Sim::new(config);
    sim.run_to_end();
    sim.report()
}

// ------------------------------------------------------------------ the workload

const WORDS: [&str; 8] = ["a", "hello ", "é", "🙂", "xyz", "Ωmega ", "\n", "tab\t"];

/// One transaction of random edits on `node`'s document, committed. Mostly one
/// operation kind; sometimes several edits in one transaction.
fn random_edit(
    node: &mut Node,
    rng: &mut Rng,
    now: u64,
) -> Result<Option<chorus_doc::Change>, chorus_doc::EditError> {
    let edits = if rng.chance(0.1) { 2 + rng.index(3) } else { 1 };
    let mut tx = node.transact();
    for _ in 0..edits {
        match rng.below(12) {
            0..=2 => {
                let mut t = tx.text("text");
                let pos = rng.index(t.len() + 1);
                t.insert(pos, WORDS[rng.index(WORDS.len())])?;
            }
            3 => {
                let mut t = tx.text("text");
                let len = t.len();
                if len > 0 {
                    let pos = rng.index(len);
                    let n = 1 + rng.index((len - pos).min(4));
                    t.delete(pos, n)?;
                } else {
                    t.insert(0, "x")?;
                }
            }
            4 => {
                let d = rng.below(11) as i64 - 5;
                tx.counter("count").add(if d == 0 { 1 } else { d })?;
            }
            5 => {
                let key = format!("k{}", rng.below(4));
                let mut m = tx.map("meta");
                // (Deleting a missing key makes no operation: set it instead.)
                if rng.chance(0.2) && m.get(&key).is_some() {
                    m.delete(&key)?;
                } else {
                    m.set(&key, rng.below(1000) as i64)?;
                }
            }
            6 => {
                let mut m = tx.map("meta");
                match rng.below(5) {
                    0 => {
                        let key = format!("n{}", rng.below(3));
                        m.map("nested")?.set(&key, WORDS[rng.index(WORDS.len())])?;
                    }
                    1 => m.list("items")?.push(rng.below(100) as i64)?,
                    2 => {
                        let mut t = m.text("note")?;
                        let pos = rng.index(t.len() + 1);
                        t.insert(pos, WORDS[rng.index(WORDS.len())])?;
                    }
                    3 => m.counter("hits")?.add(1)?,
                    // A value where others may be making a container: the container
                    // is recreated by the next nested edit here.
                    _ => m.set("nested", "flat")?,
                }
            }
            7 | 8 => {
                let mut l = tx.list("todo");
                let len = l.len();
                if len > 0 && rng.chance(0.25) {
                    l.delete(rng.index(len), 1)?;
                } else {
                    l.insert(rng.index(len + 1), format!("item {}", rng.below(100)))?;
                }
            }
            9 | 10 => {
                let v = format!("title {}", rng.below(100));
                tx.register("title", Rule::Lww).set(v, now)?;
            }
            _ => {
                let v = ["todo", "doing", "done", "blocked"][rng.index(4)];
                tx.register("status", Rule::MultiValue).set(v, now)?;
            }
        }
    }
    Ok(tx.commit())
}

// ------------------------------------------------------------------ the report

/// Convergence latencies of edits (ms): from an edit's commit until every live
/// replica had it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// The number of edits measured.
    pub count: usize,
    /// The median.
    pub p50_ms: u64,
    /// The 99th percentile (nearest rank).
    pub p99_ms: u64,
    /// The slowest.
    pub max_ms: u64,
    /// The mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(mut v: Vec<u64>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Latency {
            count: v.len(),
            p50_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: v[v.len() - 1],
            mean_ms: v.iter().sum::<u64>() as f64 / v.len() as f64,
        }
    }
}

/// One replica at the end of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeReport {
    /// Whether it is up at the end.
    pub up: bool,
    /// Its links in the topology.
    pub links: usize,
    /// What it sent and received.
    pub traffic: Traffic,
    /// Operations it applied from its links.
    pub ops_applied: u64,
    /// Operations it received that it already had (redundant paths, duplicates).
    pub ops_duplicate: u64,
    /// Its document's version.
    pub version: VersionVector,
    /// Operations waiting for missing dependencies.
    pub pending: usize,
    /// Its document as JSON.
    pub json: serde_json::Value,
    /// Its document's invariant check.
    pub check: Result<(), String>,
}

/// Frames sent, by message type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramesByType {
    /// `Hello`s: link openings and repairs.
    pub hello: u64,
    /// `Delta`s: operations.
    pub delta: u64,
    /// `Ack`s.
    pub ack: u64,
    /// Anything else (errors).
    pub other: u64,
}

/// What a run measured. `Display` prints it as a table.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// The topology.
    pub topology: Topology,
    /// The number of replicas.
    pub replicas: usize,
    /// The seed.
    pub seed: u64,
    /// The number of links.
    pub links: usize,
    /// When the run ended (simulated ms).
    pub end_ms: u64,
    /// Nothing was in flight at the end.
    pub quiescent: bool,
    /// Every live replica has the same version and document and passes its
    /// invariant check. (Some may still hold operations waiting for dependencies that
    /// no live replica has: see [`pending_ops`](Self::pending_ops).)
    pub converged: bool,
    /// The live replicas grouped by equal state (one group when converged).
    pub groups: Vec<Vec<usize>>,
    /// Edits committed.
    pub edits: usize,
    /// Edits not made because their replica was down.
    pub edits_skipped: usize,
    /// Edits every live replica has.
    pub edits_everywhere: usize,
    /// Edits no live replica has (made by a replica that crashed before passing
    /// them on, and lost with it).
    pub edits_lost: usize,
    /// Operations waiting for missing dependencies on live replicas at the end. In a
    /// converged run these can never be applied: what they wait for was lost with a
    /// replica that crashed before passing it on.
    pub pending_ops: usize,
    /// Convergence latency over the edits every live replica has.
    pub latency: Latency,
    /// The largest group of live replicas with equal state (all of them when
    /// converged).
    pub main_group: Vec<usize>,
    /// Convergence latency within [`main_group`](Self::main_group): over the edits
    /// all of its replicas have, until the last of them had it.
    pub main_group_latency: Latency,
    /// Every replica's traffic, summed.
    pub traffic: Traffic,
    /// Frames lost at random.
    pub frames_lost: u64,
    /// Frames dropped by partitioned or failed links.
    pub frames_cut: u64,
    /// Frames delivered twice.
    pub frames_duplicated: u64,
    /// `Delta`s the downstream end of a one-way link did not send.
    pub frames_suppressed: u64,
    /// The frames sent, by message type.
    pub frames_by_type: FramesByType,
    /// The replica that handled the most frames.
    pub busiest: usize,
    /// Each replica.
    pub per_node: Vec<NodeReport>,
    /// Protocol errors, edits that failed, invariant violations: all bugs.
    pub errors: Vec<String>,
}

impl SimReport {
    /// The smallest and largest number of links of a replica.
    pub fn links_per_node(&self) -> (usize, usize) {
        let l = self.per_node.iter().map(|p| p.links);
        (l.clone().min().unwrap_or(0), l.max().unwrap_or(0))
    }

    /// The live replicas.
    pub fn live(&self) -> usize {
        self.per_node.iter().filter(|p| p.up).count()
    }

    /// Operations received twice or more, over all replicas.
    pub fn ops_duplicate(&self) -> u64 {
        self.per_node.iter().map(|p| p.ops_duplicate).sum()
    }
}

/// `1234567` → `"1.23 MB"`.
pub fn human_bytes(b: u64) -> String {
    match b {
        0..1_000 => format!("{b} B"),
        1_000..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} MB", b as f64 / 1e6),
        _ => format!("{:.2} GB", b as f64 / 1e9),
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.live();
        writeln!(
            f,
            "{} of {} replicas, seed {}: ended at {} ms{}",
            self.topology,
            self.replicas,
            self.seed,
            self.end_ms,
            if self.quiescent {
                ""
            } else {
                " (frames still in flight)"
            }
        )?;
        let sizes: Vec<String> = self.groups.iter().map(|g| g.len().to_string()).collect();
        writeln!(
            f,
            "  converged             {} ({live} live replicas in {} group{} of {})",
            if self.converged { "yes" } else { "NO" },
            self.groups.len(),
            if self.groups.len() == 1 { "" } else { "s" },
            sizes.join(" + ")
        )?;
        writeln!(
            f,
            "  edits                 {} made, {} reached every live replica, {} lost, {} skipped (replica down)",
            self.edits, self.edits_everywhere, self.edits_lost, self.edits_skipped
        )?;
        if self.pending_ops > 0 {
            writeln!(
                f,
                "  waiting ops           {} (their dependencies are missing)",
                self.pending_ops
            )?;
        }
        let l = &self.latency;
        writeln!(
            f,
            "  convergence latency   p50 {} ms, p99 {} ms, max {} ms, mean {:.0} ms",
            l.p50_ms, l.p99_ms, l.max_ms, l.mean_ms
        )?;
        if self.groups.len() > 1 {
            let l = &self.main_group_latency;
            writeln!(
                f,
                "  in the largest group  {} replicas; {} edits reached them all: p50 {} ms, p99 {} ms, max {} ms",
                self.main_group.len(),
                l.count,
                l.p50_ms,
                l.p99_ms,
                l.max_ms
            )?;
        }
        let by = &self.frames_by_type;
        writeln!(
            f,
            "  frames sent           {} ({}: {} Hello, {} Delta, {} other), lost {}, cut {}, duplicated {}, not sent one-way {}",
            self.traffic.frames_sent,
            human_bytes(self.traffic.bytes_sent),
            by.hello,
            by.delta,
            by.ack + by.other,
            self.frames_lost,
            self.frames_cut,
            self.frames_duplicated,
            self.frames_suppressed
        )?;
        let (lo, hi) = self.links_per_node();
        writeln!(
            f,
            "  links                 {} (per replica: {lo}–{hi})",
            self.links
        )?;
        writeln!(
            f,
            "  ops applied           {} from links, {} received again",
            self.per_node.iter().map(|p| p.ops_applied).sum::<u64>(),
            self.ops_duplicate()
        )?;
        if let Some(b) = self.per_node.get(self.busiest) {
            writeln!(
                f,
                "  busiest replica       #{}: {} frames, {} sent + received",
                self.busiest,
                b.traffic.frames(),
                human_bytes(b.traffic.bytes())
            )?;
        }
        writeln!(
            f,
            "  {:>7} {:>4} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
            "replica",
            "up",
            "links",
            "frames out",
            "bytes out",
            "frames in",
            "bytes in",
            "applied",
            "twice"
        )?;
        for (i, p) in self.per_node.iter().enumerate() {
            writeln!(
                f,
                "  {:>7} {:>4} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
                i,
                if p.up { "yes" } else { "no" },
                p.links,
                p.traffic.frames_sent,
                p.traffic.bytes_sent,
                p.traffic.frames_received,
                p.traffic.bytes_received,
                p.ops_applied,
                p.ops_duplicate
            )?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_uniform_enough() {
        let mut r = Rng::new(7, 0);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[r.index(10)] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (9_000..11_000).contains(&b)),
            "{buckets:?}"
        );
        let hits = (0..100_000).filter(|_| r.chance(0.25)).count();
        assert!((24_000..26_000).contains(&hits));
        assert!(!r.chance(0.0));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let l = Latency::of((1..=100).collect());
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50, 99, 100));
        let l = Latency::of(vec![5]);
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (5, 5, 5));
    }
}

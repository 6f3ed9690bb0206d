//! Sessions: handshake, resync after reconnects, loss repair, protocol errors.

use std::collections::VecDeque;

use chorus_doc::{Doc, ReplicaId};
use chorus_sync::{LinkId, Message, Node, ProtocolError};

fn node(n: u128) -> Node {
    Node::new("doc-1", Doc::new(ReplicaId::from_u128(n)))
}

fn type_text(n: &mut Node, pos: usize, s: &str) {
    let mut tx = n.transact();
    tx.text("t").insert(pos, s).unwrap();
    tx.commit();
}

fn text(n: &Node) -> String {
    n.doc().text("t").to_string()
}

/// Two nodes joined by link 0 (a's end) and link 1 (b's end); frames go through a FIFO
/// queue; `drop` says which frame numbers are lost.
struct Pair {
    nodes: [Node; 2],
    queue: VecDeque<(usize, Vec<u8>)>,
    sent: usize,
    drop: Vec<usize>,
}

impl Pair {
    fn new(a: Node, b: Node) -> Self {
        Pair {
            nodes: [a, b],
            queue: VecDeque::new(),
            sent: 0,
            drop: Vec::new(),
        }
    }

    fn push(&mut self, from: usize, out: Vec<(LinkId, Vec<u8>)>) {
        for (_, f) in out {
            let k = self.sent;
            self.sent += 1;
            if !self.drop.contains(&k) {
                self.queue.push_back((1 - from, f));
            }
        }
    }

    fn connect(&mut self) {
        self.nodes[1].accept(1);
        let out = self.nodes[0].connect(0);
        self.push(0, out);
    }

    /// Delivers until nothing is in flight.
    fn run(&mut self) {
        while let Some((to, f)) = self.queue.pop_front() {
            let link = to as LinkId;
            let (out, _) = self.nodes[to].receive(link, &f).unwrap();
            self.push(to, out);
        }
    }

    fn tick(&mut self) {
        for i in 0..2 {
            let out = self.nodes[i].tick();
            self.push(i, out);
        }
        self.run();
    }

    fn converged(&self) -> bool {
        self.nodes[0].doc().version() == self.nodes[1].doc().version()
            && self.nodes[0].doc().pending_len() == 0
            && self.nodes[1].doc().pending_len() == 0
    }

    fn duplicates(&self) -> u64 {
        self.nodes
            .iter()
            .flat_map(|n| n.links().map(|(_, s)| s.stats().ops_duplicate))
            .sum()
    }
}

fn diverged() -> (Node, Node) {
    let mut a = node(1);
    let mut b = node(2);
    type_text(&mut a, 0, "common ");
    b.doc_mut().apply_update(&a.doc().encode()).unwrap();
    type_text(&mut a, 7, "alpha");
    type_text(&mut b, 7, "beta");
    (a, b)
}

#[test]
fn replicas_that_diverged_offline_converge_with_each_op_sent_once() {
    let (a, b) = diverged();
    let mut p = Pair::new(a, b);
    p.connect();
    p.run();
    assert!(p.converged());
    assert_eq!(text(&p.nodes[0]), text(&p.nodes[1]));
    assert_eq!(p.duplicates(), 0, "an op went over the link twice");
    // Hello both ways, a Delta both ways.
    assert_eq!(p.sent, 4);
    // Quiet afterwards: a tick of an in-sync link sends only the confirming Hellos
    // once, then nothing.
    p.tick();
    let after = p.sent;
    p.tick();
    assert_eq!(p.sent, after, "an idle link keeps talking");
}

#[test]
fn local_changes_stream_and_each_op_goes_once() {
    let (a, b) = diverged();
    let mut p = Pair::new(a, b);
    p.connect();
    p.run();
    for i in 0..20 {
        let who = i % 2;
        let len = p.nodes[who].doc().text("t").len();
        type_text(&mut p.nodes[who], len, "x");
        let out = p.nodes[who].committed();
        p.push(who, out);
        p.run();
    }
    assert!(p.converged());
    assert_eq!(p.duplicates(), 0);
}

#[test]
fn reconnect_resyncs_without_duplicating_content() {
    let (a, b) = diverged();
    let mut p = Pair::new(a, b);
    p.connect();
    p.run();
    let synced = text(&p.nodes[0]);
    // The link drops; both keep editing; a new link.
    p.nodes[0].disconnect(0);
    p.nodes[1].disconnect(1);
    type_text(&mut p.nodes[0], 0, "[a]");
    type_text(&mut p.nodes[1], 0, "[b]");
    p.connect();
    p.run();
    assert!(p.converged());
    let t = text(&p.nodes[0]);
    assert_eq!(t, text(&p.nodes[1]));
    assert_eq!(
        t.len(),
        synced.len() + 6,
        "content duplicated or lost: {t:?}"
    );
    assert_eq!(p.duplicates(), 0);
}

#[test]
fn one_lost_frame_anywhere_is_repaired_within_bounded_extra_frames() {
    // The baseline: a sync with local edits streaming, nothing lost.
    fn scenario(drop: Option<usize>) -> (usize, bool, usize) {
        let (a, b) = diverged();
        let mut p = Pair::new(a, b);
        p.drop = drop.into_iter().collect();
        p.connect();
        p.run();
        for i in 0..4 {
            let who = i % 2;
            type_text(&mut p.nodes[who], 0, "y");
            let out = p.nodes[who].committed();
            p.push(who, out);
            p.run();
        }
        let mut ticks = 0;
        while !p.converged() && ticks < 10 {
            p.tick();
            ticks += 1;
        }
        // Settle: the last ticks' confirmations.
        p.tick();
        p.tick();
        let ok = p.converged() && text(&p.nodes[0]) == text(&p.nodes[1]);
        (p.sent, ok, ticks)
    }
    let (base, ok, _) = scenario(None);
    assert!(ok);
    for k in 0..base {
        let (sent, ok, ticks) = scenario(Some(k));
        assert!(ok, "frame {k} lost: no convergence");
        assert!(ticks <= 2, "frame {k} lost: {ticks} ticks to repair");
        assert!(
            sent <= base + 8,
            "frame {k} lost: {sent} frames against {base} without loss"
        );
    }
}

#[test]
fn protocol_errors_have_stable_codes() {
    let mut a = node(1);
    a.accept(0);
    // A Delta before the Hello.
    let delta = Message::Delta {
        version: Default::default(),
        update: node(2).doc().encode(),
    }
    .encode();
    let e = a.receive(0, &delta).unwrap_err();
    assert!(matches!(e, ProtocolError::Unexpected(_)));
    assert_eq!(e.code(), 8);
    // Another document.
    let mut other = Node::new("doc-2", Doc::new(ReplicaId::from_u128(3)));
    let hello = other.connect(0).remove(0).1;
    let e = a.receive(0, &hello).unwrap_err();
    assert_eq!(e.code(), 6);
    // Unknown framing version, unknown type, empty frame.
    assert_eq!(a.receive(0, &[9, 1]).unwrap_err().code(), 2);
    assert_eq!(a.receive(0, &[1, 77]).unwrap_err().code(), 3);
    assert_eq!(a.receive(0, &[]).unwrap_err().code(), 1);
    // A bad update leaves the document unchanged.
    let mut b = node(4);
    b.accept(0);
    let hello = node(5).connect(0).remove(0).1;
    b.receive(0, &hello).unwrap();
    let before = b.doc().encode();
    let bad = Message::Delta {
        version: Default::default(),
        update: vec![b'C', b'H', b'R', b'S', 2, 0xff],
    }
    .encode();
    let e = b.receive(0, &bad).unwrap_err();
    assert_eq!(e.code(), 9);
    assert_eq!(b.doc().encode(), before);
    // The error frame round-trips.
    let m = Message::error(&e);
    assert_eq!(Message::decode(&m.encode()).unwrap(), m);
}

/// Where a node's link leads: (node, that node's link).
type Route = fn(LinkId) -> (u128, LinkId);

#[test]
fn a_node_forwards_deltas_computed_for_each_peer() {
    // a — b — c: b learns a's ops and forwards them to c, which also lacks b's own.
    let mut a = node(1);
    let mut b = node(2);
    let mut c = node(3);
    type_text(&mut b, 0, "b's own ");
    // Links: a:0 ↔ b:10, b:11 ↔ c:0.
    let mut queue: VecDeque<(u128, LinkId, Vec<u8>)> = VecDeque::new();
    b.accept(10);
    for (_, f) in a.connect(0) {
        queue.push_back((2, 10, f));
    }
    c.accept(0);
    for (_, f) in b.connect(11) {
        queue.push_back((3, 0, f));
    }
    let mut from_a: Vec<Vec<u8>> = Vec::new();
    let mut to_c: Vec<Vec<u8>> = Vec::new();
    let mut step = |queue: &mut VecDeque<(u128, LinkId, Vec<u8>)>,
                    a: &mut Node,
                    b: &mut Node,
                    c: &mut Node| {
        while let Some((to, link, f)) = queue.pop_front() {
            let (n, back): (&mut Node, Route) = match to {
                1 => (&mut *a, |_| (2, 10)),
                2 => (&mut *b, |l| if l == 10 { (1, 0) } else { (3, 0) }),
                _ => (&mut *c, |_| (2, 11)),
            };
            if to == 2 && link == 10 {
                from_a.push(f.clone());
            }
            let (out, _) = n.receive(link, &f).unwrap();
            for (l, g) in out {
                let (dest, dest_link) = back(l);
                if to == 2 && dest == 3 {
                    to_c.push(g.clone());
                }
                queue.push_back((dest, dest_link, g));
            }
        }
    };
    step(&mut queue, &mut a, &mut b, &mut c);
    type_text(&mut a, 0, "from a ");
    for (_, f) in a.committed() {
        queue.push_back((2, 10, f));
    }
    step(&mut queue, &mut a, &mut b, &mut c);
    assert_eq!(text(&c), text(&a));
    assert_eq!(text(&c), text(&b));
    assert!(text(&c).contains("from a") && text(&c).contains("b's own"));
    assert!(!from_a.is_empty() && !to_c.is_empty());
    // What b sent c was made by b for c: b's own version, and nothing c had already.
    let b_id = b.doc().replica_id();
    for f in &to_c {
        if let Ok(chorus_sync::Message::Delta { version, .. }) = chorus_sync::Message::decode(f) {
            assert!(version.get(&b_id) > 0, "a Delta to c that b did not make");
        }
    }
    let dup: u64 = c.links().map(|(_, s)| s.stats().ops_duplicate).sum();
    assert_eq!(dup, 0, "c got operations it had");
}

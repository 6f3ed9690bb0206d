//! Awareness: presence states converge, the highest clock wins, silent replicas expire,
//! relays remove disconnected clients, and hostile peers cannot exhaust memory.

use chorus_doc::ReplicaId;
use chorus_sync::{Awareness, AwarenessChange, AwarenessEntry, Message};
use serde_json::{Value, json};

const T: u64 = Awareness::DEFAULT_TIMEOUT_MS;

fn id(n: u128) -> ReplicaId {
    ReplicaId::from_u128(n)
}

fn aw(n: u128) -> Awareness {
    Awareness::new(id(n), T)
}

fn user(name: &str) -> Value {
    json!({ "user": name, "color": "#f00", "cursor": { "anchor": 3, "head": 5 } })
}

/// The entries of a message, after a trip through bytes (as over a real link).
fn wire(m: &Message) -> Vec<AwarenessEntry> {
    let decoded = Message::decode(&m.encode()).expect("an awareness frame decodes");
    assert_eq!(&decoded, m, "awareness frames round-trip");
    match decoded {
        Message::Awareness(entries) => entries,
        other => panic!("expected an Awareness message, got {other:?}"),
    }
}

fn deliver(to: &mut Awareness, m: &Message, now: u64) -> AwarenessChange {
    to.apply(&wire(m), now)
}

fn states(a: &Awareness) -> Vec<(ReplicaId, Value)> {
    let mut v: Vec<_> = a.states().map(|(r, s)| (r, s.clone())).collect();
    v.sort_by_key(|(r, _)| *r);
    v
}

fn entry(replica: ReplicaId, clock: u64, state: Option<Value>) -> AwarenessEntry {
    AwarenessEntry {
        replica,
        clock,
        state,
    }
}

#[test]
fn two_replicas_converge() {
    let (mut a, mut b) = (aw(1), aw(2));
    let ma = a.set_local(user("Ann"), 0);
    let mb = b.set_local(user("Bob"), 0);
    let cb = deliver(&mut b, &ma, 5);
    let ca = deliver(&mut a, &mb, 5);
    assert_eq!(cb.added, vec![id(1)]);
    assert_eq!(ca.added, vec![id(2)]);
    assert!(cb.updated.is_empty() && cb.removed.is_empty() && !cb.is_empty());
    assert_eq!(states(&a), states(&b));
    assert_eq!(states(&a).len(), 2);
    assert_eq!(b.get(&id(1)), Some(&user("Ann")));
    assert_eq!(a.local_state(), Some(&user("Ann")));
    assert_eq!(a.get(&id(1)), Some(&user("Ann")));

    // A change of state is an update.
    let ma = a.set_local(json!({ "user": "Ann", "color": "#0f0" }), 100);
    let cb = deliver(&mut b, &ma, 105);
    assert_eq!(cb.updated, vec![id(1)]);
    assert_eq!(b.get(&id(1)).unwrap()["color"], "#0f0");
    assert_eq!(b.clock(&id(1)), a.clock(&id(1)));
}

#[test]
fn three_replicas_in_a_mesh_converge() {
    let mut r = [aw(1), aw(2), aw(3)];
    let names = ["Ann", "Bob", "Cy"];
    let mut msgs = Vec::new();
    for (i, a) in r.iter_mut().enumerate() {
        msgs.push((i, a.set_local(user(names[i]), 0)));
    }
    // Delivered in reverse order, each to the two others.
    for (from, m) in msgs.iter().rev() {
        for (to, a) in r.iter_mut().enumerate() {
            if to != *from {
                deliver(a, m, 1);
            }
        }
    }
    for a in &r {
        assert_eq!(states(a), states(&r[0]));
        assert_eq!(states(a).len(), 3);
    }
}

/// A line a – b – c: b forwards what it took, so a and c see each other, renewals keep
/// them alive through b, and forwarding stops (nothing comes back to b as new).
#[test]
fn a_forwarding_node_joins_a_line() {
    let (mut a, mut b, mut c) = (aw(1), aw(2), aw(3));
    let mut now = 0;
    let ma = a.set_local(user("Ann"), now);
    let mc = c.set_local(user("Cy"), now);
    let change = deliver(&mut b, &ma, now);
    let fwd = b.encode(change.replicas()).expect("something to forward");
    assert_eq!(deliver(&mut c, &fwd, now).added, vec![id(1)]);
    let change = deliver(&mut b, &mc, now);
    let fwd = b.encode(change.replicas()).unwrap();
    assert_eq!(deliver(&mut a, &fwd, now).added, vec![id(3)]);

    // The same message again is not taken, so there is nothing to forward.
    let change = deliver(&mut b, &ma, now);
    assert_eq!(change, AwarenessChange::default());
    assert!(b.encode(change.replicas()).is_none());

    // For two minutes a and c renew through b; nobody expires.
    let mut ends = [a, c];
    while now < 4 * T {
        now += 1_000;
        for i in 0..2 {
            if let (_, Some(m)) = ends[i].tick(now) {
                let change = deliver(&mut b, &m, now);
                assert_eq!(change.renewed.len(), 1, "a renewal is taken");
                assert!(change.is_empty(), "a renewal changes nothing visible");
                let fwd = b.encode(change.replicas()).unwrap();
                deliver(&mut ends[1 - i], &fwd, now);
            }
        }
        for x in ends.iter_mut().chain([&mut b]) {
            let (change, _) = x.tick(now);
            assert!(change.is_empty(), "nothing expires at {now}: {change:?}");
        }
    }
    let [a, c] = ends;
    assert_eq!(states(&a), states(&c));
    assert_eq!(states(&a).len(), 2);
    assert_eq!(states(&b).len(), 2);
}

#[test]
fn the_highest_clock_wins_in_any_order() {
    let mut a = aw(1);
    let m1 = a.set_local(user("first"), 0);
    let m2 = a.set_local(user("second"), 1);
    let m3 = a.set_local(user("third"), 2);
    let orders = [
        [&m1, &m2, &m3],
        [&m3, &m2, &m1],
        [&m2, &m3, &m1],
        [&m3, &m1, &m2],
    ];
    for order in orders {
        let mut b = aw(2);
        for m in order {
            deliver(&mut b, m, 10);
        }
        assert_eq!(b.get(&id(1)), Some(&user("third")));
        assert_eq!(b.clock(&id(1)), Some(3));
    }

    // Older and duplicate entries are ignored, and reported as no change.
    let mut b = aw(2);
    assert_eq!(deliver(&mut b, &m2, 10).added, vec![id(1)]);
    assert_eq!(deliver(&mut b, &m1, 11), AwarenessChange::default());
    assert_eq!(deliver(&mut b, &m2, 12), AwarenessChange::default());
    assert_eq!(b.get(&id(1)), Some(&user("second")));
    assert_eq!(deliver(&mut b, &m3, 13).updated, vec![id(1)]);
}

#[test]
fn several_entries_for_one_replica_in_one_message_are_one_change() {
    let mut b = aw(2);
    let m = Message::Awareness(vec![
        entry(id(1), 1, Some(user("a"))),
        entry(id(1), 3, Some(user("c"))),
        entry(id(1), 2, Some(user("b"))),
    ]);
    let change = deliver(&mut b, &m, 0);
    assert_eq!(change.added, vec![id(1)]);
    assert!(change.updated.is_empty() && change.renewed.is_empty());
    assert_eq!(b.get(&id(1)), Some(&user("c")));

    // Appearing and leaving within one message: nothing to show.
    let mut c = aw(3);
    let m = Message::Awareness(vec![
        entry(id(1), 1, Some(user("a"))),
        entry(id(1), 1, None),
    ]);
    let change = deliver(&mut c, &m, 0);
    assert!(change.is_empty());
    assert_eq!(change.renewed, vec![id(1)]);
    assert!(c.get(&id(1)).is_none());
}

#[test]
fn silent_replicas_expire() {
    let (mut a, mut b) = (aw(1), aw(2));
    deliver(&mut b, &a.set_local(user("Ann"), 0), 1_000);
    assert!(b.tick(1_000 + T - 1).0.is_empty());
    assert!(b.get(&id(1)).is_some());
    let (change, msg) = b.tick(1_000 + T);
    assert_eq!(change.removed, vec![id(1)]);
    assert!(msg.is_none(), "b has no state of its own to renew");
    assert!(b.get(&id(1)).is_none());
    assert_eq!(b.states().count(), 0);

    // A stale copy of the expired state stays dead; a renewal brings it back.
    let stale = Message::Awareness(vec![entry(id(1), 1, Some(user("Ann")))]);
    assert!(deliver(&mut b, &stale, 1_000 + T + 1).is_empty());
    assert!(b.get(&id(1)).is_none());
    let (_, renewal) = a.tick(1_000 + T + 2);
    let renewal = renewal.expect("a renews after timeout / 2");
    assert_eq!(deliver(&mut b, &renewal, 1_000 + T + 3).added, vec![id(1)]);

    // A remembered removal is forgotten after another timeout.
    let (change, _) = b.tick(10 * T);
    assert_eq!(change.removed, vec![id(1)]);
    assert_eq!(b.clock(&id(1)), Some(2));
    let (change, _) = b.tick(11 * T);
    assert!(change.is_empty());
    assert_eq!(b.clock(&id(1)), None);
}

#[test]
fn renewals_keep_a_replica_alive() {
    let (mut a, mut b) = (aw(1), aw(2));
    deliver(&mut b, &a.set_local(user("Ann"), 0), 0);
    assert!(a.tick(T / 2 - 1).1.is_none(), "too early to renew");
    let mut renewals = 0;
    let mut now = 0;
    while now < 10 * T {
        now += 1_000;
        if let (_, Some(m)) = a.tick(now) {
            renewals += 1;
            let change = deliver(&mut b, &m, now);
            assert_eq!(change.renewed, vec![id(1)]);
        }
        assert!(b.tick(now).0.is_empty(), "b keeps a at {now}");
    }
    assert_eq!(renewals, 20, "one renewal every timeout / 2");
    assert_eq!(b.get(&id(1)), Some(&user("Ann")));
    assert_eq!(b.clock(&id(1)), Some(21));

    // Without a state there is nothing to renew.
    let mut c = aw(3);
    assert!(c.tick(10 * T).1.is_none());
}

#[test]
fn the_same_state_again_keeps_a_replica_alive() {
    let (mut a, mut b, mut c) = (aw(1), aw(2), aw(3));
    let m = a.set_local(user("Ann"), 0);
    deliver(&mut b, &m, 0);
    // c learns of a through b's full state, at the same clock, later on.
    deliver(&mut c, &m, 0);
    let all = b.encode_all().unwrap();
    assert!(deliver(&mut c, &all, T - 10).is_empty());
    assert!(c.tick(T).0.is_empty(), "refreshed at T - 10");
    assert_eq!(c.tick(2 * T).0.removed, vec![id(1)]);
}

#[test]
fn clear_local_removes_us_everywhere() {
    let (mut a, mut b, mut c) = (aw(1), aw(2), aw(3));
    let hello = a.set_local(user("Ann"), 0);
    deliver(&mut b, &hello, 0);
    deliver(&mut c, &hello, 0);
    let bye = a.clear_local(5);
    assert_eq!(a.local_state(), None);
    assert_eq!(a.states().count(), 0);
    assert_eq!(wire(&bye), vec![entry(id(1), 2, None)]);
    assert_eq!(deliver(&mut b, &bye, 6).removed, vec![id(1)]);
    assert!(b.get(&id(1)).is_none());
    // Delivered out of order, the stale state does not bring a back.
    assert!(deliver(&mut c, &bye, 6).removed == vec![id(1)]);
    assert!(deliver(&mut c, &hello, 7).is_empty());
    assert!(c.get(&id(1)).is_none());
    // And a with no state renews nothing.
    assert!(a.tick(10 * T).1.is_none());

    // Setting a `null` state is clearing it; a received `null` is a removal.
    let mut d = aw(4);
    deliver(&mut d, &a.set_local(user("Ann"), 20), 20);
    let null = a.set_local(Value::Null, 21);
    assert_eq!(wire(&null)[0].state, None);
    assert_eq!(deliver(&mut d, &null, 21).removed, vec![id(1)]);
    let mut e = aw(5);
    deliver(
        &mut e,
        &Message::Awareness(vec![entry(id(9), 1, Some(json!(1)))]),
        0,
    );
    let change = deliver(
        &mut e,
        &Message::Awareness(vec![entry(id(9), 2, Some(Value::Null))]),
        0,
    );
    assert_eq!(change.removed, vec![id(9)]);
}

#[test]
fn a_relay_removes_a_disconnected_client() {
    let (mut a, mut relay, mut b) = (aw(1), aw(100), aw(2));
    let ma = a.set_local(user("Ann"), 0);
    deliver(&mut relay, &ma, 0);
    deliver(&mut b, &ma, 0);

    // a's connection drops without a goodbye.
    let before = relay.removal_message(id(1));
    let change = relay.remove_replica(id(1), 10);
    assert_eq!(change.removed, vec![id(1)]);
    let after = relay.removal_message(id(1));
    assert_eq!(
        before, after,
        "the same message before and after remove_replica"
    );
    assert_eq!(wire(&after), vec![entry(id(1), 2, None)]);
    assert_eq!(deliver(&mut b, &after, 11).removed, vec![id(1)]);
    assert!(b.get(&id(1)).is_none());
    assert!(relay.get(&id(1)).is_none());
    // Removing again changes nothing.
    assert!(relay.remove_replica(id(1), 12).is_empty());
    // Not ourselves, and not a replica never seen.
    assert!(relay.remove_replica(id(100), 12).is_empty());
    assert!(relay.remove_replica(id(77), 12).is_empty());
    assert_eq!(
        wire(&relay.removal_message(id(77))),
        vec![entry(id(77), 0, None)]
    );

    // a reconnects: its old clock is below the relay's removal, so its state is
    // ignored — until it learns of the removal from the relay's full state and
    // re-announces itself above it.
    assert!(deliver(&mut relay, &a.encode_all().unwrap(), 20).is_empty());
    deliver(&mut a, &relay.encode_all().unwrap(), 20);
    assert_eq!(a.local_state(), Some(&user("Ann")), "our state is ours");
    let (_, again) = a.tick(21);
    let again = again.expect("a re-announces after seeing its removal");
    assert_eq!(wire(&again), vec![entry(id(1), 3, Some(user("Ann")))]);
    let change = deliver(&mut relay, &again, 22);
    assert_eq!(change.added, vec![id(1)]);
    let fwd = relay.encode(change.replicas()).unwrap();
    assert_eq!(deliver(&mut b, &fwd, 22).added, vec![id(1)]);
    assert!(a.tick(23).1.is_none(), "announced once");
}

#[test]
fn a_restarted_replica_reclaims_its_presence() {
    let (mut old, mut b) = (aw(1), aw(2));
    for i in 0..5 {
        deliver(&mut b, &old.set_local(json!({ "n": i }), i), i);
    }
    assert_eq!(b.clock(&id(1)), Some(5));

    // Same replica id, clock from 0 again.
    let mut new = aw(1);
    let m = new.set_local(user("Ann again"), 100);
    assert!(deliver(&mut b, &m, 100).is_empty(), "clock 1 < 5: ignored");
    deliver(&mut new, &b.encode_all().unwrap(), 101);
    assert_eq!(new.local_state(), Some(&user("Ann again")));
    let (_, m) = new.tick(101);
    let m = m.expect("re-announce above the old clock");
    assert_eq!(deliver(&mut b, &m, 102).updated, vec![id(1)]);
    assert_eq!(b.get(&id(1)), Some(&user("Ann again")));
    assert_eq!(b.clock(&id(1)), Some(6));

    // An echo of our own current entry changes nothing.
    deliver(&mut new, &b.encode_all().unwrap(), 103);
    assert!(new.tick(104).1.is_none());
}

#[test]
fn entries_about_ourselves_never_change_our_state() {
    let mut a = aw(1);
    a.set_local(user("Ann"), 0);
    let forged = Message::Awareness(vec![entry(id(1), 1_000, Some(user("Mallory")))]);
    assert!(deliver(&mut a, &forged, 1).is_empty());
    assert_eq!(a.local_state(), Some(&user("Ann")));
    assert_eq!(a.get(&id(1)), Some(&user("Ann")));
    // Our clock jumps past it, so our state wins again at the peers.
    let (_, m) = a.tick(2);
    assert_eq!(
        wire(&m.unwrap()),
        vec![entry(id(1), 1_001, Some(user("Ann")))]
    );
    let removal = Message::Awareness(vec![entry(id(1), 1_001, None)]);
    deliver(&mut a, &removal, 3);
    assert_eq!(a.local_state(), Some(&user("Ann")));
}

#[test]
fn encode_all_brings_a_newcomer_up_to_date() {
    let (mut a, mut b, mut c) = (aw(1), aw(2), aw(3));
    assert!(a.encode_all().is_none(), "nothing to tell yet");
    let ma = a.set_local(user("Ann"), 0);
    let mb = b.set_local(user("Bob"), 0);
    deliver(&mut a, &mb, 0);
    deliver(&mut b, &ma, 0);
    // A replica that left is told about too, so it stays gone at the newcomer.
    let mut d = aw(4);
    let md = d.set_local(user("Dee"), 0);
    deliver(&mut a, &md, 0);
    deliver(&mut a, &d.clear_local(1), 1);

    let all = a.encode_all().unwrap();
    assert_eq!(wire(&all).len(), 3);
    let change = deliver(&mut c, &all, 2);
    assert_eq!(change.added, vec![id(1), id(2)]);
    assert_eq!(change.renewed, vec![id(4)]);
    assert_eq!(states(&c), states(&a));
    assert!(
        deliver(&mut c, &md, 3).is_empty(),
        "d's stale state stays dead"
    );

    // The newcomer's own full state includes itself.
    c.set_local(user("Cy"), 4);
    let change = deliver(&mut a, &c.encode_all().unwrap(), 5);
    assert_eq!(change.added, vec![id(3)]);
    assert!(change.updated.is_empty() && change.removed.is_empty());
}

#[test]
fn at_most_max_entries_replicas_are_held() {
    let mut b = aw(2).with_max_entries(2);
    let m = Message::Awareness(
        (10..15)
            .map(|n| entry(id(n), 1, Some(json!({ "n": n as u64 }))))
            .collect(),
    );
    let change = deliver(&mut b, &m, 0);
    assert_eq!(change.added, vec![id(10), id(11)]);
    assert_eq!(b.states().count(), 2);
    // Known replicas still update.
    let m = Message::Awareness(vec![
        entry(id(11), 2, Some(json!("x"))),
        entry(id(12), 2, Some(json!("y"))),
    ]);
    let change = deliver(&mut b, &m, 1);
    assert_eq!(change.updated, vec![id(11)]);
    assert!(change.added.is_empty());
    // Our own state does not count.
    b.set_local(user("Bob"), 2);
    assert_eq!(b.states().count(), 3);
    // Once some expire, there is room again.
    b.tick(T + 1);
    b.tick(2 * T + 2);
    assert_eq!(deliver(&mut b, &m, 2 * T + 3).added, vec![id(11), id(12)]);

    // The default cap holds against a flood.
    let mut c = aw(3);
    let flood: Vec<_> = (0..20_000u128)
        .map(|n| entry(id(1_000 + n), 1, Some(json!(0))))
        .collect();
    let change = c.apply(&flood, 0);
    assert_eq!(change.added.len(), Awareness::DEFAULT_MAX_ENTRIES);
    assert_eq!(c.states().count(), Awareness::DEFAULT_MAX_ENTRIES);
}

#[test]
fn oversized_states_are_ignored() {
    let mut b = aw(2);
    let big = json!({ "blob": "x".repeat(Awareness::DEFAULT_MAX_STATE_BYTES) });
    let m = Message::Awareness(vec![entry(id(1), 1, Some(big.clone()))]);
    assert!(deliver(&mut b, &m, 0).is_empty());
    assert!(b.get(&id(1)).is_none());
    assert_eq!(b.clock(&id(1)), None);

    // A held state is not replaced by an oversized one.
    deliver(
        &mut b,
        &Message::Awareness(vec![entry(id(1), 2, Some(user("Ann")))]),
        0,
    );
    deliver(
        &mut b,
        &Message::Awareness(vec![entry(id(1), 3, Some(big))]),
        0,
    );
    assert_eq!(b.get(&id(1)), Some(&user("Ann")));

    // The limit is configurable, and exact.
    let mut c = aw(3).with_max_state_bytes(7);
    let m = Message::Awareness(vec![
        entry(id(1), 1, Some(json!({ "a": 1 }))),
        entry(id(2), 1, Some(json!({ "a": 10 }))),
    ]);
    assert_eq!(deliver(&mut c, &m, 0).added, vec![id(1)]);
}

#[test]
fn hostile_clocks_and_times_do_not_panic() {
    let mut b = aw(2);
    let max = Message::Awareness(vec![
        entry(id(1), u64::MAX, Some(user("x"))),
        entry(id(2), u64::MAX, Some(user("x"))),
    ]);
    deliver(&mut b, &max, u64::MAX);
    assert_eq!(b.clock(&id(1)), Some(u64::MAX));
    // A removal at the highest clock still removes.
    let removal = b.removal_message(id(1));
    assert_eq!(wire(&removal), vec![entry(id(1), u64::MAX, None)]);
    let mut c = aw(3);
    deliver(&mut c, &max, 0);
    assert_eq!(deliver(&mut c, &removal, 0).removed, vec![id(1)]);
    assert_eq!(b.remove_replica(id(1), 0).removed, vec![id(1)]);
    // Our clock saturates too (a peer claimed we were at the highest clock).
    let m = b.set_local(user("Bob"), 0);
    assert_eq!(wire(&m)[0].clock, u64::MAX);
    // Time going backwards, or a zero timeout.
    b.tick(0);
    b.tick(u64::MAX);
    b.tick(5);
    let mut z = Awareness::new(id(4), 0);
    z.set_local(json!(1), 10);
    deliver(&mut z, &max, 10);
    let (change, m) = z.tick(10);
    assert_eq!(change.removed, vec![id(1), id(2)]);
    assert!(m.is_some());
}

#[test]
fn every_message_round_trips() {
    let mut a = aw(1);
    let mut b = aw(2);
    let msgs = [
        a.set_local(user("Ann"), 0),
        a.set_local(
            json!({ "user": "Ann", "emoji": "🎉", "n": [1, 2.5, null, true] }),
            1,
        ),
        a.clear_local(2),
        a.removal_message(id(7)),
        b.set_local(json!("just a string"), 0),
    ];
    for m in &msgs {
        wire(m);
        deliver(&mut b, m, 3);
    }
    wire(&a.encode_all().unwrap());
    wire(&b.encode_all().unwrap());
}

//! Hostile clients: every limit and every access rule closes the offending connection
//! with the right close code, an `Error` frame with the relay's code, and a reason —
//! while a client in the same room and one in another room keep working.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_doc::{Doc, ReplicaId, VersionVector};
use chorus_relay::auth::{self, Claims, Right};
use chorus_relay::{Config, serve};
use chorus_sync::{AwarenessEntry, Hello, Message, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::server::{Client, http_get};

const SECRET: &[u8] = b"a test secret, long enough";

async fn start_with(config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { serve(config, listener).await.unwrap() });
    addr
}

fn config(dir: &tempfile::TempDir) -> Config {
    Config::new(dir.path())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(doc: &str, right: Right) -> String {
    auth::mint(SECRET, &Claims::for_doc(doc, right, now() + 600))
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn raw(addr: SocketAddr, path: &str) -> Socket {
    connect_async(format!("ws://{addr}{path}")).await.unwrap().0
}

fn hello(doc: &str, replica: u128) -> Vec<u8> {
    Message::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        doc: doc.into(),
        replica: ReplicaId::from_u128(replica),
        version: VersionVector::new(),
    })
    .encode()
}

/// An update of `len` characters typed by `replica` (its ops `0..len`).
fn typed(replica: u128, len: usize) -> (Doc, Vec<u8>) {
    let mut d = Doc::new(ReplicaId::from_u128(replica));
    let mut tx = d.transact();
    tx.text("t").insert(0, &"x".repeat(len)).unwrap();
    tx.commit();
    let u = d.encode();
    (d, u)
}

fn delta(doc: &Doc, update: Vec<u8>) -> Vec<u8> {
    Message::Delta {
        version: doc.version().clone(),
        update,
    }
    .encode()
}

/// Reads until the relay closes: the `Error` frame codes seen, and the close code and
/// reason.
async fn closed(ws: &mut Socket) -> (Vec<u16>, Option<u16>, String) {
    let mut errors = Vec::new();
    let read = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Ws::Binary(f)) => {
                    if let Ok(Message::Error { code, .. }) = Message::decode(&f) {
                        errors.push(code);
                    }
                }
                Ok(Ws::Close(c)) => {
                    return c.map(|c| (u16::from(c.code), c.reason.to_string()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let close = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the relay did not close the connection");
    let (code, reason) = close.map_or((None, String::new()), |(c, r)| (Some(c), r));
    (errors, code, reason)
}

/// Asserts the connection was refused with `error` (the `Error` frame's code) and
/// `close` (the WebSocket close code).
async fn assert_refused(ws: &mut Socket, error: u16, close: u16) {
    let (errors, code, reason) = closed(ws).await;
    assert_eq!(code, Some(close), "close code (reason {reason:?})");
    assert_eq!(errors, vec![error], "Error frames (reason {reason:?})");
    assert!(!reason.is_empty(), "a close needs a reason");
}

/// A client in `doc` and one in another document both still edit and get their
/// edits acknowledged.
async fn others_unaffected(addr: SocketAddr, doc: &str, query: impl Fn(&str) -> String) {
    for (i, d) in [doc, "elsewhere"].into_iter().enumerate() {
        let url = format!("ws://{addr}/ws/{d}{}", query(d));
        let mut c = Client::connect_url(&url, d, 9000 + i as u128).await;
        c.type_text("still fine").await;
        for _ in 0..100 {
            c.pump(20).await;
            if c.acked.dominates(c.node.doc().version()) && c.text().contains("still fine") {
                break;
            }
        }
        assert!(c.acked.dominates(c.node.doc().version()), "no Ack in {d}");
    }
}

fn open(_: &str) -> String {
    String::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_is_closed_with_1003() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_with(config(&dir)).await;
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Text("hello".into())).await.unwrap();
    let (errors, code, _) = closed(&mut ws).await;
    assert_eq!((errors, code), (vec![], Some(1003)));
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_is_closed_with_1009() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.limits.max_frame_bytes = 4096;
    let addr = start_with(c).await;
    // Over the limit: read whole, refused with 1009.
    for size in [4097, 12_000] {
        let mut ws = raw(addr, "/ws/d").await;
        ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
        let _ = ws.send(Ws::Binary(vec![0; size].into())).await;
        assert_refused(&mut ws, 105, 1009).await;
    }
    // Far over it (beyond 4x): not even read, the connection is dropped.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    let _ = ws.send(Ws::Binary(vec![0; 1 << 20].into())).await;
    let _ = closed(&mut ws).await;
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_closed_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_with(config(&dir)).await;
    // Bytes that are no frame: 1007.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(vec![1, 77, 0].into())).await.unwrap();
    assert_refused(&mut ws, 3, 1007).await;
    // A Delta before the Hello: 1008.
    let mut ws = raw(addr, "/ws/d").await;
    let (d, u) = typed(1, 3);
    ws.send(Ws::Binary(delta(&d, u).into())).await.unwrap();
    assert_refused(&mut ws, 8, 1008).await;
    // A Hello for another document: 1008.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("other", 1).into())).await.unwrap();
    assert_refused(&mut ws, 6, 1008).await;
    // An update that does not decode: 1007.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    ws.send(Ws::Binary(delta(&d, vec![1, 2, 3, 4, 5]).into()))
        .await
        .unwrap();
    assert_refused(&mut ws, 9, 1007).await;
    // A bad document id: 1008.
    let mut ws = raw(addr, "/ws/bad%20id").await;
    assert_refused(&mut ws, 101, 1008).await;
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_frames_is_closed_by_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.limits.rate_per_sec = 5;
    c.limits.rate_burst = 10;
    let addr = start_with(c).await;
    let mut ws = raw(addr, "/ws/d").await;
    for _ in 0..30 {
        if ws.send(Ws::Binary(hello("d", 1).into())).await.is_err() {
            break;
        }
    }
    let (errors, code, _) = closed(&mut ws).await;
    assert_eq!(code, Some(1008));
    assert_eq!(errors.last(), Some(&107));
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_misses_the_handshake_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.limits.handshake = Duration::from_millis(300);
    c.tick = Duration::from_millis(50);
    let addr = start_with(c).await;
    let mut ws = raw(addr, "/ws/d").await;
    assert_refused(&mut ws, 109, 1008).await;
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_live_peers_and_idle_ones_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.limits.idle = Duration::from_millis(500);
    c.limits.ping = Duration::from_millis(100);
    let addr = start_with(c).await;
    let dir2 = tempfile::tempdir().unwrap();
    let mut c = config(&dir2);
    c.limits.idle = Duration::from_millis(300);
    let quiet = start_with(c).await;
    // A peer that reads answers the pings (tungstenite does) and stays for 1.5 s,
    // three idle timeouts.
    let mut live = raw(addr, "/ws/d").await;
    live.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    let mut pings = 0;
    let stay = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(Ok(m)) = live.next().await {
            match m {
                Ws::Ping(_) => pings += 1,
                Ws::Close(c) => panic!("a live peer was closed: {c:?}"),
                _ => {}
            }
        }
        panic!("the connection ended");
    })
    .await;
    assert!(stay.is_err(), "still connected after 1.5 s");
    assert!(pings >= 5, "only {pings} pings");
    // One that answers nothing (it does not read, so no pongs) is closed.
    let mut silent = raw(quiet, "/ws/d").await;
    silent.send(Ws::Binary(hello("d", 2).into())).await.unwrap();
    let (_, code, reason) = closed(&mut silent).await;
    assert_eq!(code, Some(1001), "{reason}");
    assert!(reason.contains("idle"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed_with_1013() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.limits.outgoing_queue = 8;
    let addr = start_with(c).await;
    let mut slow = raw(addr, "/ws/d").await;
    slow.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    // A writer sends far more than the socket buffers hold; the slow client never
    // reads.
    let mut writer = Client::connect(addr, "d", 2).await;
    for i in 0..60 {
        writer
            .type_text(&format!("{i}{}", "z".repeat(100_000)))
            .await;
        writer.pump(1).await;
    }
    for _ in 0..200 {
        writer.pump(20).await;
        if writer.acked.dominates(writer.node.doc().version()) {
            break;
        }
    }
    assert!(
        writer.acked.dominates(writer.node.doc().version()),
        "the writer's edits were all stored"
    );
    let metrics = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("chorus_closes_total{code=\"1013\"} 1"),
        "{metrics}"
    );
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_may_connect() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.auth_secret = Some(SECRET.to_vec());
    let addr = start_with(c).await;
    let expired = auth::mint(SECRET, &Claims::for_doc("d", Right::Write, now() - 3600));
    let other_doc = token("e", Right::Write);
    let forged = auth::mint(
        b"another secret, long enough",
        &Claims::for_doc("d", Right::Write, now() + 600),
    );
    for path in [
        "/ws/d".to_owned(),
        format!("/ws/d?token={expired}"),
        format!("/ws/d?token={other_doc}"),
        format!("/ws/d?token={forged}"),
        "/ws/d?token=not.a.token".to_owned(),
        // Without tokens only, a relay link is a relay link.
        "/ws/d?role=relay".to_owned(),
    ] {
        let mut ws = raw(addr, &path).await;
        assert_refused(&mut ws, 100, 1008).await;
    }
    // A prefix token opens every document under it.
    let prefix = auth::mint(
        SECRET,
        &Claims::for_prefix("team-", Right::Write, now() + 600),
    );
    let mut c = Client::connect_url(
        &format!("ws://{addr}/ws/team-x?token={prefix}"),
        "team-x",
        1,
    )
    .await;
    c.type_text("ok").await;
    for _ in 0..100 {
        c.pump(20).await;
        if c.acked.dominates(c.node.doc().version()) {
            break;
        }
    }
    assert!(c.acked.dominates(c.node.doc().version()));
    others_unaffected(addr, "d", |d| format!("?token={}", token(d, Right::Write))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_connections_receive_but_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.auth_secret = Some(SECRET.to_vec());
    let addr = start_with(c).await;
    let read = token("d", Right::Read);
    let write = token("d", Right::Write);
    let mut reader = Client::connect_url(&format!("ws://{addr}/ws/d?token={read}"), "d", 1).await;
    let mut writer = Client::connect_url(&format!("ws://{addr}/ws/d?token={write}"), "d", 2).await;
    writer.type_text("from the writer").await;
    for _ in 0..100 {
        writer.pump(10).await;
        reader.pump(10).await;
        if reader.text() == "from the writer" {
            break;
        }
    }
    assert_eq!(reader.text(), "from the writer");
    // Presence is allowed; a change is refused.
    let mut ws = raw(addr, &format!("/ws/d?token={read}")).await;
    ws.send(Ws::Binary(hello("d", 3).into())).await.unwrap();
    let entry = AwarenessEntry {
        replica: ReplicaId::from_u128(3),
        clock: 1,
        state: Some(serde_json::json!({"name": "reader"})),
    };
    ws.send(Ws::Binary(Message::Awareness(vec![entry]).encode().into()))
        .await
        .unwrap();
    let (d, u) = typed(3, 4);
    ws.send(Ws::Binary(delta(&d, u).into())).await.unwrap();
    assert_refused(&mut ws, 102, 1008).await;
    // Nothing of it reached the document.
    let mut check = Client::connect_url(&format!("ws://{addr}/ws/d?token={read}"), "d", 4).await;
    for _ in 0..50 {
        check.pump(20).await;
        if check.text() == "from the writer" {
            break;
        }
    }
    assert_eq!(check.text(), "from the writer");
    others_unaffected(addr, "d", |d| format!("?token={}", token(d, Right::Write))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_only_author_under_its_own_replica_id() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_with(config(&dir)).await;
    // Operations of another replica.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    let (d, u) = typed(7, 4);
    ws.send(Ws::Binary(delta(&d, u).into())).await.unwrap();
    assert_refused(&mut ws, 103, 1008).await;
    // Presence of another replica.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    let entry = AwarenessEntry {
        replica: ReplicaId::from_u128(8),
        clock: 1,
        state: Some(serde_json::json!({"name": "someone else"})),
    };
    ws.send(Ws::Binary(Message::Awareness(vec![entry]).encode().into()))
        .await
        .unwrap();
    assert_refused(&mut ws, 103, 1008).await;
    // A replica id already connected.
    let mut first = Client::connect(addr, "d", 5).await;
    first.pump(100).await;
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("d", 5).into())).await.unwrap();
    assert_refused(&mut ws, 104, 1013).await;
    // Once it has left, the id is free again.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut ws = raw(addr, "/ws/d").await;
        ws.send(Ws::Binary(hello("d", 5).into())).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
            Ok(Some(Ok(Ws::Binary(f)))) if matches!(Message::decode(&f), Ok(Message::Hello(_))) => {
                again = Some(ws);
                break;
            }
            _ => continue,
        }
    }
    assert!(again.is_some(), "the replica id was not freed");
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_pending_operations_have_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir);
    c.limits.max_doc_bytes = 2000;
    c.limits.max_pending_ops = 10;
    let addr = start_with(c).await;
    // Too big for the document.
    let mut ws = raw(addr, "/ws/d").await;
    ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
    let mut big = Doc::new(ReplicaId::from_u128(1));
    let mut tx = big.transact();
    // Text that does not compress.
    let mut x = 12345u64;
    let text: String = (0..8000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + (x >> 59) as u8 % 26)
        })
        .collect();
    tx.text("t").insert(0, &text).unwrap();
    tx.commit();
    let u = big.encode();
    assert!(u.len() > 2000);
    ws.send(Ws::Binary(delta(&big, u).into())).await.unwrap();
    assert_refused(&mut ws, 106, 1009).await;
    // Operations whose dependencies never come.
    let mut ws = raw(addr, "/ws/p").await;
    ws.send(Ws::Binary(hello("p", 2).into())).await.unwrap();
    let (mut d, _) = typed(2, 3);
    let base = d.version().clone();
    let mut tx = d.transact();
    tx.text("t").insert(3, &"y".repeat(20)).unwrap();
    tx.commit();
    let u = d.encode_since(&base);
    ws.send(Ws::Binary(delta(&d, u).into())).await.unwrap();
    assert_refused(&mut ws, 108, 1008).await;
    others_unaffected(addr, "p", open).await;
}

/// A panic in the relay's code (on any thread), seen by a hook.
fn relay_panics() -> &'static std::sync::atomic::AtomicUsize {
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info
                .location()
                .map(|l| l.file().to_owned())
                .unwrap_or_default();
            if !file.contains("tests/it") {
                PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    &PANICS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_never_break_the_relay() {
    use rand::{Rng, SeedableRng};
    let panics = relay_panics();
    let dir = tempfile::tempdir().unwrap();
    let addr = start_with(config(&dir)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    // Valid frames to mutate: a Hello, Deltas, an Ack, presence.
    let (d, u) = typed(1, 30);
    let samples = [
        hello("d", 1),
        delta(&d, u.clone()),
        delta(&d, d.encode_since(&VersionVector::new())),
        Message::Ack(d.version().clone()).encode(),
        Message::Awareness(vec![AwarenessEntry {
            replica: ReplicaId::from_u128(1),
            clock: 3,
            state: Some(serde_json::json!({"cursor": 4})),
        }])
        .encode(),
    ];
    let mut codes = std::collections::BTreeMap::new();
    for round in 0..150 {
        let mut ws = raw(addr, "/ws/d").await;
        if round % 2 == 0 {
            ws.send(Ws::Binary(hello("d", 1).into())).await.unwrap();
        }
        for _ in 0..3 {
            let mut f = samples[rng.random_range(0..samples.len())].clone();
            match rng.random_range(0..4) {
                0 => f = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                1 => {
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..f.len());
                        f[i] ^= 1 << rng.random_range(0..8);
                    }
                }
                2 => f.truncate(rng.random_range(0..f.len())),
                _ => {
                    let i = rng.random_range(0..f.len());
                    f[i] = rng.random();
                }
            }
            if ws.send(Ws::Binary(f.into())).await.is_err() {
                break;
            }
        }
        let _ = ws.send(Ws::Close(None)).await;
        let (_, code, _) = closed(&mut ws).await;
        *codes.entry(code).or_insert(0) += 1;
    }
    for code in codes.keys().flatten() {
        assert!(
            [1000, 1007, 1008, 1009].contains(code),
            "unexpected close code {code}: {codes:?}"
        );
    }
    assert!(codes.get(&Some(1007)).is_some_and(|&n| n > 10), "{codes:?}");
    assert_eq!(
        panics.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the relay panicked"
    );
    assert_eq!(http_get(addr, "/healthz").await.lines().last(), Some("ok"));
    others_unaffected(addr, "d", open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_only_loopback_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = serve(config(&dir), listener).await.unwrap_err();
    assert!(
        matches!(err, chorus_relay::ServeError::OpenOnPublicAddress(_)),
        "{err}"
    );
}

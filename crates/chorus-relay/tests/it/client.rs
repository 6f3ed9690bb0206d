//! chorus-client against a real relay on loopback: convergence, "saved", outages,
//! restarts from the state file, remote events.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chorus_client::{Backoff, Client, ClientConfig, ClientEvent};
use chorus_doc::{Diff, TextDelta};
use chorus_relay::{Config, serve_with_shutdown};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long any condition may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);

/// A relay that can be stopped and started again on the same address and data.
struct Relay {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(dir: &Path, addr: SocketAddr) -> Relay {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = Config::new(dir);
        let task = tokio::spawn(async move {
            let signal = async {
                let _ = stopped.await;
            };
            serve_with_shutdown(config, listener, signal).await.unwrap();
        });
        Relay {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn start_any(dir: &Path) -> Relay {
        Relay::start(dir, "127.0.0.1:0".parse().unwrap()).await
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops gracefully (rooms store, connections close with 1001) and frees the port.
    async fn stop(mut self) {
        drop(self.stop.take());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the relay stops")
            .unwrap();
    }
}

fn config(url: &str, doc: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url, doc);
    c.tick = Duration::from_millis(50);
    c.backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(300),
    };
    c
}

fn text(c: &Client) -> String {
    c.read(|d| d.text("t").to_string())
}

fn append(c: &Client, s: &str) {
    c.edit(|tx| {
        let mut t = tx.text("t");
        let end = t.len();
        t.insert(end, s)
    })
    .unwrap()
    .unwrap();
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<ClientEvent>,
    what: &str,
    wanted: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("the client's events ended");
            if wanted(&e) {
                return e;
            }
        }
    });
    found
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge_and_both_are_saved() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_any(dir.path()).await;
    let (a, mut a_events) = Client::open(config(&relay.url(), "pair")).await.unwrap();
    let (b, _b_events) = Client::open(config(&relay.url(), "pair")).await.unwrap();
    append(&a, "hello ");
    append(&b, "world");
    eventually("convergence", || {
        text(&a) == text(&b) && text(&a).chars().count() == 11
    })
    .await;
    assert!(a.wait_saved(WAIT).await, "a is not saved");
    assert!(b.wait_saved(WAIT).await, "b is not saved");
    assert_eq!(a.acked().get(&a.replica()), 6);
    assert_eq!(b.acked().get(&b.replica()), 5);
    next_event(&mut a_events, "Connected", |e| {
        matches!(e, ClientEvent::Connected)
    })
    .await;
    match next_event(&mut a_events, "Saved", |e| {
        matches!(e, ClientEvent::Saved(_))
    })
    .await
    {
        ClientEvent::Saved(v) => assert!(v.get(&a.replica()) >= 6),
        _ => unreachable!(),
    }
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_changes_arrive_as_events() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_any(dir.path()).await;
    let (a, mut a_events) = Client::open(config(&relay.url(), "events")).await.unwrap();
    let (b, _b_events) = Client::open(config(&relay.url(), "events")).await.unwrap();
    append(&a, "ab");
    eventually("b has a's text", || text(&b) == "ab").await;
    b.edit(|tx| tx.text("t").insert(1, "XY")).unwrap().unwrap();
    // a's own edit is not reported; b's arrives as a delta on a's text.
    let e = next_event(&mut a_events, "a remote change", |e| {
        matches!(e, ClientEvent::Remote(_))
    })
    .await;
    let ClientEvent::Remote(event) = e else {
        unreachable!()
    };
    assert_eq!(event.changes.len(), 1);
    assert_eq!(event.changes[0].path, ["t"]);
    assert_eq!(
        event.changes[0].diff,
        Diff::Text(vec![TextDelta::Retain(1), TextDelta::Insert("XY".into())])
    );
    assert_eq!(text(&a), "aXYb");
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_while_the_relay_is_down_arrive_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_any(dir.path()).await;
    let (addr, url) = (relay.addr, relay.url());
    let (a, mut a_events) = Client::open(config(&url, "outage")).await.unwrap();
    append(&a, "before ");
    assert!(a.wait_saved(WAIT).await);

    relay.stop().await;
    next_event(&mut a_events, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    append(&a, "during");
    assert!(!a.is_saved());
    eventually("the client notices", || !a.is_connected()).await;

    // The relay comes back on the same address with the same data.
    let relay = Relay::start(dir.path(), addr).await;
    next_event(&mut a_events, "Connected again", |e| {
        matches!(e, ClientEvent::Connected)
    })
    .await;
    assert!(a.wait_saved(WAIT).await, "the offline edit was not saved");
    let (reader, _) = Client::open(config(&url, "outage")).await.unwrap();
    eventually("the reader sees both edits", || {
        text(&reader) == "before during"
    })
    .await;
    a.close().await;
    reader.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_edits_in_the_state_file_are_sent_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let relay = Relay::start_any(dir.path()).await;
    let (addr, url) = (relay.addr, relay.url());
    let mut cfg = config(&url, "restart");
    cfg.state_file = Some(local.path().join("restart.chorus"));

    let (a, _) = Client::open(cfg.clone()).await.unwrap();
    let replica = a.replica();
    append(&a, "one ");
    assert!(a.wait_saved(WAIT).await);
    relay.stop().await;
    // Typed while the relay is down, then the editor quits.
    append(&a, "two");
    assert!(!a.is_saved());
    a.close().await;

    let relay = Relay::start(dir.path(), addr).await;
    let (a, _) = Client::open(cfg.clone()).await.unwrap();
    assert_eq!(a.replica(), replica);
    assert_eq!(text(&a), "one two");
    assert!(
        a.wait_saved(WAIT).await,
        "the edit kept on disk was not sent"
    );

    let (reader, _) = Client::open(config(&url, "restart")).await.unwrap();
    eventually("the reader sees the text", || text(&reader) == "one two").await;
    // Exactly once: the relay holds a's 7 operations and nothing else, and a made
    // none while reopening.
    assert_eq!(reader.version().get(&replica), 7);
    assert_eq!(reader.version().total_ops(), 7);
    assert_eq!(a.version().total_ops(), 7);
    a.close().await;
    reader.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_doc_id_is_refused_before_connecting() {
    let r = Client::open(ClientConfig::new("ws://127.0.0.1:9", "a/b")).await;
    assert!(matches!(
        r,
        Err(chorus_client::ClientError::InvalidDocId(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_relay_still_sees_connected_gets_in_once_the_old_connection_is_gone() {
    use chorus_doc::{Doc, ReplicaId};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;

    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_any(dir.path()).await;
    // The old connection of replica 7, which the relay has not seen go yet.
    let replica = ReplicaId::from_u128(7);
    let hello = chorus_sync::Session::new("ghost").open(&Doc::new(replica));
    let (mut old, _) = tokio_tungstenite::connect_async(format!("{}/ws/ghost", relay.url()))
        .await
        .unwrap();
    old.send(Ws::Binary(hello.into())).await.unwrap();
    // The relay's answering Hello: it has bound replica 7 to the old connection.
    let answer = tokio::time::timeout(WAIT, old.next())
        .await
        .expect("the relay answers");
    assert!(matches!(answer, Some(Ok(Ws::Binary(_)))), "{answer:?}");

    let mut cfg = config(&relay.url(), "ghost");
    cfg.replica = Some(replica);
    let (a, mut events) = Client::open(cfg).await.unwrap();
    append(&a, "back");
    // Refused while the old connection is there (1013: try again later)...
    match next_event(&mut events, "the refusal", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await
    {
        ClientEvent::Disconnected { code, .. } => assert_eq!(code, Some(1013)),
        _ => unreachable!(),
    }
    // ...and in once it is gone.
    drop(old);
    assert!(a.wait_saved(WAIT).await, "the client never got back in");
    a.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reopened_with_everything_stored_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let relay = Relay::start_any(dir.path()).await;
    let mut cfg = config(&relay.url(), "reopened");
    cfg.state_file = Some(local.path().join("reopened.chorus"));
    let (a, _) = Client::open(cfg.clone()).await.unwrap();
    append(&a, "stored");
    assert!(a.wait_saved(WAIT).await);
    a.close().await;
    // Everything is on the relay already; only an Ack can say so.
    let (a, _) = Client::open(cfg).await.unwrap();
    assert!(
        a.wait_saved(Duration::from_secs(3)).await,
        "no Ack after the Hello"
    );
    a.close().await;
    relay.stop().await;
}

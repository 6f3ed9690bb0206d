//! The relay over real WebSockets on loopback, with a real SQLite file.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_doc::{Doc, ReplicaId};
use chorus_relay::{Config, serve};
use chorus_sync::{Message, Node};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub(crate) async fn start(dir: &std::path::Path) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config::new(dir);
    let task = tokio::spawn(async move {
        serve(config, listener).await.unwrap();
    });
    (addr, task)
}

pub(crate) struct Client {
    pub(crate) node: Node,
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) acked: chorus_doc::VersionVector,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr, doc: &str, n: u128) -> Client {
        Self::connect_url(&format!("ws://{addr}/ws/{doc}"), doc, n).await
    }

    pub(crate) async fn connect_url(url: &str, doc: &str, n: u128) -> Client {
        let (ws, _) = connect_async(url).await.unwrap();
        let mut c = Client {
            node: Node::new(doc, Doc::new(ReplicaId::from_u128(n))),
            ws,
            acked: Default::default(),
        };
        let out = c.node.connect(0);
        c.send(out).await;
        c
    }

    /// Connects again (to a relay restarted, say), resyncing by version vector.
    pub(crate) async fn reconnect(&mut self, url: &str) {
        for _ in 0..100 {
            if let Ok((ws, _)) = connect_async(url).await {
                self.ws = ws;
                self.node.disconnect(0);
                let out = self.node.connect(0);
                self.send(out).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot reconnect to {url}");
    }

    pub(crate) async fn send(&mut self, out: Vec<(u64, Vec<u8>)>) {
        for (_, f) in out {
            // A relay that went away: the frame is lost, the session repairs it.
            let _ = self.ws.send(Ws::Binary(f.into())).await;
        }
    }

    pub(crate) async fn type_text(&mut self, s: &str) {
        let mut tx = self.node.transact();
        let len = tx.text("t").len();
        tx.text("t").insert(len, s).unwrap();
        tx.commit();
        let out = self.node.committed();
        self.send(out).await;
    }

    /// Handles frames for `ms` milliseconds, ticking as a client would.
    pub(crate) async fn pump(&mut self, ms: u64) {
        let end = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return,
                _ = tick.tick() => {
                    let out = self.node.tick();
                    self.send(out).await;
                }
                msg = self.ws.next() => {
                    let f = match msg {
                        Some(Ok(Ws::Binary(f))) => f,
                        Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => continue,
                        other => {
                            eprintln!("pump: the connection ended: {other:?}");
                            return;
                        }
                    };
                    let (out, received) = self.node.receive(0, &f).unwrap();
                    if let Some(v) = received.acked {
                        self.acked = v;
                    }
                    self.send(out).await;
                }
            }
        }
    }

    pub(crate) fn text(&self) -> String {
        self.node.doc().text("t").to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_converge_through_the_relay_and_edits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, server) = start(dir.path()).await;
    let mut a = Client::connect(addr, "doc-1", 1).await;
    let mut b = Client::connect(addr, "doc-1", 2).await;
    a.type_text("hello ").await;
    b.type_text("world").await;
    for _ in 0..20 {
        a.pump(50).await;
        b.pump(50).await;
        if a.text() == b.text() && a.text().len() == 11 {
            break;
        }
    }
    assert_eq!(a.text(), b.text());
    assert_eq!(a.text().len(), 11);
    // Both were told their edits are stored.
    for c in [&mut a, &mut b] {
        for _ in 0..20 {
            if c.acked.dominates(c.node.doc().version()) {
                break;
            }
            c.pump(50).await;
        }
        assert!(
            c.acked.dominates(c.node.doc().version()),
            "no Ack covering the client's edits"
        );
    }
    let expected = a.text();

    // A new relay process on the same data directory has everything acknowledged.
    server.abort();
    let _ = server.await;
    drop((a, b));
    let (addr, _server) = start(dir.path()).await;
    let mut c = Client::connect(addr, "doc-1", 3).await;
    for _ in 0..20 {
        c.pump(50).await;
        if c.text() == expected {
            break;
        }
    }
    assert_eq!(c.text(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_frame_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _server) = start(dir.path()).await;
    let mut good = Client::connect(addr, "room", 1).await;
    let (mut bad, _) = connect_async(format!("ws://{addr}/ws/room")).await.unwrap();
    bad.send(Ws::Binary(vec![9, 9, 9].into())).await.unwrap();
    // The bad client gets an Error frame and a close with a code.
    let mut code = None;
    while let Some(Ok(m)) = bad.next().await {
        match m {
            Ws::Binary(f) => {
                assert!(matches!(
                    Message::decode(&f),
                    Ok(Message::Error { code: 2, .. })
                ));
            }
            Ws::Close(c) => {
                code = c.map(|c| u16::from(c.code));
                break;
            }
            _ => {}
        }
    }
    // Bytes that cannot be decoded: 1007.
    assert_eq!(code, Some(1007));
    // The good one still syncs.
    good.type_text("still here").await;
    let mut other = Client::connect(addr, "room", 2).await;
    for _ in 0..20 {
        good.pump(50).await;
        other.pump(50).await;
        if other.text() == "still here" {
            break;
        }
    }
    assert_eq!(other.text(), "still here");
}

/// A plain HTTP GET: the whole response, headers and body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

/// The value of a metric line such as `chorus_rooms 1`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stores_everything_and_closes_clients_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(chorus_relay::serve_with_shutdown(
        Config::new(dir.path()),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut a = Client::connect(addr, "doc", 1).await;
    a.type_text("before shutdown").await;
    for _ in 0..50 {
        a.pump(20).await;
        if a.acked.dominates(a.node.doc().version()) {
            break;
        }
    }
    stop.send(()).unwrap();
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), a.ws.next()).await {
        if let Ws::Close(c) = m {
            code = c.map(|c| u16::from(c.code));
            break;
        }
    }
    assert_eq!(code, Some(1001));
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    // Nothing listens any more; a new relay has the document.
    assert!(TcpStream::connect(addr).await.is_err());
    let (addr, _server) = start(dir.path()).await;
    let mut b = Client::connect(addr, "doc", 2).await;
    for _ in 0..50 {
        b.pump(20).await;
        if b.text() == "before shutdown" {
            break;
        }
    }
    assert_eq!(b.text(), "before shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_are_stored_and_evicted_and_metrics_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(dir.path());
    config.room_idle = Duration::from_millis(300);
    config.tick = Duration::from_millis(50);
    tokio::spawn(serve(config, listener));
    let mut a = Client::connect(addr, "doc", 1).await;
    a.type_text("kept").await;
    for _ in 0..50 {
        a.pump(20).await;
        if a.acked.dominates(a.node.doc().version()) {
            break;
        }
    }
    let m = http_get(addr, "/metrics").await;
    assert_eq!(metric(&m, "chorus_rooms"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "chorus_connections"), Some(1.0), "{m}");
    assert!(metric(&m, "chorus_frames_in_total").unwrap() >= 2.0, "{m}");
    assert!(
        metric(&m, "chorus_persist_seconds_count").unwrap() >= 1.0,
        "{m}"
    );
    drop(a);
    let mut evicted = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let m = http_get(addr, "/metrics").await;
        if metric(&m, "chorus_rooms") == Some(0.0) && metric(&m, "chorus_connections") == Some(0.0)
        {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "the idle room was not closed");
    // Compacted on the way out: a snapshot and an empty log.
    let mut store = chorus_relay::storage::SqliteStore::open(dir.path()).unwrap();
    let len = chorus_relay::storage::Store::log_len(&store, "doc").unwrap();
    assert_eq!(len.entries, 0);
    let doc = chorus_relay::storage::load_doc(&mut store, "doc", ReplicaId::from_u128(9))
        .unwrap()
        .unwrap();
    assert_eq!(doc.text("t").to_string(), "kept");
    // It opens again on demand.
    let mut b = Client::connect(addr, "doc", 2).await;
    for _ in 0..50 {
        b.pump(20).await;
        if b.text() == "kept" {
            break;
        }
    }
    assert_eq!(b.text(), "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>demo</h1>").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(dir.path());
    config.static_dir = Some(site.path().to_owned());
    tokio::spawn(serve(config, listener));
    let page = http_get(addr, "/").await;
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(page.ends_with("<h1>demo</h1>"), "{page}");
    assert!(http_get(addr, "/healthz").await.ends_with("ok"));
}

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

async fn start(dir: &std::path::Path) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config::new(dir);
    let task = tokio::spawn(async move {
        serve(config, listener).await.unwrap();
    });
    (addr, task)
}

struct Client {
    node: Node,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    acked: chorus_doc::VersionVector,
}

impl Client {
    async fn connect(addr: SocketAddr, doc: &str, n: u128) -> Client {
        let (ws, _) = connect_async(format!("ws://{addr}/ws/{doc}"))
            .await
            .unwrap();
        let mut c = Client {
            node: Node::new(doc, Doc::new(ReplicaId::from_u128(n))),
            ws,
            acked: Default::default(),
        };
        let out = c.node.connect(0);
        c.send(out).await;
        c
    }

    async fn send(&mut self, out: Vec<(u64, Vec<u8>)>) {
        for (_, f) in out {
            self.ws.send(Ws::Binary(f.into())).await.unwrap();
        }
    }

    async fn type_text(&mut self, s: &str) {
        let mut tx = self.node.transact();
        let len = tx.text("t").len();
        tx.text("t").insert(len, s).unwrap();
        tx.commit();
        let out = self.node.committed();
        self.send(out).await;
    }

    /// Handles frames for `ms` milliseconds, ticking as a client would.
    async fn pump(&mut self, ms: u64) {
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
                    let Some(Ok(Ws::Binary(f))) = msg else { return };
                    let (out, received) = self.node.receive(0, &f).unwrap();
                    if let Some(v) = received.acked {
                        self.acked = v;
                    }
                    self.send(out).await;
                }
            }
        }
    }

    fn text(&self) -> String {
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
    assert_eq!(code, Some(1008));
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

//! Relays peering with relays (federation): three relays in a ring and in a mesh,
//! clients on each editing concurrently, one relay restarted mid-way: everything
//! converges, every edit exactly once.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_relay::{Config, serve_with_shutdown};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::server::Client;

struct Relay {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    peers: Vec<String>,
    secret: Option<Vec<u8>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let mut config = Config::new(self.dir.path());
        config.peers = self.peers.clone();
        config.auth_secret = self.secret.clone();
        config.tick = Duration::from_millis(50);
        config.room_idle = Duration::from_millis(500);
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.await;
            };
            serve_with_shutdown(config, listener, signal).await.unwrap();
        }));
    }

    async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// Three relays on fresh ports; `peers(i)` lists the relays relay `i` links to.
async fn relays(peers: impl Fn(usize) -> Vec<usize>, secret: Option<&[u8]>) -> Vec<Relay> {
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
    }
    let mut relays = Vec::new();
    for i in 0..3 {
        let mut r = Relay {
            addr: addrs[i],
            dir: tempfile::tempdir().unwrap(),
            peers: peers(i)
                .into_iter()
                .map(|j| format!("ws://{}", addrs[j]))
                .collect(),
            secret: secret.map(<[u8]>::to_vec),
            stop: None,
            task: None,
        };
        r.start().await;
        relays.push(r);
    }
    relays
}

async fn run(mut relays: Vec<Relay>) {
    let doc = "shared";
    // With tokens, clients need a write token (and relays mint their own).
    let query = match &relays[0].secret {
        Some(secret) => {
            let exp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 600;
            let claims =
                chorus_relay::auth::Claims::for_doc(doc, chorus_relay::auth::Right::Write, exp);
            format!("?token={}", chorus_relay::auth::mint(secret, &claims))
        }
        None => String::new(),
    };
    let url = |r: &Relay| format!("ws://{}/ws/{doc}{query}", r.addr);
    // Two clients on each relay.
    let mut clients = Vec::new();
    for (i, r) in relays.iter().enumerate() {
        for k in 0..2 {
            let n = (i * 2 + k + 1) as u128;
            clients.push((i, Client::connect_url(&url(r), doc, n).await));
        }
    }
    let mut markers = Vec::new();
    for round in 0..12 {
        if round == 5 {
            // Relay 1 goes away mid-way; its clients keep editing offline.
            relays[1].stop().await;
        }
        if round == 8 {
            relays[1].start().await;
            for (i, c) in clients.iter_mut() {
                if *i == 1 {
                    c.reconnect(&url(&relays[1])).await;
                }
            }
        }
        for (k, (i, c)) in clients.iter_mut().enumerate() {
            let m = format!("<{i}.{k}.{round}>");
            c.type_text(&m).await;
            markers.push(m);
        }
        for (i, c) in clients.iter_mut() {
            if !(5..8).contains(&round) || *i != 1 {
                c.pump(30).await;
            }
        }
    }
    // Everyone converges on one text with every marker exactly once.
    let mut done = false;
    for _ in 0..200 {
        for (_, c) in clients.iter_mut() {
            c.pump(20).await;
        }
        let first = clients[0].1.text();
        if clients.iter().all(|(_, c)| c.text() == first)
            && markers.iter().all(|m| first.contains(m.as_str()))
        {
            done = true;
            break;
        }
    }
    let texts: Vec<String> = clients.iter().map(|(_, c)| c.text()).collect();
    assert!(done, "no convergence: {texts:#?}");
    for m in &markers {
        assert_eq!(
            texts[0].matches(m.as_str()).count(),
            1,
            "{m} in {}",
            texts[0]
        );
    }
    // Each relay has stored it: a new client on each reads the same text.
    for (k, r) in relays.iter().enumerate() {
        let mut fresh = Client::connect_url(&url(r), doc, 100 + k as u128).await;
        for _ in 0..100 {
            fresh.pump(20).await;
            if fresh.text() == texts[0] {
                break;
            }
        }
        assert_eq!(fresh.text(), texts[0], "relay {k}");
    }
    for r in &mut relays {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_three_relays_converges_across_a_restart() {
    run(relays(|i| vec![(i + 1) % 3], None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_of_three_relays_with_tokens_converges_across_a_restart() {
    let secret: &[u8] = b"the federation's shared secret";
    run(relays(|i| (0..3).filter(|&j| j != i).collect(), Some(secret)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_refuses_the_link_does_not_keep_rooms_open() {
    // Relay 0 links to relay 1, which has another secret and refuses it (1008).
    let mut relays = relays(|i| if i == 0 { vec![1] } else { vec![] }, None).await;
    relays[1].stop().await;
    relays[1].secret = Some(b"relay one's own secret, unshared".to_vec());
    relays[1].start().await;
    relays[0].stop().await;
    relays[0].secret = Some(b"relay zero's secret, not the same".to_vec());
    relays[0].start().await;
    let secret = relays[0].secret.clone().unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = chorus_relay::auth::Claims::for_doc("d", chorus_relay::auth::Right::Write, exp);
    let url = format!(
        "ws://{}/ws/d?token={}",
        relays[0].addr,
        chorus_relay::auth::mint(&secret, &claims)
    );
    let mut c = Client::connect_url(&url, "d", 1).await;
    c.type_text("local only").await;
    for _ in 0..50 {
        c.pump(20).await;
        if c.acked.dominates(c.node.doc().version()) {
            break;
        }
    }
    assert!(c.acked.dominates(c.node.doc().version()));
    drop(c);
    // The room closes once idle, although its peer never took the link.
    let mut closed = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let m = crate::server::http_get(relays[0].addr, "/metrics").await;
        if m.lines().any(|l| l == "chorus_rooms 0") {
            closed = true;
            break;
        }
    }
    assert!(closed, "the room stayed open");
    for r in &mut relays {
        r.stop().await;
    }
}

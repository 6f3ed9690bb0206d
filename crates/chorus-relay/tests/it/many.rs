//! Many clients over real WebSockets on one document: they converge, and what the
//! relay stored is what they have. Presence goes through the room.

use std::time::Duration;

use chorus_client::{Client, ClientConfig};
use chorus_doc::ReplicaId;
use chorus_relay::storage::{SqliteStore, load_doc};
use chorus_relay::{Config, serve_with_shutdown};
use chorus_sync::{AwarenessEntry, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as Ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_editing_one_document_converge_and_match_storage() {
    const CLIENTS: usize = 40;
    const EDITS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = Config::new(dir.path());
    config.tick = Duration::from_millis(50);
    let server = tokio::spawn(serve_with_shutdown(config, listener, async move {
        let _ = stopped.await;
    }));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut config = ClientConfig::new(format!("ws://{addr}"), "many");
        config.tick = Duration::from_millis(50);
        clients.push(Client::open(config).await.unwrap().0);
    }
    // Everyone types at once, at places spread over the text, plus a counter.
    let mut typists = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        let c = c.clone();
        typists.push(tokio::spawn(async move {
            for n in 0..EDITS {
                c.edit(|tx| {
                    let len = tx.text("t").len();
                    let pos = (k * 7919 + n * 104_729) % (len + 1);
                    // Only between markers, so none is torn apart.
                    let text = tx.text("t").view().slice(0..len).unwrap();
                    let pos = text[..text.char_indices().nth(pos).map_or(text.len(), |(i, _)| i)]
                        .rfind('>')
                        .map_or(0, |i| text[..=i].chars().count());
                    tx.text("t").insert(pos, &format!("<{k}.{n}>")).unwrap();
                    tx.counter("edits").add(1).unwrap();
                })
                .unwrap();
                tokio::time::sleep(Duration::from_millis(2 + (k % 5) as u64)).await;
            }
        }));
    }
    for t in typists {
        t.await.unwrap();
    }
    for c in &clients {
        assert!(c.wait_saved(Duration::from_secs(30)).await, "not all saved");
    }
    let mut texts = Vec::new();
    for _ in 0..500 {
        texts = clients
            .iter()
            .map(|c| c.read(|d| (d.text("t").to_string(), d.counter("edits").value())))
            .collect::<Vec<_>>();
        if texts.iter().all(|t| t == &texts[0]) && texts[0].1 == (CLIENTS * EDITS) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(texts.iter().all(|t| t == &texts[0]), "the clients differ");
    let (text, count) = texts[0].clone();
    assert_eq!(count, (CLIENTS * EDITS) as i64);
    for k in 0..CLIENTS {
        for n in 0..EDITS {
            assert_eq!(text.matches(&format!("<{k}.{n}>")).count(), 1);
        }
    }
    for c in clients {
        c.close().await;
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let stored = load_doc(&mut store, "many", ReplicaId::from_u128(1))
        .unwrap()
        .unwrap();
    assert_eq!(stored.text("t").to_string(), text);
    assert_eq!(stored.counter("edits").value(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_goes_through_the_room_and_leaves_with_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chorus_relay::serve(Config::new(dir.path()), listener));
    let mut a = crate::server::Client::connect(addr, "p", 1).await;
    let mut b = crate::server::Client::connect(addr, "p", 2).await;
    a.pump(100).await;
    b.pump(100).await;
    let entry = AwarenessEntry {
        replica: ReplicaId::from_u128(1),
        clock: 1,
        state: Some(serde_json::json!({"name": "Ada", "cursor": 3})),
    };
    a.ws.send(Ws::Binary(
        Message::Awareness(vec![entry.clone()]).encode().into(),
    ))
    .await
    .unwrap();
    // B hears of A's presence.
    let got = heard(&mut b.ws).await.expect("presence arrived");
    assert_eq!(got, vec![entry]);
    // A newcomer gets everyone's presence on joining.
    let mut c = crate::server::Client::connect(addr, "p", 3).await;
    let got = heard(&mut c.ws).await.expect("presence for a newcomer");
    assert_eq!(got[0].replica, ReplicaId::from_u128(1));
    // When A's connection goes, the others learn it is gone.
    drop(a);
    let got = heard(&mut b.ws).await.expect("removal arrived");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].replica, ReplicaId::from_u128(1));
    assert_eq!(got[0].state, None);
}

/// The next presence message on `ws` (within 5 s).
async fn heard(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Result<Vec<AwarenessEntry>, tokio::time::error::Elapsed> {
    let fut = async {
        while let Some(Ok(m)) = ws.next().await {
            if let Ws::Binary(f) = m {
                if let Ok(Message::Awareness(entries)) = Message::decode(&f) {
                    return entries;
                }
            }
        }
        panic!("connection ended");
    };
    tokio::time::timeout(Duration::from_secs(5), fut).await
}

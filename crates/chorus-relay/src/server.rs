//! The WebSocket server: a task per open document (a room) owns its replica and its
//! connections; updates are stored durably before the `Ack` that covers them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use chorus_doc::{Doc, ReplicaId};
use chorus_sync::{LinkId, Message, Node};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::storage::{SqliteStore, StorageError, Store, load_doc};

/// How the relay runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where the SQLite file lives.
    pub data_dir: PathBuf,
    /// How often rooms repair lost frames (see `chorus_sync::Session::tick`).
    pub tick: Duration,
    /// Frames waiting to go out to one connection; beyond that it is closed (1013).
    pub outgoing_queue: usize,
    /// The log entries of a document after which it is compacted into a snapshot.
    pub compact_after: u64,
}

impl Config {
    /// Defaults, storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            tick: Duration::from_millis(200),
            outgoing_queue: 1024,
            compact_after: 1000,
        }
    }
}

/// What goes out to one connection.
#[derive(Debug)]
enum Out {
    Frame(Vec<u8>),
    Close(u16, String),
}

enum RoomMsg {
    Join {
        conn: LinkId,
        out: mpsc::Sender<Out>,
    },
    Frame {
        conn: LinkId,
        bytes: Vec<u8>,
    },
    Leave {
        conn: LinkId,
    },
}

struct Shared {
    config: Config,
    store: Arc<Mutex<SqliteStore>>,
    rooms: Mutex<HashMap<String, mpsc::UnboundedSender<RoomMsg>>>,
    next_conn: std::sync::atomic::AtomicU64,
}

/// Serves the relay on `listener` until the task is dropped or the listener fails.
pub async fn serve(config: Config, listener: TcpListener) -> Result<(), StorageError> {
    let store = SqliteStore::open(&config.data_dir)?;
    let shared = Arc::new(Shared {
        config,
        store: Arc::new(Mutex::new(store)),
        rooms: Mutex::new(HashMap::new()),
        next_conn: std::sync::atomic::AtomicU64::new(1),
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws/{doc}", get(ws_handler))
        .with_state(shared);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| StorageError::Io {
        path: PathBuf::new(),
        source: e,
    })
}

async fn ws_handler(
    ws: WebSocketUpgrade,
    Path(doc): Path<String>,
    State(shared): State<Arc<Shared>>,
) -> impl IntoResponse {
    ws.on_upgrade(move |socket| connection(socket, doc, shared))
}

/// The room of `doc`, started if it is not running.
fn room(shared: &Arc<Shared>, doc: &str) -> mpsc::UnboundedSender<RoomMsg> {
    let mut rooms = shared.rooms.lock().expect("rooms lock");
    if let Some(tx) = rooms.get(doc) {
        if !tx.is_closed() {
            return tx.clone();
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    rooms.insert(doc.to_owned(), tx.clone());
    tokio::spawn(run_room(doc.to_owned(), rx, shared.clone()));
    tx
}

async fn connection(socket: WebSocket, doc: String, shared: Arc<Shared>) {
    let conn = shared
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(shared.config.outgoing_queue);
    let room_tx = room(&shared, &doc);
    if room_tx
        .send(RoomMsg::Join {
            conn,
            out: out_tx.clone(),
        })
        .is_err()
    {
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Out::Frame(f) => {
                    if sink.send(WsMessage::Binary(f.into())).await.is_err() {
                        break;
                    }
                }
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(WsMessage::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            WsMessage::Binary(bytes)
                if room_tx
                    .send(RoomMsg::Frame {
                        conn,
                        bytes: bytes.to_vec(),
                    })
                    .is_err() =>
            {
                break;
            }
            WsMessage::Text(_) => {
                let _ = out_tx
                    .send(Out::Close(1003, "binary frames only".into()))
                    .await;
                break;
            }
            WsMessage::Close(_) => break,
            _ => {}
        }
    }
    let _ = room_tx.send(RoomMsg::Leave { conn });
    drop(out_tx);
    let _ = writer.await;
}

async fn run_room(doc_id: String, mut rx: mpsc::UnboundedReceiver<RoomMsg>, shared: Arc<Shared>) {
    // The room never authors operations, so its replica id only has to be its own.
    let replica = ReplicaId::random();
    let store = shared.store.clone();
    let id = doc_id.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let mut s = store.lock().expect("store lock");
        load_doc(&mut *s, &id, replica)
    })
    .await;
    let doc = match loaded {
        Ok(Ok(Some(doc))) => doc,
        Ok(Ok(None)) => Doc::new(replica),
        Ok(Err(e)) => {
            tracing::error!(doc = %doc_id, error = %e, "cannot open the room");
            refuse_all(&mut rx, &e.to_string()).await;
            return;
        }
        Err(_) => return,
    };
    let mut node = Node::new(doc_id.clone(), doc);
    let mut conns: HashMap<LinkId, mpsc::Sender<Out>> = HashMap::new();
    let mut tick = tokio::time::interval(shared.config.tick);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                match msg {
                    RoomMsg::Join { conn, out } => {
                        node.accept(conn);
                        conns.insert(conn, out);
                    }
                    RoomMsg::Leave { conn } => {
                        node.disconnect(conn);
                        conns.remove(&conn);
                    }
                    RoomMsg::Frame { conn, bytes } => {
                        let before = node.doc().version().clone();
                        match node.receive(conn, &bytes) {
                            Ok((out, received)) => {
                                let mut out = out;
                                if received.applied > 0 {
                                    let update = node.doc().encode_since(&before);
                                    let mut stored = persist(&shared, &doc_id, update).await;
                                    if let Ok(seq) = stored {
                                        if seq % shared.config.compact_after.max(1) == 0 {
                                            let state = node.doc().encode();
                                            stored = compact(&shared, &doc_id, state, seq).await.map(|()| seq);
                                        }
                                    }
                                    match stored {
                                        Ok(_) => {
                                            let v = node.doc().version().clone();
                                            out.extend(node.ack_all(&v));
                                        }
                                        Err(e) => {
                                            tracing::error!(doc = %doc_id, error = %e, "storage failed");
                                            close_all(&conns, 1011, "storage failed").await;
                                            break;
                                        }
                                    }
                                }
                                send(&mut conns, &mut node, out);
                            }
                            Err(e) => {
                                if let Some(tx) = conns.remove(&conn) {
                                    let _ = tx.try_send(Out::Frame(Message::error(&e).encode()));
                                    let code = if matches!(e, chorus_sync::ProtocolError::BadUpdate(_)) { 1007 } else { 1008 };
                                    let _ = tx.try_send(Out::Close(code, e.to_string()));
                                }
                                node.disconnect(conn);
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let out = node.tick();
                send(&mut conns, &mut node, out);
            }
        }
    }
}

/// Sends frames; a connection whose queue is full is closed (1013), never skipped.
fn send(
    conns: &mut HashMap<LinkId, mpsc::Sender<Out>>,
    node: &mut Node,
    out: Vec<(LinkId, Vec<u8>)>,
) {
    for (link, f) in out {
        let Some(tx) = conns.get(&link) else { continue };
        if tx.try_send(Out::Frame(f)).is_err() {
            let _ = tx.try_send(Out::Close(1013, "too slow: outgoing queue full".into()));
            conns.remove(&link);
            node.disconnect(link);
        }
    }
}

async fn close_all(conns: &HashMap<LinkId, mpsc::Sender<Out>>, code: u16, reason: &str) {
    for tx in conns.values() {
        let _ = tx.send(Out::Close(code, reason.into())).await;
    }
}

async fn refuse_all(rx: &mut mpsc::UnboundedReceiver<RoomMsg>, why: &str) {
    while let Some(msg) = rx.recv().await {
        if let RoomMsg::Join { out, .. } = msg {
            let _ = out
                .send(Out::Close(
                    1011,
                    format!("document cannot be opened: {why}"),
                ))
                .await;
        }
    }
}

/// Stores `update` durably; returns its seq in the document's log.
async fn persist(shared: &Arc<Shared>, doc_id: &str, update: Vec<u8>) -> Result<u64, StorageError> {
    let store = shared.store.clone();
    let id = doc_id.to_owned();
    tokio::task::spawn_blocking(move || store.lock().expect("store lock").append(&id, &update))
        .await
        .expect("storage task")
}

/// Replaces the log up to `seq` by the whole state.
async fn compact(
    shared: &Arc<Shared>,
    doc_id: &str,
    state: Vec<u8>,
    seq: u64,
) -> Result<(), StorageError> {
    let store = shared.store.clone();
    let id = doc_id.to_owned();
    tokio::task::spawn_blocking(move || store.lock().expect("store lock").compact(&id, &state, seq))
        .await
        .expect("storage task")
}

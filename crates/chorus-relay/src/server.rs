//! The HTTP side: routes, access checks, and a task per WebSocket connection that
//! enforces the connection's limits and passes its frames to the document's room.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chorus_sync::LinkId;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::auth::{self, AuthError, Right};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::room::{Close, Closer, RoomMsg, run_room};
use crate::storage::{SqliteStore, StorageError};
use crate::writer::Writer;

/// Messages waiting for a room before its connections wait to send more.
const ROOM_QUEUE: usize = 1024;
/// How long shutdown waits for rooms to store and connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The storage could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// No access tokens (`Config::auth_secret`) on an address other machines reach.
    #[error("{0} is not a loopback address: set an auth secret to serve other machines")]
    OpenOnPublicAddress(SocketAddr),
}

/// What every room and connection shares.
pub(crate) struct Shared {
    pub config: Config,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub rooms: Mutex<HashMap<String, mpsc::Sender<RoomMsg>>>,
    pub shutdown: watch::Receiver<bool>,
    /// Held by every room and connection task: shutdown waits until all are dropped.
    pub alive: mpsc::Sender<()>,
    next_conn: AtomicU64,
}

/// Serves the relay on `listener` until the task is dropped or the listener fails.
/// Without an auth secret the listener must be on a loopback address.
pub async fn serve(config: Config, listener: TcpListener) -> Result<(), ServeError> {
    serve_with_shutdown(config, listener, std::future::pending()).await
}

/// Serves the relay on `listener` until `signal` completes, then shuts down
/// gracefully: stops accepting, stores every room, and closes every connection with
/// 1001.
pub async fn serve_with_shutdown(
    config: Config,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    if config.auth_secret.is_none() && !addr.ip().is_loopback() {
        return Err(ServeError::OpenOnPublicAddress(addr));
    }
    let store = SqliteStore::open(&config.data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let (writer, storage_thread) = Writer::start(Box::new(store), metrics.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let static_dir = config.static_dir.clone();
    let shared = Arc::new(Shared {
        config,
        writer,
        metrics,
        rooms: Mutex::new(HashMap::new()),
        shutdown: shutdown_rx,
        alive: alive_tx,
        next_conn: AtomicU64::new(1),
    });
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .route("/ws/{doc}", get(ws_handler));
    app = match static_dir {
        Some(dir) => app.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => app.route(
            "/",
            get(|| async { "Chorus relay: documents at /ws/{doc}\n" }),
        ),
    };
    let app = app.with_state(shared.clone());
    // Frames are small and latency matters: no Nagle delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        signal.await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
        // Keep the sender: rooms and connections watch it until they are done.
        std::future::pending::<()>().await;
    });
    // `with_graceful_shutdown` resolves once the listener is closed and plain HTTP
    // requests are done; WebSocket connections are ours to wind down.
    let mut shutdown = shared.shutdown.clone();
    let result = tokio::select! {
        r = served => r,
        () = stopped(&mut shutdown) => Ok(()),
    };
    drop(shared);
    // Rooms store and close their connections; wait for every task to finish.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await;
    // The storage thread ends when the last handle is gone.
    let _ = tokio::task::spawn_blocking(move || storage_thread.join()).await;
    result.map_err(ServeError::Io)
}

async fn metrics_handler(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

/// Completes once `shutdown` says so.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&s| s).await;
}

/// Query parameters of `/ws/{doc}`.
#[derive(Debug, serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
    /// `relay` marks a peer relay's link on a relay without tokens.
    role: Option<String>,
}

async fn ws_handler(
    ws: WebSocketUpgrade,
    Path(doc): Path<String>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    State(shared): State<Arc<Shared>>,
) -> axum::response::Response {
    if *shared.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let access = authorize(&shared, &doc, &query, &headers);
    let limits = &shared.config.limits;
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("connection", conn, doc = %doc);
    // The limit is checked on each frame read, with a clean 1009. A frame beyond 4x
    // the limit is not even read into memory: tungstenite stops there and the
    // connection is dropped (the rest of that frame is still in flight, so a close
    // frame could not be read by the peer anyway).
    let hard = limits.max_frame_bytes.saturating_mul(4);
    ws.max_message_size(hard)
        .max_frame_size(hard)
        // tungstenite clears its read buffer before every read: the default 128 KiB
        // costs more than the frames themselves.
        .read_buffer_size(8 << 10)
        .on_upgrade(move |socket| connection(socket, conn, doc, access, shared).instrument(span))
}

/// The right a connection has, or why it has none.
fn authorize(
    shared: &Shared,
    doc: &str,
    query: &WsQuery,
    headers: &HeaderMap,
) -> Result<Right, Refusal> {
    if !valid_doc_id(doc) {
        return Err(Refusal::BadDocId);
    }
    let Some(secret) = &shared.config.auth_secret else {
        return Ok(if query.role.as_deref() == Some("relay") {
            Right::Relay
        } else {
            Right::Write
        });
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = query
        .token
        .as_deref()
        .or(bearer)
        .ok_or(AuthError::Missing)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(auth::verify(secret, token, doc, now)?.right)
}

/// Document ids: 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -` (safe in a URL path
/// segment as they are).
pub fn valid_doc_id(doc: &str) -> bool {
    (1..=128).contains(&doc.len())
        && doc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// The room of `doc`, started if it is not running (`None` while shutting down).
fn room(shared: &Arc<Shared>, doc: &str) -> Option<mpsc::Sender<RoomMsg>> {
    let mut rooms = shared.rooms.lock().expect("rooms lock");
    if let Some(tx) = rooms.get(doc) {
        if !tx.is_closed() {
            return Some(tx.clone());
        }
    }
    if *shared.shutdown.borrow() {
        return None;
    }
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    rooms.insert(doc.to_owned(), tx.clone());
    let span = tracing::info_span!("room", doc = %doc);
    tokio::spawn(run_room(doc.to_owned(), rx, tx.downgrade(), shared.clone()).instrument(span));
    Some(tx)
}

/// Joins the room of `doc` (asking again if it was closing just then).
async fn join(
    shared: &Arc<Shared>,
    doc: &str,
    conn: LinkId,
    out: &mpsc::Sender<Vec<u8>>,
    closer: &Closer,
    right: Right,
) -> Option<mpsc::Sender<RoomMsg>> {
    for _ in 0..8 {
        let tx = room(shared, doc)?;
        let (reply, joined) = oneshot::channel();
        let msg = RoomMsg::Join {
            conn,
            out: out.clone(),
            closer: closer.clone(),
            right,
            reply,
        };
        if tx.send(msg).await.is_ok() && joined.await.is_ok() {
            return Some(tx);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// A token bucket: `rate` per second on average, bursts of `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Bucket {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn connection(
    socket: WebSocket,
    conn: LinkId,
    doc: String,
    access: Result<Right, Refusal>,
    shared: Arc<Shared>,
) {
    let _alive = shared.alive.clone();
    let metrics = shared.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();
    let limits = shared.config.limits.clone();
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(limits.outgoing_queue.max(1));
    let (closer, close_rx) = Closer::new();
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(
        write_loop(sink, out_rx, close_rx, limits.ping, metrics.clone()).in_current_span(),
    );
    let room_tx = match access {
        Ok(right) => match join(&shared, &doc, conn, &out_tx, &closer, right).await {
            Some(tx) => {
                tracing::debug!(?right, "joined");
                Some(tx)
            }
            None => {
                closer.close(1001, "the relay is shutting down");
                None
            }
        },
        Err(refusal) => {
            metrics.refused(match &refusal {
                Refusal::BadDocId => "bad_doc_id",
                Refusal::Unauthorized(e) => e.reason(),
                _ => "other",
            });
            closer.refuse(&refusal);
            None
        }
    };
    if let Some(room_tx) = room_tx {
        let mut bucket = Bucket::new(limits.rate_per_sec, limits.rate_burst);
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(limits.idle, stream.next()) => next,
                // Closed by the room (refused, too slow, shutting down) or gone.
                _ = &mut writer => break,
            };
            let msg = match next {
                Err(_) => {
                    let secs = limits.idle.as_secs_f64();
                    closer.close(1001, format!("idle: nothing received for {secs} s"));
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    if too_big(e) {
                        closer.refuse(&Refusal::FrameTooBig(limits.max_frame_bytes));
                    }
                    break;
                }
                Ok(Some(Ok(msg))) => msg,
            };
            match msg {
                WsMessage::Binary(bytes) => {
                    metrics.frames_in.inc();
                    metrics.bytes_in.inc_by(bytes.len() as u64);
                    if bytes.len() > limits.max_frame_bytes {
                        closer.refuse(&Refusal::FrameTooBig(limits.max_frame_bytes));
                        break;
                    }
                    if !bucket.take() {
                        closer.refuse(&Refusal::RateLimited(limits.rate_per_sec));
                        break;
                    }
                    let frame = RoomMsg::Frame {
                        conn,
                        bytes: bytes.to_vec(),
                    };
                    if room_tx.send(frame).await.is_err() {
                        break;
                    }
                }
                WsMessage::Text(_) => {
                    closer.close(1003, "binary frames only: this is the Chorus sync protocol");
                    break;
                }
                WsMessage::Close(_) => break,
                // tungstenite answers pings; a pong only shows the peer is alive.
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
        }
        let _ = room_tx.send(RoomMsg::Leave { conn }).await;
    }
    drop(out_tx);
    // The writer sends the close (if one was asked for) or ends once the room has let
    // go of the connection too.
    if !writer.is_finished()
        && tokio::time::timeout(Duration::from_secs(5), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    metrics.connections.dec();
}

/// Whether a read failed because a frame exceeded the size limit.
fn too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let inner = e.into_inner();
    matches!(inner.downcast_ref::<Error>(), Some(Error::Capacity(_)))
}

/// Sends a connection's frames and pings, until the queue ends or a close is asked
/// for: then the close goes out at once, ahead of anything still queued.
async fn write_loop(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut close: watch::Receiver<Option<Close>>,
    ping: Duration,
    metrics: Arc<Metrics>,
) {
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
    loop {
        let msg = tokio::select! {
            biased;
            _ = close.changed() => break,
            out = rx.recv() => match out {
                None => {
                    let _ = sink.close().await;
                    return;
                }
                Some(f) => {
                    metrics.frames_out.inc();
                    metrics.bytes_out.inc_by(f.len() as u64);
                    WsMessage::Binary(f.into())
                }
            },
            _ = heartbeat.tick() => WsMessage::Ping(Default::default()),
        };
        // A close asked for while a send is stuck (a peer that does not read) wins.
        tokio::select! {
            biased;
            _ = close.changed() => break,
            sent = sink.send(msg) => if sent.is_err() { return },
        }
    }
    let Some(c) = close.borrow().clone() else {
        return;
    };
    metrics.closed(c.code);
    let send_close = async {
        if let Some(error) = c.error {
            sink.send(WsMessage::Binary(error.into())).await?;
        }
        let frame = CloseFrame {
            code: c.code,
            reason: c.reason.into(),
        };
        sink.send(WsMessage::Close(Some(frame))).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), send_close).await;
}

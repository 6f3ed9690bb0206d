//! A reconnecting WebSocket transport: binary frames in and out of one URL, with
//! exponential backoff between attempts. It knows nothing of the sync protocol; the
//! [`Client`](crate::Client), relay-to-relay federation and the load test put a
//! `chorus_sync::Session` on top, fresh for every connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Ws};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The close codes after which reconnecting cannot help: 1003 (unsupported data),
/// 1007 (invalid payload: an update the relay cannot apply), 1008 (policy: a bad token,
/// a write on a read-only token...).
pub const FINAL_CLOSE_CODES: [u16; 3] = [1003, 1007, 1008];

/// How often an idle connection is pinged, and after how long without hearing
/// anything it is considered dead.
const KEEPALIVE: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(2);
/// How long a close handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time. tungstenite zeroes this much before every
/// read, so its default (128 KiB) costs more than the frames themselves when many
/// small ones arrive (a quarter of the CPU of a 1000-client load test); a large frame
/// still arrives whole, its room reserved from its header.
const READ_BUFFER: usize = 8 * 1024;
/// The largest frame or message accepted from the relay (a document's full state can
/// be large; the relay's default document limit is 256 MiB).
const MAX_MESSAGE: usize = 512 << 20;

/// Delays between reconnection attempts: exponential from `min` to `max`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first) without jitter:
    /// `min · 2^attempt`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, given `jitter` in `[0, 1)`: between half
    /// the [`ceiling`](Self::ceiling) and all of it, so clients that lost the relay at
    /// the same moment do not all come back at the same moment.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// What happens on a [`Link`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A connection is up. Connections are numbered 1, 2, 3… in the order of these
    /// events (see [`Link::send_on`]).
    Connected,
    /// A binary frame arrived.
    Frame(Vec<u8>),
    /// The connection went down: the close code and reason the peer sent (or this end,
    /// when it closed), `None` when the connection was lost without a close frame or
    /// refused before it opened.
    Disconnected {
        /// The WebSocket close code.
        code: Option<u16>,
        /// Why, for people.
        reason: String,
    },
}

/// A reconnecting WebSocket connection to one URL. Clones share the connection;
/// dropping every clone (or [`close`](Self::close)) stops it.
#[derive(Debug, Clone)]
pub struct Link {
    handle: Arc<Handle>,
}

/// Owned by the handles only: when the last one goes, `ctl` closes and the task stops.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    ctl: mpsc::UnboundedSender<Ctl>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The current connection's number and outgoing queue.
    current: Mutex<Option<(u64, mpsc::UnboundedSender<Vec<u8>>)>>,
    connected: AtomicBool,
}

#[derive(Debug)]
enum Ctl {
    Close,
    Reconnect { code: u16, reason: String },
}

/// Why a connection ended, and what comes next.
struct End {
    code: Option<u16>,
    reason: String,
    next: Next,
}

#[derive(PartialEq, Eq)]
enum Next {
    Retry,
    Stop,
}

impl Link {
    /// Connects to `url` (a full `ws://` URL, query included) and keeps reconnecting
    /// with `backoff` until closed. Events go to the returned receiver, in order. A
    /// close from the server with a [final code](FINAL_CLOSE_CODES), or a refusal of
    /// the upgrade with an HTTP client error (401, 403, 404…), stops reconnecting: it is
    /// reported as `Disconnected`, then the receiver ends.
    ///
    /// Must be called within a Tokio runtime.
    pub fn spawn(url: String, backoff: Backoff) -> (Link, mpsc::UnboundedReceiver<LinkEvent>) {
        let shared = Arc::new(Shared::default());
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(url, backoff, shared.clone(), ctl_rx, ev_tx));
        let link = Link {
            handle: Arc::new(Handle {
                shared,
                ctl: ctl_tx,
            }),
        };
        (link, ev_rx)
    }

    /// Queues a binary frame on the current connection; `false` when there is none (the
    /// frame is dropped: a sync session repairs on reconnect).
    ///
    /// A frame queued here may go out on a connection whose `Connected` event the
    /// caller has not seen yet; a caller that keeps per-connection state (a sync
    /// session) uses [`send_on`](Self::send_on).
    pub fn send(&self, frame: Vec<u8>) -> bool {
        let current = self.current();
        match current.as_ref() {
            Some((_, tx)) => tx.send(frame).is_ok(),
            None => false,
        }
    }

    /// Queues a binary frame on connection number `connection` (the count of
    /// `Connected` events received so far); `false` when that connection is not the
    /// current one any more (the frame is dropped).
    pub fn send_on(&self, connection: u64, frame: Vec<u8>) -> bool {
        let current = self.current();
        match current.as_ref() {
            Some((n, tx)) if *n == connection => tx.send(frame).is_ok(),
            _ => false,
        }
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.handle.shared.connected.load(Ordering::Acquire)
    }

    /// Closes the current connection with `code` and `reason` and connects again after
    /// the backoff, whatever the code (a client that found the peer broke the protocol
    /// starts over).
    pub fn reconnect(&self, code: u16, reason: impl Into<String>) {
        let _ = self.handle.ctl.send(Ctl::Reconnect {
            code,
            reason: reason.into(),
        });
    }

    /// Closes with 1000 and stops; the receiver gets `Disconnected` (if connected),
    /// then ends.
    pub fn close(&self) {
        let _ = self.handle.ctl.send(Ctl::Close);
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(u64, mpsc::UnboundedSender<Vec<u8>>)>> {
        self.handle
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn run(
    url: String,
    backoff: Backoff,
    shared: Arc<Shared>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut attempt: u32 = 0;
    let mut number: u64 = 0;
    loop {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connecting =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        let connected = tokio::select! {
            r = connecting => r,
            c = ctl.recv() => match c {
                None | Some(Ctl::Close) => return,
                // Not connected: nothing to close, try again now.
                Some(Ctl::Reconnect { .. }) => continue,
            },
        };
        let ws = match connected {
            Ok((ws, _)) => ws,
            Err(e) => {
                if let Some(reason) = refusal(&e) {
                    tracing::warn!(%url, %reason, "the relay refused the connection; not retrying");
                    let _ = events.send(LinkEvent::Disconnected { code: None, reason });
                    return;
                }
                tracing::debug!(%url, error = %e, attempt, "cannot connect; will retry");
                if !pause(backoff.delay(attempt, rand::random()), &mut ctl).await {
                    return;
                }
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        number += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        *shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((number, tx));
        shared.connected.store(true, Ordering::Release);
        tracing::debug!(%url, connection = number, "connected");
        let _ = events.send(LinkEvent::Connected);
        let started = Instant::now();
        let end = serve(ws, rx, &mut ctl, &events).await;
        *shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        shared.connected.store(false, Ordering::Release);
        tracing::debug!(%url, connection = number, code = ?end.code, reason = %end.reason, "disconnected");
        let _ = events.send(LinkEvent::Disconnected {
            code: end.code,
            reason: end.reason,
        });
        if end.next == Next::Stop {
            return;
        }
        if started.elapsed() >= STABLE {
            attempt = 0;
        }
        if !pause(backoff.delay(attempt, rand::random()), &mut ctl).await {
            return;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Waits `delay`; `false` if the link was closed meanwhile.
async fn pause(delay: Duration, ctl: &mut mpsc::UnboundedReceiver<Ctl>) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return true,
            c = ctl.recv() => match c {
                None | Some(Ctl::Close) => return false,
                // Not connected: an asked-for reconnect is what we are waiting to do.
                Some(Ctl::Reconnect { .. }) => {}
            },
        }
    }
}

/// Why retrying cannot help, if so: the server refused the upgrade with an HTTP client
/// error (a bad token, an unknown path), or the URL cannot work.
fn refusal(e: &tungstenite::Error) -> Option<String> {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            let retry =
                !status.is_client_error() || status.as_u16() == 408 || status.as_u16() == 429;
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            (!retry).then(|| format!("HTTP {status}: {}", body.trim()))
        }
        tungstenite::Error::Url(u) => Some(format!("bad URL: {u}")),
        _ => None,
    }
}

/// Moves frames both ways until the connection ends or the handle asks it to.
async fn serve(
    ws: Socket,
    mut out: mpsc::UnboundedReceiver<Vec<u8>>,
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
    events: &mpsc::UnboundedSender<LinkEvent>,
) -> End {
    let (mut sink, mut stream) = ws.split();
    let lost = |reason: String| End {
        code: None,
        reason,
        next: Next::Retry,
    };
    let mut ping = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            f = out.recv() => {
                let Some(f) = f else { return lost("outgoing queue closed".into()) };
                if let Err(e) = sink.send(Ws::Binary(f.into())).await {
                    return lost(e.to_string());
                }
            }
            m = stream.next() => {
                heard = Instant::now();
                match m {
                    Some(Ok(Ws::Binary(b))) => {
                        let _ = events.send(LinkEvent::Frame(b.into()));
                    }
                    Some(Ok(Ws::Close(frame))) => {
                        // Our reply to the close goes out with the next flush.
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                        let (code, reason) = match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, "closed by the peer without a code".into()),
                        };
                        let stop = code.is_some_and(|c| FINAL_CLOSE_CODES.contains(&c));
                        return End {
                            code,
                            reason,
                            next: if stop { Next::Stop } else { Next::Retry },
                        };
                    }
                    Some(Ok(Ws::Text(_))) => {
                        tracing::debug!("ignoring a text frame (the protocol is binary)");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return lost(e.to_string()),
                    None => return lost("connection closed".into()),
                }
            }
            c = ctl.recv() => {
                let (code, reason, next) = match c {
                    None | Some(Ctl::Close) => (1000, "closed".to_owned(), Next::Stop),
                    Some(Ctl::Reconnect { code, reason }) => (code, reason, Next::Retry),
                };
                close(sink, stream, code, &reason).await;
                return End { code: Some(code), reason, next };
            }
            _ = ping.tick() => {
                if heard.elapsed() >= DEAD_AFTER {
                    return lost(format!("nothing heard for {} s", DEAD_AFTER.as_secs()));
                }
                if let Err(e) = sink.send(Ws::Ping(Vec::new().into())).await {
                    return lost(e.to_string());
                }
            }
        }
    }
}

/// Sends a close frame and waits (briefly) for the peer's, discarding what comes first.
async fn close(
    mut sink: futures_util::stream::SplitSink<Socket, Ws>,
    mut stream: futures_util::stream::SplitStream<Socket>,
    code: u16,
    reason: &str,
) {
    // A close reason holds at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: code.into(),
        reason: reason[..end].to_owned().into(),
    };
    let handshake = async {
        if sink.send(Ws::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Ws::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let ms = |d: Duration| d.as_millis();
        let ceilings: Vec<u128> = (0..9).map(|a| ms(b.ceiling(a))).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        // Very late attempts neither overflow nor exceed the cap.
        assert_eq!(b.ceiling(40), b.max);
        assert_eq!(b.ceiling(u32::MAX), b.max);
        // Jitter keeps a delay between half the ceiling and the ceiling.
        for a in [0, 3, 20] {
            assert_eq!(b.delay(a, 0.0), b.ceiling(a) / 2);
            assert_eq!(b.delay(a, 1.0), b.ceiling(a));
            let d = b.delay(a, 0.3);
            assert!(d > b.ceiling(a) / 2 && d < b.ceiling(a));
        }
        // A cap below the minimum wins.
        let odd = Backoff {
            min: Duration::from_secs(5),
            max: Duration::from_secs(1),
        };
        assert_eq!(odd.ceiling(0), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_refused_url_ends_the_link() {
        // A URL the link cannot use at all ends it at once.
        let (_link, mut events) = Link::spawn("ftp://localhost/ws/x".into(), Backoff::default());
        match events.recv().await {
            Some(LinkEvent::Disconnected { code: None, reason }) => {
                assert!(reason.contains("URL"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(events.recv().await, None);
    }

    #[tokio::test]
    async fn closing_while_unreachable_ends_the_receiver() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let (link, mut events) =
            Link::spawn(format!("ws://127.0.0.1:{port}/ws/x"), Backoff::default());
        assert!(!link.is_connected());
        assert!(!link.send(vec![1]));
        link.close();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap(),
            None
        );
    }
}

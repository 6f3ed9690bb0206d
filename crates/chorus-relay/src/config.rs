//! How a relay runs: storage, access, limits, federation.

use std::path::PathBuf;
use std::time::Duration;

/// How the relay runs. [`Config::new`] gives safe defaults.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where the SQLite file lives.
    pub data_dir: PathBuf,
    /// The HMAC secret access tokens are signed with (see [`crate::auth`]). Without
    /// one, every connection may write (meant for a relay on a loopback address).
    pub auth_secret: Option<Vec<u8>>,
    /// Other relays to peer with (`ws://host:port`): every open room links to the
    /// same document on each of them, as another leader.
    pub peers: Vec<String>,
    /// Files served at `/` (the web demo), if any.
    pub static_dir: Option<PathBuf>,
    /// How often rooms repair lost frames and check deadlines.
    pub tick: Duration,
    /// The log entries of a document after which it is compacted into a snapshot.
    pub compact_after: u64,
    /// How long a room with no client stays open, quiet, before it is stored and
    /// closed.
    pub room_idle: Duration,
    /// How long presence states live without renewal.
    pub awareness_timeout: Duration,
    /// Limits per connection and per document.
    pub limits: Limits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field(
                "auth_secret",
                &self.auth_secret.as_ref().map(|_| "<secret>"),
            )
            .field("peers", &self.peers)
            .field("static_dir", &self.static_dir)
            .field("tick", &self.tick)
            .field("compact_after", &self.compact_after)
            .field("room_idle", &self.room_idle)
            .field("awareness_timeout", &self.awareness_timeout)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Config {
    /// Defaults, storing under `data_dir`, open (no access tokens), no peers.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            auth_secret: None,
            peers: Vec::new(),
            static_dir: None,
            tick: Duration::from_millis(200),
            compact_after: 1000,
            room_idle: Duration::from_secs(30),
            awareness_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// What one connection (or one document) may use. A connection that goes beyond a
/// limit is closed with a close code and a reason; nobody else notices.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// The largest frame accepted (close 1009 beyond).
    pub max_frame_bytes: usize,
    /// The largest stored size of a document (snapshot and log); an update that would
    /// make it larger is refused (close 1009).
    pub max_doc_bytes: u64,
    /// Frames per second a connection may send on average (close 1008 beyond)...
    pub rate_per_sec: u32,
    /// ...with bursts of this many.
    pub rate_burst: u32,
    /// Operations that may wait in a document for missing dependencies; an update
    /// that would make more wait is refused (close 1008).
    pub max_pending_ops: usize,
    /// How long a new connection has to send its `Hello` (close 1008).
    pub handshake: Duration,
    /// How long a connection may stay silent — no frame, no pong — before it is
    /// closed (1001).
    pub idle: Duration,
    /// How often the relay pings each connection (a live peer answers with a pong).
    pub ping: Duration,
    /// Frames waiting to go out to one connection; beyond that it is closed (1013).
    pub outgoing_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 << 20,
            max_doc_bytes: 256 << 20,
            rate_per_sec: 200,
            rate_burst: 1000,
            max_pending_ops: 100_000,
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            ping: Duration::from_secs(20),
            outgoing_queue: 1024,
        }
    }
}

//! `chorus relay`: the WebSocket relay.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// Options of `chorus relay`; each flag falls back to an environment variable.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Where to listen. A non-loopback address needs `--auth-secret` and
    /// `--public`.
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where documents are stored (an SQLite file inside).
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "chorus-data")]
    pub data_dir: PathBuf,
    /// The secret access tokens are signed with (at least 16 bytes; mint tokens with
    /// `chorus token`). Without it the relay serves openly, on loopback only.
    #[arg(long, env = "CHORUS_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// Serve on a non-loopback address (requires `--auth-secret`).
    #[arg(long, env = "CHORUS_PUBLIC")]
    pub public: bool,
    /// A peer relay (`ws://host:port`) leading the same documents; repeatable.
    #[arg(long = "peer", env = "CHORUS_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Files to serve at `/` (the web demo).
    #[arg(long, env = "CHORUS_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// The largest frame accepted, in bytes.
    #[arg(long, env = "CHORUS_MAX_FRAME_BYTES", default_value_t = 16 << 20)]
    pub max_frame_bytes: usize,
    /// The largest stored document, in bytes.
    #[arg(long, env = "CHORUS_MAX_DOC_BYTES", default_value_t = 256 << 20)]
    pub max_doc_bytes: u64,
    /// Frames per second a connection may send on average.
    #[arg(long, env = "CHORUS_RATE", default_value_t = 200)]
    pub rate: u32,
    /// Frames a connection may send in a burst.
    #[arg(long, env = "CHORUS_RATE_BURST", default_value_t = 1000)]
    pub rate_burst: u32,
    /// Operations that may wait in a document for missing dependencies.
    #[arg(long, env = "CHORUS_MAX_PENDING_OPS", default_value_t = 100_000)]
    pub max_pending_ops: usize,
    /// Seconds a new connection has to send its Hello.
    #[arg(long, env = "CHORUS_HANDSHAKE_SECS", default_value_t = 10)]
    pub handshake_secs: u64,
    /// Seconds of silence (no frame, no pong) after which a connection is closed.
    #[arg(long, env = "CHORUS_IDLE_SECS", default_value_t = 60)]
    pub idle_secs: u64,
    /// Seconds between pings to each connection.
    #[arg(long, env = "CHORUS_PING_SECS", default_value_t = 20)]
    pub ping_secs: u64,
    /// Frames queued for one connection before it is closed as too slow (1013).
    #[arg(long, env = "CHORUS_OUTGOING_QUEUE", default_value_t = 1024)]
    pub outgoing_queue: usize,
    /// Seconds a room with no client stays open before it is stored and closed.
    #[arg(long, env = "CHORUS_ROOM_IDLE_SECS", default_value_t = 30)]
    pub room_idle_secs: u64,
}

impl RelayArgs {
    fn config(&self) -> anyhow::Result<chorus_relay::Config> {
        let mut config = chorus_relay::Config::new(&self.data_dir);
        if let Some(secret) = &self.auth_secret {
            if secret.len() < 16 {
                bail!("--auth-secret must be at least 16 bytes long");
            }
            config.auth_secret = Some(secret.as_bytes().to_vec());
        }
        for peer in &self.peers {
            if !(peer.starts_with("ws://") || peer.starts_with("wss://")) {
                bail!("--peer {peer:?}: give a ws:// or wss:// URL");
            }
        }
        config.peers = self.peers.clone();
        config.static_dir = self.static_dir.clone();
        config.room_idle = Duration::from_secs(self.room_idle_secs);
        let l = &mut config.limits;
        l.max_frame_bytes = self.max_frame_bytes;
        l.max_doc_bytes = self.max_doc_bytes;
        l.rate_per_sec = self.rate;
        l.rate_burst = self.rate_burst;
        l.max_pending_ops = self.max_pending_ops;
        l.handshake = Duration::from_secs(self.handshake_secs);
        l.idle = Duration::from_secs(self.idle_secs);
        l.ping = Duration::from_secs(self.ping_secs.max(1));
        l.outgoing_queue = self.outgoing_queue;
        Ok(config)
    }
}

pub fn run(args: &RelayArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if !args.listen.ip().is_loopback() {
        if config.auth_secret.is_none() {
            bail!(
                "{} is not a loopback address: without --auth-secret the relay serves only \
                 this machine",
                args.listen
            );
        }
        if !args.public {
            bail!(
                "{} is not a loopback address: pass --public to serve other machines",
                args.listen
            );
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let access = if config.auth_secret.is_some() {
            "access by token"
        } else {
            "OPENLY: no access tokens (--auth-secret), loopback only"
        };
        eprintln!(
            "chorus relay: serving http://{addr} ({access}), storing in {}{}",
            args.data_dir.display(),
            if config.peers.is_empty() {
                String::new()
            } else {
                format!(", peering with {}", config.peers.join(", "))
            }
        );
        if let Some(dir) = &config.static_dir {
            eprintln!(
                "chorus relay: the web demo is at http://{addr}/ (from {}; ?doc=NAME picks the document)",
                dir.display()
            );
        }
        chorus_relay::serve_with_shutdown(config, listener, shutdown_signal())
            .await
            .context("serving")?;
        eprintln!("chorus relay: stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

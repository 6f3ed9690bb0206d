//! `chorus relay`: the WebSocket relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Options of `chorus relay`; each flag falls back to an environment variable.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Where to listen. Only loopback addresses are accepted until access tokens are
    /// supported.
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where documents are stored (an SQLite file inside).
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "chorus-data")]
    pub data_dir: PathBuf,
}

pub fn run(args: &RelayArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: without access tokens the relay serves only \
             this machine",
            args.listen
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!(
            "chorus relay: serving http://{} openly (loopback only, no access tokens), \
             storing in {}",
            listener.local_addr()?,
            args.data_dir.display()
        );
        chorus_relay::serve(chorus_relay::Config::new(&args.data_dir), listener)
            .await
            .context("serving")
    })
}

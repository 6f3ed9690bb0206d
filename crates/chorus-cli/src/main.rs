//! `chorus`: the Chorus command-line tool.
//!
//! Subcommands:
//! - `chorus replay <trace.json[.gz]>`: replay a real editing trace, check the result,
//!   and print timing, size and memory statistics as JSON.
//! - `chorus relay`: serve documents over WebSockets (`/ws/{doc}`), storing them in
//!   SQLite under `--data-dir`.
//! - `chorus sim`: simulate replicas syncing over a faulty network in a topology, and
//!   print convergence latency and traffic (`--compare`: every topology, with and
//!   without failures; `--plot`: latency against the number of replicas, as SVG).
//! - `chorus token`: mint an access token (`--doc` or `--prefix`, `--right`, `--ttl`)
//!   signed with the relay's secret (`CHORUS_AUTH_SECRET`), and print it.
//! - `chorus loadtest`: many WebSocket clients typing into a relay at once; prints
//!   throughput and acknowledgement latency, and checks nothing acknowledged is lost
//!   and every document converges.

mod loadtest;
mod relay;
mod replay;
mod sim;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use chorus_trace::CountingAlloc;
use clap::{Parser, Subcommand};

/// Counts allocated bytes so `replay` can report peak memory.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Chorus: a CRDT-based collaborative text sync engine.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay an editing trace (sequential or concurrent), check the final text
    /// against its endContent, and print statistics as JSON.
    Replay {
        /// The trace file (`.json` or `.json.gz`).
        trace: PathBuf,
        /// Pretty-print the JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Serve documents over WebSockets at `/ws/{doc}`, storing them durably.
    Relay(relay::RelayArgs),
    /// Simulate replicas syncing over a network with latency, jitter, loss and
    /// duplication, wired in a topology, and print convergence latency and traffic.
    Sim(sim::SimArgs),
    /// Mint an access token for a relay that shares the secret, and print it.
    Token(token::TokenArgs),
    /// Run many clients typing into a relay at once; print throughput and ack
    /// latency, and check that no acknowledged edit is lost and every document
    /// converges.
    Loadtest(loadtest::LoadtestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay { trace, pretty } => replay::run(&trace, pretty),
        Command::Sim(args) => sim::run(&args),
        Command::Relay(args) => relay::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Loadtest(args) => loadtest::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! `chorus loadtest`: many real WebSocket clients typing into one relay at once.
//!
//! N clients (`chorus_client::Client`, memory-only) spread over M documents type small
//! inserts at random places at R edits per second each for S seconds. Every insert is
//! a unique marker (`<run.client.n>`) placed between markers, so the final text shows
//! which edits arrived. The test measures each edit's acknowledgement latency (edit →
//! the relay's `Ack` covering it), then waits for every client to be saved and, per
//! document, opens a fresh reader to check that (a) every acknowledged edit is in it
//! exactly once and (b) every client of the document shows the reader's text.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use chorus_client::{Client, ClientConfig};
use chorus_doc::VersionVector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long clients may take to connect (plus a little per client), how soon the
/// first must have, and how long readers may take to catch up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_PER_CLIENT: Duration = Duration::from_millis(20);
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `chorus loadtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestArgs {
    /// The relay's base URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// WebSocket clients, each its own replica.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Documents the clients are spread over (round robin).
    #[arg(long, default_value_t = 10)]
    pub docs: usize,
    /// Edits per second per client.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds of typing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Document ids are `{prefix}-0` … `{prefix}-{docs-1}`.
    #[arg(long, default_value = "load")]
    pub prefix: String,
    /// An access token for every client (one granting write on the prefix).
    #[arg(long)]
    pub token: Option<String>,
    /// Seconds to wait after typing for every edit to be acknowledged.
    #[arg(long, default_value_t = 30.0)]
    pub settle: f64,
}

/// What a load test measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub clients: usize,
    pub docs: usize,
    pub edits: u64,
    pub acked: u64,
    /// Edits that were acknowledged but are missing from their document.
    pub lost: u64,
    /// Edits that are in their document more than once.
    pub duplicated: u64,
    pub converged: usize,
    /// How long the clients typed.
    pub typing: Duration,
    /// From the first edit to the last acknowledgement.
    pub until_last_ack: Duration,
    /// Acknowledgement latencies, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    /// Nothing lost, nothing doubled, every edit acknowledged, every document converged.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.acked == self.edits
            && self.converged == self.docs
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_sec = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "clients              {}", self.clients)?;
        writeln!(f, "documents            {}", self.docs)?;
        writeln!(
            f,
            "edits made           {} ({:.1}/s over {:.1} s)",
            self.edits,
            per_sec(self.edits, self.typing),
            self.typing.as_secs_f64()
        )?;
        writeln!(
            f,
            "edits acknowledged   {} ({:.1}/s until the last ack); not acknowledged {}",
            self.acked,
            per_sec(self.acked, self.until_last_ack),
            self.edits - self.acked
        )?;
        writeln!(
            f,
            "ack latency          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default())
        )?;
        writeln!(
            f,
            "edits lost           {} (duplicated {})",
            self.lost, self.duplicated
        )?;
        writeln!(f, "documents converged  {}/{}", self.converged, self.docs)
    }
}

pub fn run(args: &LoadtestArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // A socket per client and per reader, and some to spare.
    ensure_fd_limit((args.clients + args.docs) as u64 + 64)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    eprintln!(
        "chorus loadtest: {} clients on {} documents at {}, {} edits/s each for {} s",
        args.clients, args.docs, args.url, args.rate, args.duration
    );
    let report = runtime.block_on(loadtest(args))?;
    print!("{report}");
    if !report.passed() {
        bail!(
            "{} edits lost, {} duplicated, {} not acknowledged, {} of {} documents not converged",
            report.lost,
            report.duplicated,
            report.edits - report.acked,
            report.docs - report.converged,
            report.docs
        );
    }
    Ok(())
}

/// One edit a client made.
struct Edit {
    marker: String,
    /// This client's version right after it.
    version: VersionVector,
    at: Instant,
}

/// Runs the load test against the relay at `args.url`.
pub async fn loadtest(args: &LoadtestArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.docs == 0 {
        bail!("--clients and --docs must be at least 1");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) || args.duration.is_nan() || args.duration < 0.0
    {
        bail!("--rate must be positive and --duration not negative");
    }
    let doc_ids: Vec<String> = (0..args.docs)
        .map(|d| format!("{}-{d}", args.prefix))
        .collect();
    for id in &doc_ids {
        chorus_client::check_doc_id(id).with_context(|| format!("--prefix {:?}", args.prefix))?;
    }
    let config = |doc: &str| {
        let mut c = ClientConfig::new(args.url.clone(), doc);
        c.token = args.token.clone();
        c
    };

    // Connect everybody before typing starts.
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (client, _events) = Client::open(config(&doc_ids[i % args.docs]))
            .await
            .context("opening a client")?;
        clients.push(client);
    }
    let opened = Instant::now();
    let timeout = CONNECT_TIMEOUT + CONNECT_PER_CLIENT * args.clients as u32;
    loop {
        let up = clients.iter().filter(|c| c.is_connected()).count();
        if up == clients.len() {
            break;
        }
        let waited = opened.elapsed();
        if waited >= timeout || (up == 0 && waited >= FIRST_CONNECT_TIMEOUT) {
            bail!(
                "only {up} of {} clients connected within {:.0} s; is the relay at {} running \
                 (and does it accept the token)?",
                clients.len(),
                waited.as_secs_f64(),
                args.url
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Type, and measure when each edit is acknowledged.
    let run_id: u32 = rand::random::<u32>() & 0xff_ffff;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let settle_end = end + Duration::from_secs_f64(args.settle.max(0.0));
    let mut typists = Vec::with_capacity(clients.len());
    for (i, client) in clients.iter().enumerate() {
        let typing = client.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Edit>();
        let typist = tokio::spawn(async move {
            let client = typing;
            let mut rng = StdRng::seed_from_u64(rand::random());
            // Spread the clients' edits over the period.
            let mut next = start + period.mul_f64(rng.random::<f64>());
            let mut n = 0u64;
            while next < end {
                tokio::time::sleep_until(next).await;
                next += period;
                let marker = format!("<{run_id:x}.{i}.{n}>");
                n += 1;
                let at = Instant::now();
                let pick = rng.random::<f64>();
                client.edit(|tx| {
                    let mut text = tx.text("t");
                    let places = boundaries(&text.view().to_string());
                    let place =
                        places[((pick * places.len() as f64) as usize).min(places.len() - 1)];
                    text.insert(place, &marker)
                })??;
                let _ = tx.send(Edit {
                    marker,
                    version: client.version(),
                    at,
                });
            }
            anyhow::Ok(())
        });
        let client = client.clone();
        let waiter = tokio::spawn(async move {
            // (marker, latency if acknowledged, when)
            let mut out: Vec<(String, Option<(Duration, Instant)>)> = Vec::new();
            while let Some(e) = rx.recv().await {
                let left = settle_end.saturating_duration_since(Instant::now());
                let acked = client.wait_acked(&e.version, left).await;
                let now = Instant::now();
                out.push((e.marker, acked.then(|| (now - e.at, now))));
            }
            out
        });
        typists.push((typist, waiter));
    }
    let mut results = Vec::with_capacity(typists.len());
    for (typist, waiter) in typists {
        typist.await.context("a typing task")??;
        results.push(waiter.await.context("a waiting task")?);
    }
    let mut report = Report {
        clients: args.clients,
        docs: args.docs,
        typing: end - start,
        ..Report::default()
    };
    let mut last_ack = start;
    for edits in &results {
        for (_, acked) in edits {
            report.edits += 1;
            if let Some((latency, when)) = acked {
                report.acked += 1;
                report.latencies.push(*latency);
                last_ack = last_ack.max(*when);
            }
        }
    }
    report.latencies.sort();
    report.until_last_ack = last_ack - start;

    // Per document: a fresh reader gets everything the relay has; every acknowledged
    // edit must be in it once, and every writer must show the same text.
    let mut checks = Vec::new();
    for (d, id) in doc_ids.iter().enumerate() {
        let writers: Vec<(Client, Vec<(String, bool)>)> = (d..args.clients)
            .step_by(args.docs)
            .map(|i| {
                let edits = results[i]
                    .iter()
                    .map(|(m, a)| (m.clone(), a.is_some()))
                    .collect();
                (clients[i].clone(), edits)
            })
            .collect();
        let reader = Client::open(config(id))
            .await
            .context("opening a reader")?
            .0;
        checks.push(tokio::spawn(check_doc(reader, writers)));
    }
    for c in checks {
        let (lost, duplicated, converged) = c.await.context("a checking task")?;
        report.lost += lost;
        report.duplicated += duplicated;
        report.converged += usize::from(converged);
    }
    for c in clients {
        c.close().await;
    }
    Ok(report)
}

/// Waits for the reader and the writers of one document to agree, then counts
/// acknowledged edits missing from the reader, edits in it twice, and whether every
/// writer shows the reader's text.
async fn check_doc(
    reader: Client,
    writers: Vec<(Client, Vec<(String, bool)>)>,
) -> (u64, u64, bool) {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut target = VersionVector::new();
    for (w, _) in &writers {
        target.merge(&w.version());
    }
    loop {
        let v = reader.version();
        let agreed = v.dominates(&target) && writers.iter().all(|(w, _)| w.version() == v);
        if agreed || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = reader.read(|d| d.text("t").to_string());
    let counts = markers(&text);
    let (mut lost, mut duplicated) = (0, 0);
    for (_, edits) in &writers {
        for (marker, acked) in edits {
            match counts.get(marker.as_str()).copied().unwrap_or(0) {
                0 if *acked => lost += 1,
                0 | 1 => {}
                _ => duplicated += 1,
            }
        }
    }
    let converged = writers
        .iter()
        .all(|(w, _)| w.read(|d| d.text("t").to_string()) == text);
    reader.close().await;
    (lost, duplicated, converged)
}

/// The char positions between markers: the start, and after every `>`.
fn boundaries(text: &str) -> Vec<usize> {
    let mut out = vec![0];
    out.extend(
        text.chars()
            .enumerate()
            .filter(|&(_, c)| c == '>')
            .map(|(i, _)| i + 1),
    );
    out
}

/// How often each marker occurs in `text`.
fn markers(text: &str) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        *counts.entry(&rest[start..start + len + 1]).or_insert(0) += 1;
        rest = &rest[start + len + 1..];
    }
    counts
}

/// Makes sure this process may open `needed` file descriptors (a socket per client).
/// Raising the soft limit takes `setrlimit`, which std does not offer and this crate
/// does not call through unsafe code, so on Linux util-linux's `prlimit` raises it
/// for this process, up to the hard limit. Otherwise the error says what to run.
fn ensure_fd_limit(needed: u64) -> anyhow::Result<()> {
    let Some((soft, hard)) = fd_limits() else {
        // Not Linux (or no /proc): let the connections tell.
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    if hard >= needed {
        let want = needed.saturating_mul(2).min(hard);
        let hard_arg = if hard == u64::MAX {
            "unlimited".to_owned()
        } else {
            hard.to_string()
        };
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={want}:{hard_arg}"))
            .status();
        if fd_limits().is_some_and(|(soft, _)| soft >= needed) {
            return Ok(());
        }
    }
    bail!(
        "this load test needs about {needed} file descriptors (one per client and reader), \
         but the limit is {soft} (hard limit {hard}); raise it first, for example with \
         `ulimit -n {}`",
        needed.next_power_of_two().max(4096)
    )
}

/// This process's (soft, hard) limits on open files, from `/proc/self/limits`.
fn fd_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let value = |v: &str| match v {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    };
    Some((value(fields.next()?)?, value(fields.next()?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_boundaries() {
        let t = "<a.0.0><a.1.0><a.0.0>";
        assert_eq!(boundaries(t), [0, 7, 14, 21]);
        let m = markers(t);
        assert_eq!(m["<a.0.0>"], 2);
        assert_eq!(m["<a.1.0>"], 1);
        assert_eq!(boundaries(""), [0]);
    }

    #[test]
    fn the_fd_limit_is_read() {
        if let Some((soft, hard)) = fd_limits() {
            assert!(soft <= hard);
            assert!(ensure_fd_limit(soft).is_ok());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_load_test_against_an_in_process_relay_passes() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = tokio::spawn(chorus_relay::serve(
            chorus_relay::Config::new(dir.path()),
            listener,
        ));
        let args = LoadtestArgs {
            url: format!("ws://{addr}"),
            clients: 20,
            docs: 4,
            rate: 3.0,
            duration: 3.0,
            prefix: "lt".into(),
            token: None,
            settle: 20.0,
        };
        let report = loadtest(&args).await.unwrap();
        eprint!("{report}");
        assert!(report.edits >= 20 * 6, "{report}");
        assert!(report.passed(), "{report}");
        assert_eq!(report.latencies.len() as u64, report.acked);
        relay.abort();
    }
}

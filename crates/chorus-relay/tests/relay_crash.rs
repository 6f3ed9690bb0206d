//! The relay under SIGKILL: clients keep editing over real WebSockets while the relay
//! process is killed at random moments and restarted on the same data directory.
//! After every kill, every edit acknowledged before it is in the stored document;
//! at the end the clients, reconnected, converge with every edit exactly once.
//!
//! A test binary of its own (`harness = false`): it runs itself as the relay child.
//! `CHORUS_RELAY_KILLS` and `CHORUS_RELAY_CRASH_SEED` change the kills and the seed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_client::{Backoff, Client, ClientConfig};
use chorus_doc::{ReplicaId, VersionVector};
use chorus_relay::storage::{SqliteStore, load_doc};

const CHILD_DIR: &str = "CHORUS_RELAY_CRASH_DIR";
const CHILD_ADDR: &str = "CHORUS_RELAY_CRASH_ADDR";
const DOC: &str = "crash";
const CLIENTS: usize = 4;

fn main() {
    match (std::env::var(CHILD_DIR), std::env::var(CHILD_ADDR)) {
        (Ok(dir), Ok(addr)) => relay_child(&dir, &addr),
        _ => {
            acknowledged_edits_survive_relay_sigkills();
            println!("test acknowledged_edits_survive_relay_sigkills ... ok");
        }
    }
}

/// The child: a relay on `addr` storing in `dir`, until it is killed.
fn relay_child(dir: &str, addr: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let mut config = chorus_relay::Config::new(dir);
        config.tick = Duration::from_millis(50);
        println!("READY");
        chorus_relay::serve(config, listener).await.unwrap();
    });
}

fn spawn_relay(dir: &Path, addr: SocketAddr) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir)
        .env(CHILD_ADDR, addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "the relay child did not start");
    child
}

/// splitmix64: deterministic, replayable with the seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Every edit made: its marker, and the client's version right after it (the edit
/// is acknowledged once the relay's acked version covers that).
type Edits = Arc<Mutex<Vec<(usize, String, VersionVector)>>>;

fn acknowledged_edits_survive_relay_sigkills() {
    let kills: usize = std::env::var("CHORUS_RELAY_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let seed: u64 = std::env::var("CHORUS_RELAY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut relay = spawn_relay(dir.path(), addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let mut config = ClientConfig::new(format!("ws://{addr}"), DOC);
            config.tick = Duration::from_millis(50);
            config.backoff = Backoff {
                min: Duration::from_millis(10),
                max: Duration::from_millis(100),
            };
            let (client, _events) = Client::open(config).await.unwrap();
            clients.push(client);
        }
        let edits: Edits = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut typists = Vec::new();
        for (k, client) in clients.iter().enumerate() {
            let (client, edits, stop) = (client.clone(), edits.clone(), stop.clone());
            typists.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let marker = format!("<{k}.{n}>");
                    let version = client
                        .edit(|tx| {
                            let end = tx.text("t").len();
                            tx.text("t").insert(end, &marker).unwrap();
                        })
                        .map(|()| client.version())
                        .unwrap();
                    edits.lock().unwrap().push((k, marker, version));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5 + (n % 7) as u64)).await;
                }
            }));
        }
        let mut rng = SplitMix(seed);
        let mut checked = 0;
        for kill in 0..kills {
            tokio::time::sleep(Duration::from_millis(100 + rng.next() % 300)).await;
            // What the relay has acknowledged by now, it has stored.
            let acked: Vec<String> = {
                let edits = edits.lock().unwrap();
                let acked: Vec<VersionVector> = clients.iter().map(Client::acked).collect();
                edits
                    .iter()
                    .filter(|(k, _, v)| acked[*k].dominates(v))
                    .map(|(_, m, _)| m.clone())
                    .collect()
            };
            relay.kill().unwrap();
            relay.wait().unwrap();
            let text = stored_text(dir.path());
            for m in &acked {
                assert_eq!(
                    text.matches(m.as_str()).count(),
                    1,
                    "kill {kill}: acknowledged edit {m} is not stored exactly once"
                );
            }
            checked = acked.len();
            relay = spawn_relay(dir.path(), addr);
        }
        assert!(checked > 50, "only {checked} edits were acknowledged");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in typists {
            t.await.unwrap();
        }
        // The clients reconnect and converge: every edit, once.
        for c in &clients {
            assert!(
                c.wait_saved(Duration::from_secs(30)).await,
                "a client's edits were never all acknowledged"
            );
        }
        let markers: Vec<String> = edits.lock().unwrap().iter().map(|(_, m, _)| m.clone()).collect();
        let mut texts = Vec::new();
        for _ in 0..300 {
            texts = clients.iter().map(|c| c.read(|d| d.text("t").to_string())).collect::<Vec<_>>();
            if texts.iter().all(|t| t == &texts[0] && t.len() == total_len(&markers)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(texts.iter().all(|t| t == &texts[0]), "clients differ");
        let unique: HashSet<&String> = markers.iter().collect();
        assert_eq!(unique.len(), markers.len());
        for m in &markers {
            assert_eq!(texts[0].matches(m.as_str()).count(), 1, "{m}");
        }
        assert_eq!(texts[0].len(), total_len(&markers), "duplicated content");
        for c in clients {
            c.close().await;
        }
        println!(
            "{kills} relay SIGKILLs, {} edits by {CLIENTS} clients, {checked} acknowledged before the last kill",
            markers.len()
        );
    });
    relay.kill().unwrap();
    relay.wait().unwrap();
    // And what is stored is what the clients have.
    let _ = stored_text(dir.path());
}

fn total_len(markers: &[String]) -> usize {
    markers.iter().map(String::len).sum()
}

/// The stored document's text, read from the data directory.
fn stored_text(dir: &Path) -> String {
    let mut store = SqliteStore::open(dir).unwrap();
    load_doc(&mut store, DOC, ReplicaId::from_u128(1))
        .unwrap()
        .map(|d| d.text("t").to_string())
        .unwrap_or_default()
}

//! The `chorus` binary as an operator runs it: `chorus token` mints a token, `chorus
//! relay` with a secret serves only token holders, and SIGTERM stops it gracefully —
//! clients are closed with 1001, everything acknowledged is there after a restart.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_client::{Backoff, Client, ClientConfig, ClientEvent};

const SECRET: &str = "a secret for the relay, long enough";

fn chorus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
}

/// Starts `chorus relay` and waits until it says it is serving.
fn relay(dir: &Path, addr: SocketAddr) -> Child {
    let mut child = chorus()
        .args(["relay", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir)
        .env("CHORUS_AUTH_SECRET", SECRET)
        .env("CHORUS_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("serving"), "{line}");
    assert!(line.contains("access by token"), "{line}");
    // Keep reading so the relay never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    child
}

fn token(doc: &str, right: &str) -> String {
    let out = chorus()
        .args(["token", "--doc", doc, "--right", right, "--ttl", "600"])
        .env("CHORUS_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn client(
    addr: SocketAddr,
    token: Option<String>,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<ClientEvent>) {
    let mut config = ClientConfig::new(format!("ws://{addr}"), "notes");
    config.token = token;
    config.backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    Client::open(config).await.unwrap()
}

async fn disconnected(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<ClientEvent>,
) -> Option<u16> {
    let wait = async {
        while let Some(e) = events.recv().await {
            if let ClientEvent::Disconnected { code, .. } = e {
                return code;
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the connection closes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_the_relay_and_sigterm_stops_it_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = relay(dir.path(), addr);

    // Without a token: refused (1008), for good.
    let (_anon, mut events) = client(addr, None).await;
    assert_eq!(disconnected(&mut events).await, Some(1008));

    // With a write token: edits are saved.
    let (writer, mut events) = client(addr, Some(token("notes", "write"))).await;
    writer
        .edit(|tx| tx.text("body").insert(0, "kept across restarts"))
        .unwrap()
        .unwrap();
    assert!(writer.wait_saved(Duration::from_secs(10)).await);

    // SIGTERM: the client is closed with 1001 and the relay exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(disconnected(&mut events).await, Some(1001));
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    writer.close().await;

    // A restarted relay has it; a read token reads it.
    let mut child = relay(dir.path(), addr);
    let (reader, _events) = client(addr, Some(token("notes", "read"))).await;
    let mut text = String::new();
    for _ in 0..200 {
        text = reader.read(|d| d.text("body").to_string());
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(text, "kept across restarts");
    reader.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

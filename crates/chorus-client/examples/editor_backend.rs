//! An editor backend that keeps one document in sync through a relay.
//!
//! ```text
//! chorus relay &                                   # ws://127.0.0.1:8080
//! cargo run -p chorus-client --example editor_backend -- notes "hello from A" a.chorus
//! cargo run -p chorus-client --example editor_backend -- notes "hello from B" b.chorus
//! ```
//!
//! Each run types its line at the end of the text `body`, prints the changes that
//! other replicas make (as an editor would apply them) and when its own edits are
//! saved, until Ctrl-C. The state file (one per running editor; `<doc>.chorus` by
//! default) keeps edits made while the relay is down, so they are sent on the next
//! run.

use anyhow::Context;
use chorus_client::{Client, ClientConfig, ClientEvent};
use chorus_doc::{Diff, TextDelta};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let doc = args.next().unwrap_or_else(|| "notes".into());
    let line = args.next().unwrap_or_else(|| "hello".into());
    let state = args.next().unwrap_or_else(|| format!("{doc}.chorus"));
    let url = std::env::var("CHORUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080".into());

    let mut config = ClientConfig::new(url, doc.clone());
    config.token = std::env::var("CHORUS_TOKEN").ok();
    config.state_file = Some(state.clone().into());
    let (client, mut events) = Client::open(config).await.context("opening the document")?;
    println!(
        "replica {} on {doc:?}: {:?}",
        client.replica(),
        text(&client)
    );

    // The user types a line at the end of the document.
    client.edit(|tx| {
        let mut body = tx.text("body");
        let end = body.len();
        body.insert(end, &format!("{line}\n"))
    })??;

    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::Connected) => println!("connected"),
                Some(ClientEvent::Disconnected { code, reason }) => {
                    println!("disconnected ({code:?} {reason}); edits are kept meanwhile");
                }
                Some(ClientEvent::Remote(event)) => {
                    for change in &event.changes {
                        if let Diff::Text(delta) = &change.diff {
                            println!("remote edit in {:?}: {}", change.path, describe(delta));
                        }
                    }
                    println!("now: {:?}", text(&client));
                }
                Some(ClientEvent::Saved(_)) => println!("saved"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if !client.is_saved() {
        println!("not saved yet: the edits stay in {state} for the next run");
    }
    client.close().await;
    Ok(())
}

fn text(client: &Client) -> String {
    client.read(|d| d.text("body").to_string())
}

/// A delta as an editor would apply it: keep, insert, delete.
fn describe(delta: &[TextDelta]) -> String {
    let steps: Vec<String> = delta
        .iter()
        .map(|d| match d {
            TextDelta::Retain(n) => format!("keep {n}"),
            TextDelta::Insert(s) => format!("insert {s:?}"),
            TextDelta::Delete(n) => format!("delete {n}"),
        })
        .collect();
    steps.join(", ")
}

//! The Chorus client, for editor backends: a local replica of one document, kept in
//! sync with a relay over WebSockets by a background Tokio task.
//!
//! Edits apply locally at once and go out when connected; changes by others arrive as
//! [`ClientEvent::Remote`] with the deltas to apply to the editor; the relay's
//! acknowledgements say when the user's edits are durable ([`Client::is_saved`],
//! [`ClientEvent::Saved`]). With a state file, edits made offline survive a restart
//! and are sent once the relay is reachable.
//!
//! ```no_run
//! use std::time::Duration;
//! use chorus_client::{Client, ClientConfig, ClientEvent};
//!
//! # async fn example() -> Result<(), chorus_client::ClientError> {
//! let mut config = ClientConfig::new("ws://127.0.0.1:8080", "notes");
//! config.state_file = Some("notes.chorus".into());
//! let (client, mut events) = Client::open(config).await?;
//!
//! // Type, whether or not the relay is reachable right now.
//! client.edit(|tx| tx.text("body").insert(0, "Hello"))?.expect("position in range");
//!
//! // Show what others typed, and when our edits are safe.
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ClientEvent::Remote(change) => println!("remote: {:?}", change.changes),
//!         ClientEvent::Saved(_) => println!("all changes saved"),
//!         _ => {}
//!     }
//! #   break;
//! }
//! client.wait_saved(Duration::from_secs(5)).await;
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Layers, bottom up: [`Link`] is a reconnecting WebSocket transport (binary frames,
//! backoff with jitter, no knowledge of the protocol; federation and the load test use
//! it too). [`Client`] runs a fresh `chorus_sync::Session` on each connection (the
//! `Hello`s resync by version vector, so nothing is sent twice after a reconnect) and
//! keeps the state file: an append-only log of checksummed records, synced before an
//! edit is sent, compacted as it grows, locked to one client at a time (see
//! `store.rs`).

mod client;
mod error;
mod link;
mod store;

pub use client::{Client, ClientConfig, ClientEvent, check_doc_id};
pub use error::ClientError;
pub use link::{Backoff, FINAL_CLOSE_CODES, Link, LinkEvent};

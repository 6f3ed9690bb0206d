//! The Chorus relay: one process serving many documents, each open document a replica
//! that merges, stores and forwards updates.

pub mod auth;
mod config;
pub mod metrics;
mod refusal;
mod room;
mod server;
pub mod storage;
mod writer;

pub use config::{Config, Limits};
pub use refusal::Refusal;
pub use server::{ServeError, serve, serve_with_shutdown, valid_doc_id};

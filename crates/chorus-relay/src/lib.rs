//! The Chorus relay: one process serving many documents, each open document a replica
//! that merges, stores and forwards updates.

mod server;
pub mod storage;

pub use server::{Config, serve};

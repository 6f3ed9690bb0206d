//! The Chorus relay: one process serving many documents, each open document a replica
//! that merges, stores and forwards updates.

pub mod storage;

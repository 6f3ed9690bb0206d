//! Integration tests of chorus-relay, one binary with a module per area.

mod client;
mod federation;
mod hostile;
mod many;
mod server;
mod storage;

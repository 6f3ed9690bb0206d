//! Integration tests of chorus-relay, one binary with a module per area.

mod server;
mod storage;

//! Integration tests of chorus-sync (one binary, modules per topic).

mod golden;
mod session;

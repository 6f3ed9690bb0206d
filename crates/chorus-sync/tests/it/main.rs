//! Integration tests of chorus-sync (one binary, modules per topic).

mod awareness;
mod golden;
mod session;
mod sim;

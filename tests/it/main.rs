//! Workspace-level tests of Chorus: convergence of many replicas over a faulty network
//! checked against a naive reference model, non-interleaving of concurrent runs,
//! encoding robustness, real editing traces, the pending buffer and transactions.
//!
//! One integration-test binary with modules, to keep link times down.

mod convergence;
mod history;
mod interleaving;
mod pending;
mod reference;
mod roundtrip;
mod traces;
mod transactions;
mod types_convergence;
mod util;

#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints, every test of every crate.
# Runs on a fresh machine with the Rust toolchain, Node.js and npm: it installs the
# wasm32 target and the wasm-bindgen CLI (scripts/build-wasm.sh), the npm packages
# (web-demo/package-lock.json) and Debian's chromium (scripts/ensure-chromium.sh) when
# they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
# Optimized (the trace tests replay 260k edits) but without LTO, so it builds fast.
cargo test --workspace --profile ci --locked

echo "== WebAssembly"
scripts/build-wasm.sh
(cd web-demo && npm ci --no-audit --no-fund && npm test)

echo "== browser"
# The demo in Debian's chromium (installed when missing), against the relay built above.
scripts/ensure-chromium.sh
cargo build --profile ci --locked -p chorus-cli
(cd web-demo && npm run build:web && CHORUS_BIN="$PWD/../target/ci/chorus" npm run e2e)

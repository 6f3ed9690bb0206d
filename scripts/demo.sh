#!/usr/bin/env bash
# The demo, from a fresh machine with the Rust toolchain, Node.js and npm: installs
# what the build needs (the wasm32 target and the wasm-bindgen CLI, by
# scripts/build-wasm.sh; the npm packages, from package-lock.json), builds the engine
# for the browser, bundles the page, and starts a relay serving it.
#
#   scripts/demo.sh                 # http://127.0.0.1:8080
#   scripts/demo.sh --listen 127.0.0.1:9000 --data-dir /tmp/chorus-demo
#
# Extra arguments go to `chorus relay` (see `chorus relay --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-wasm.sh
(cd web-demo && npm ci --no-audit --no-fund && npm run build:web)
cargo build --release --locked -p chorus-cli

listen=127.0.0.1:8080
data=chorus-data
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2 ;;
    --listen=*) listen=${1#--listen=}; shift ;;
    --data-dir) data=$2; shift 2 ;;
    --data-dir=*) data=${1#--data-dir=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

# It prints the demo's address once it listens; Ctrl-C stops it.
exec target/release/chorus relay --listen "$listen" --data-dir "$data" \
  --static-dir web-demo/dist ${args[@]+"${args[@]}"}

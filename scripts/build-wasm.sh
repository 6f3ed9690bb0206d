#!/usr/bin/env bash
# Builds crates/chorus-wasm for the browser (web-demo/pkg, ES module) and for the
# node:test suite (web-demo/pkg-node, CommonJS), installing what is missing first:
# the wasm32 target and the wasm-bindgen CLI at exactly the version in Cargo.lock
# (the CLI and the library must match).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
  echo "build-wasm: wasm-bindgen not found in Cargo.lock" >&2
  exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "build-wasm: installing wasm-bindgen-cli $want (found: ${have:-none})" >&2
  # --locked first, for the CLI's own tested dependency versions; a registry mirror
  # that lags behind crates.io may lack one of them, so fall back to a fresh resolve.
  cargo install wasm-bindgen-cli --version "$want" --locked \
    || cargo install wasm-bindgen-cli --version "$want"
fi

# The `wasm` profile (root Cargo.toml): release with opt-level "s".
cargo build --profile wasm --target wasm32-unknown-unknown -p chorus-wasm
wasm=target/wasm32-unknown-unknown/wasm/chorus_wasm.wasm

rm -rf web-demo/pkg-node web-demo/pkg
wasm-bindgen --target nodejs --out-dir web-demo/pkg-node "$wasm"
# The nodejs target is CommonJS, but web-demo/package.json says "type": "module".
echo '{ "type": "commonjs" }' > web-demo/pkg-node/package.json
# The browser's copy without function names (the tests' copy keeps them for stack
# traces): a fifth smaller.
wasm-bindgen --target web --remove-name-section --remove-producers-section \
  --out-dir web-demo/pkg "$wasm"

raw=$(wc -c < web-demo/pkg/chorus_wasm_bg.wasm)
gz=$(gzip -9 -c web-demo/pkg/chorus_wasm_bg.wasm | wc -c)
echo "build-wasm: web-demo/pkg/chorus_wasm_bg.wasm: $raw bytes, $gz gzipped"

#!/usr/bin/env bash
# Makes sure a Chromium the browser tests (web-demo/e2e) can drive is installed: the one
# at $CHROMIUM_PATH when set, else `chromium` on the PATH. When it is missing, installs
# Debian's package (through sudo when not root). Prints the version found.
set -euo pipefail

browser="${CHROMIUM_PATH:-chromium}"

runnable() {
  command -v "$1" >/dev/null 2>&1 && "$1" --version >/dev/null 2>&1
}

if ! runnable "$browser"; then
  if [[ -n "${CHROMIUM_PATH:-}" ]]; then
    echo "ensure-chromium: CHROMIUM_PATH=$CHROMIUM_PATH does not run;" \
      "installing Debian's chromium package" >&2
  else
    echo "ensure-chromium: chromium is not installed; installing Debian's package" >&2
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: apt-get not found: install Chromium yourself and set" \
      "CHROMIUM_PATH to its executable" >&2
    exit 1
  fi
  if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "ensure-chromium: installing needs root and sudo is not available: run" \
      "'apt-get install chromium' as root, or set CHROMIUM_PATH to a Chromium executable" >&2
    exit 1
  fi
  "${as_root[@]}" apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends chromium
  if ! runnable "$browser"; then
    echo "ensure-chromium: $browser still does not run after installing chromium" >&2
    exit 1
  fi
fi

# Debian's wrapper script prints shell noise on stderr on some machines; keep stdout.
"$browser" --version 2>/dev/null

#!/usr/bin/env bash
# Installs what building and testing need, skipping what is already present
# at the right version. Sourced by scripts/run.sh (setup_build) and
# scripts/test.sh (setup_build and setup_test).
set -euo pipefail

# wasm-bindgen-cli must match the wasm-bindgen in Cargo.lock exactly.
WASM_BINDGEN_VERSION=0.2.108
WASM_PACK_VERSION=0.15.1

have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; return 1
  fi
}

apt_install() {
  echo "setup: installing Debian packages: $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

setup_build() {
  if ! have cargo; then
    echo "cargo is missing: install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
  fi
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    echo "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
    cargo install --locked --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
  # The browser build's optimizer and brotli twin (scripts/build-wasm.sh):
  # Debian's binaryen and brotli.
  local packages=()
  have wasm-opt || packages+=(binaryen)
  have brotli || packages+=(brotli)
  if [ "${#packages[@]}" -gt 0 ]; then apt_install "${packages[@]}"; fi
}

setup_test() {
  if [ "$(wasm-pack --version 2>/dev/null | awk '{print $2}')" != "$WASM_PACK_VERSION" ]; then
    echo "setup: installing wasm-pack $WASM_PACK_VERSION (a few minutes)"
    cargo install --locked --force wasm-pack --version "$WASM_PACK_VERSION"
  fi
  local packages=()
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
  # `ip` and `nft` for the network-namespace testbed (tests/src/netns.rs).
  have ip || packages+=(iproute2)
  have nft || packages+=(nftables)
  have node || packages+=(nodejs)
  have npm || packages+=(npm)
  if [ "${#packages[@]}" -gt 0 ]; then apt_install "${packages[@]}"; fi
  # playwright-core only: it drives the system's Chromium and downloads no browser.
  local wanted installed
  wanted=$(node -p 'require("./tests/browser/package.json").dependencies["playwright-core"]')
  installed=$(node -p 'try { require("./tests/browser/node_modules/playwright-core/package.json").version } catch { "" }')
  if [ "$wanted" != "$installed" ]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
  fi
  export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
}

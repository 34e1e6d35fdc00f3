#!/usr/bin/env bash
# Sets up, builds the browser node and the native node (release), and runs a
# bootstrap node on loopback that serves the page: open the URL it prints and
# the tab joins the DHT. Extra arguments go to `native-node bootstrap` (see
# --help), e.g. --ip 0.0.0.0 to serve a network.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
setup_build

bash scripts/build-wasm.sh
cargo build --release --locked -p native-node
exec "${CARGO_TARGET_DIR:-target}/release/native-node" bootstrap "$@"

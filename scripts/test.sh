#!/usr/bin/env bash
# Sets up what the tests need on a fresh machine, then runs every check and
# every test: formatting, lints (host and wasm32), docs, the runtime-free
# proof for dht-core, unit, integration and process tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
setup_build
setup_test

step() { printf '\n==> %s\n' "$*"; }

step "formatting"
cargo fmt --all --check

step "clippy (host)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (wasm32)"
cargo clippy -p dht-core -p wasm-node --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

step "dht-core depends on no async runtime"
if cargo tree -p dht-core -e normal --locked | grep -Ei '\b(tokio|async-std|async-io|smol)\b'; then
  echo "dht-core must not depend on an async runtime" >&2
  exit 1
fi

step "dht-core builds for wasm32-unknown-unknown"
cargo build -p dht-core --target wasm32-unknown-unknown --locked

step "docs (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "native-node binary for the process tests"
cargo build -p native-node --locked

step "tests"
cargo test --workspace --locked

step "benchmark harness, small run (numbers printed, never asserted)"
cargo build -p native-node -p dht-bench --locked
"${CARGO_TARGET_DIR:-target}/debug/dht-bench" --quick --out "${CARGO_TARGET_DIR:-target}/bench-quick"

step "browser build (size-tuned) imports nothing native"
bash scripts/build-wasm.sh
node -e '
  const bytes = require("fs").readFileSync("www/pkg/wasm_node_bg.wasm");
  const modules = new Set(WebAssembly.Module.imports(new WebAssembly.Module(bytes)).map((i) => i.module));
  const native = [...modules].filter((m) => m === "env");
  if (native.length) { console.error("the browser build imports from env: native code leaked in"); process.exit(1); }
  console.log("imports only from", [...modules].join(", "));
'

step "browser tests (headless Chromium against native nodes)"
node tests/browser/run.mjs

#!/usr/bin/env bash
# Builds in release mode and runs the benchmark harness: in-process networks
# of 16, 64, 256 and 1024 nodes (memory transport), 16 and 64 over loopback
# TCP and QUIC, 16 and 64 native-node processes, and a bootstrap holding 2000
# light clients. Prints a table, writes target/bench/bench-<date>-<commit>.json
# and the plot BENCHMARKS.svg. Extra arguments go to dht-bench (see --help),
# e.g. --sizes 16,64 --capacity 0.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p native-node -p dht-bench
exec "${CARGO_TARGET_DIR:-target}/release/dht-bench" --plot BENCHMARKS.svg "$@"

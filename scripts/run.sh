#!/usr/bin/env bash
# Builds the node in release mode and runs a bootstrap node on loopback.
# Extra arguments go to `native-node bootstrap` (see --help), e.g. --ip 0.0.0.0.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
source scripts/setup.sh

cargo build --release --locked -p native-node
exec "${CARGO_TARGET_DIR:-target}/release/native-node" bootstrap "$@"

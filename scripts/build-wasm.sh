#!/usr/bin/env bash
# Builds the browser node into www/pkg: wasm-node with the size-tuned
# wasm-release profile, wasm-bindgen for ES modules, then the gzip and
# brotli twins the bootstrap's HTTP server sends to browsers that accept
# them. Prints the sizes.
#
# No wasm-opt: Debian's binaryen (-Oz) makes the raw file 12 % smaller but
# the gzip and brotli files, which are what a browser downloads, 5 % larger
# (BENCHMARKS.md, "The browser module").
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
out=www/pkg

cargo build -p wasm-node --target wasm32-unknown-unknown --profile wasm-release --locked
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$target_dir/wasm32-unknown-unknown/wasm-release/wasm_node.wasm"

wasm="$out/wasm_node_bg.wasm"
for file in "$wasm" "$out/wasm_node.js"; do
  gzip -9 -k -f "$file"
  brotli -q 11 -w 24 -k -f "$file"
done
raw=$(stat -c %s "$wasm")
gz=$(stat -c %s "$wasm.gz")
br=$(stat -c %s "$wasm.br")
echo "www/pkg: wasm_node_bg.wasm $raw bytes raw, $gz bytes gzip -9, $br bytes brotli -q 11"

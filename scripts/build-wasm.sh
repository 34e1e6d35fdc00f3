#!/usr/bin/env bash
# Builds the browser node into www/pkg: wasm-node with the size-tuned
# wasm-release profile, wasm-bindgen for ES modules, then the system's
# wasm-opt when present. Prints the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
out=www/pkg

cargo build -p wasm-node --target wasm32-unknown-unknown --profile wasm-release --locked
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$target_dir/wasm32-unknown-unknown/wasm-release/wasm_node.wasm"

wasm="$out/wasm_node_bg.wasm"
if command -v wasm-opt >/dev/null 2>&1; then
  # Debian's binaryen is old: name the features rustc's output uses.
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"
fi
# The bootstrap's HTTP server sends these to browsers that accept gzip.
gzip -9 -k -f "$wasm" "$out/wasm_node.js"
raw=$(stat -c %s "$wasm")
gz=$(stat -c %s "$wasm.gz")
echo "www/pkg: wasm_node_bg.wasm $raw bytes raw, $gz bytes gzip -9"

#!/usr/bin/env bash
# Builds the browser node into www/pkg: wasm-node with the size-tuned
# wasm-release profile, wasm-bindgen for ES modules, wasm-opt, then the gzip
# and brotli twins the bootstrap's HTTP server sends to browsers that accept
# them. Prints the sizes.
#
# wasm-opt runs -O1 and merges identical functions: that makes all three
# files smaller (raw -6 %, gzip -2 %, brotli -1.5 %). Its size levels do not:
# -Oz, -Os and -O2 shrink the raw file more but grow the gzip and brotli
# files, which are what a browser downloads, by 6-7 % (BENCHMARKS.md, "The
# browser module"). The features are the ones rustc enables for
# wasm32-unknown-unknown; wasm-bindgen drops the section that would name them.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
out=www/pkg

cargo build -p wasm-node --target wasm32-unknown-unknown --profile wasm-release --locked
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$target_dir/wasm32-unknown-unknown/wasm-release/wasm_node.wasm"

wasm="$out/wasm_node_bg.wasm"
wasm-opt -O1 --duplicate-function-elimination \
  --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext \
  "$wasm" -o "$wasm"
for file in "$wasm" "$out/wasm_node.js"; do
  gzip -9 -k -f "$file"
  brotli -q 11 -w 24 -k -f "$file"
done
raw=$(stat -c %s "$wasm")
gz=$(stat -c %s "$wasm.gz")
br=$(stat -c %s "$wasm.br")
echo "www/pkg: wasm_node_bg.wasm $raw bytes raw, $gz bytes gzip -9, $br bytes brotli -q 11"

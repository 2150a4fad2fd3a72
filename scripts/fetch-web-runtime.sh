#!/usr/bin/env bash
# Fetch ONNX Runtime Web from the npm registry (version pinned in web-runtime/package-lock.json)
# and copy only the files the browser player loads into src/neuralworld/web/ort/ (git-ignored).
# `neuralworld export` copies that folder into every world's web folder, so the page never
# needs a CDN. Two builds: the plain WebAssembly one (fastest on CPU) and the WebGPU one.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null; then
  echo "fetch-web-runtime: npm not found (install Node.js and npm, e.g. apt-get install npm)" >&2
  exit 1
fi

dist=web-runtime/node_modules/onnxruntime-web/dist
out=src/neuralworld/web/ort
files=(
  ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
  ort.webgpu.min.mjs ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm
)
pinned=$(node -p "require('./web-runtime/package-lock.json').packages['node_modules/onnxruntime-web'].version")
have=$([ -f "$out/package.json" ] && node -p "require('./$out/package.json').version" || true)
missing=0
for f in "${files[@]}"; do [ -f "$out/$f" ] || missing=1; done
if [ "$have" = "$pinned" ] && [ "$missing" = 0 ]; then
  echo "fetch-web-runtime: onnxruntime-web $have already in $out"
  exit 0
fi

(cd web-runtime && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
for f in "${files[@]}"; do cp "$dist/$f" "$out.tmp/$f"; done
cp web-runtime/node_modules/onnxruntime-web/package.json "$out.tmp/package.json"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "fetch-web-runtime: onnxruntime-web $(node -p "require('./$out/package.json').version") in $out"

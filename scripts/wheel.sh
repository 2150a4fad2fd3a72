#!/usr/bin/env bash
# Build the neuralworld wheel into dist/, carrying the player's ONNX Runtime Web files, so that
# `pip install neuralworld-*.whl` gives a working `export` and `play` with no Node.js.
#   bash scripts/wheel.sh            build (fetching the web runtime with npm first if missing)
#   bash scripts/wheel.sh --check    build, install into a fresh venv, and run the demo from it
#                                    (no play), then serve the exported player and fetch it,
#                                    with `node` and `npm` made to fail on the PATH
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

[ -f src/neuralworld/web/ort/ort.wasm.min.mjs ] || bash scripts/fetch-web-runtime.sh
rm -rf dist build && mkdir -p dist
"$python" -m pip wheel --no-deps --quiet -w dist .
wheel=$(ls dist/neuralworld-*.whl)
"$python" - "$wheel" <<'EOF'
import sys, zipfile
from pathlib import Path
wheel = Path(sys.argv[1])
names = zipfile.ZipFile(wheel).namelist()
need = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs", "package.json"]
missing = [n for n in need if f"neuralworld/web/ort/{n}" not in names]
if missing:
    sys.exit(f"wheel: {wheel} lacks the web runtime files {missing} (run scripts/fetch-web-runtime.sh first)")
print(f"wheel: {wheel} ({wheel.stat().st_size / 1e6:.1f} MB, {len(names)} files, web runtime included)")
EOF
[ "${1:-}" = "--check" ] || exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
start=$(date +%s)
"$work/venv/bin/pip" install --quiet "$wheel"
echo "wheel: installed into a fresh venv in $(( $(date +%s) - start )) s"
mkdir "$work/bin"  # node and npm that fail loudly: the installed package must not need them
for tool in node npm npx; do printf '#!/bin/sh\necho "%s was called" >&2\nexit 97\n' "$tool" > "$work/bin/$tool"; done
chmod +x "$work/bin/"*
export PATH="$work/bin:$work/venv/bin:$PATH"
cd "$work"  # away from the source tree, so only the installed package is importable
neuralworld demo --no-play --minutes 0.2 -o "$work/demo" > "$work/demo.log" 2>&1 || { cat "$work/demo.log"; exit 1; }
grep -v "frame/s\]\|step/s" "$work/demo.log" || true  # the demo's steps, without its progress bars
python - "$work/demo/world" <<'EOF'
import subprocess, sys, time, urllib.request
server = subprocess.Popen(["neuralworld", "play", sys.argv[1], "--port", "0", "--no-browser"],
                          stdout=subprocess.PIPE, text=True)
try:
    line = server.stdout.readline()
    url = line.split(" at ")[1].split()[0]
    for path in ("", "ort/ort.wasm.min.mjs", "ort/ort-wasm-simd-threaded.wasm", "world.json"):
        with urllib.request.urlopen(url + path, timeout=30) as r:
            print(f"play: GET /{path} -> {r.status}, {len(r.read())} bytes")
finally:
    server.terminate()
    server.wait(timeout=30)
EOF
echo "wheel: demo and play work from the installed wheel"

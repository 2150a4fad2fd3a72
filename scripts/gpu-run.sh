#!/usr/bin/env bash
# Train and measure a `forest` world on one CUDA machine (docs/GPU.md): install what is missing,
# then run benchmarks/gpu_run.py with the options given, its output also in OUT/run.log.
#
#   bash scripts/gpu-run.sh -o OUT [options of benchmarks/gpu_run.py]
#   bash scripts/gpu-run.sh --prepare [DATA_DIR]
#
# --prepare, on a machine with network, readies the repository for a GPU machine without one:
# wheels of the Python packages such a machine may lack (.whl/), Debian's amd64 GL loader
# packages for EGL rendering (.gl/), and the car track's MP4 + CSV files from DATA_DIR
# (default ../shared/data) under .data/. All three folders are ignored by git.
#
# Installing: Python packages come from .whl/ when it holds wheels (no network needed), else from
# the package index; torch is installed only when none is there (a CUDA build already there is
# kept). GL loaders come from .gl/ when libEGL is missing, else from apt-get.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${NEURALWORLD_SITE:-/tmp/neuralworld-site}
GL_PACKAGES="libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"

prepare() {
  local data=${1:-../shared/data} pyver=${PREPARE_PYTHON_VERSION:-3.12}
  mkdir -p .whl .gl .data
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl moderngl glcontext || return 1
  local lists
  lists=$(mktemp -d) && mkdir -p "$lists/partial"
  local o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  # shellcheck disable=SC2086
  apt-get $o update -qq && (cd .gl && apt-get $o download $GL_PACKAGES) || echo "no GL loader packages fetched"
  rm -rf "$lists"
  if [ -d "$data/donkey-track" ]; then
    mkdir -p .data/donkey-track && cp "$data"/donkey-track/*.mp4 "$data"/donkey-track/*.csv .data/donkey-track/
  else
    echo "no $data/donkey-track: the car world will need --car-data (or --no-car)"
  fi
  du -sh .whl .gl .data
}

if [ "${1:-}" = "--prepare" ]; then
  shift
  prepare "$@"
  exit $?
fi

out=""
prev=""
for a in "$@"; do
  case $prev in -o|--output) out=$a ;; esac
  case $a in --output=*) out=${a#--output=} ;; esac
  prev=$a
done
if [ -z "$out" ]; then
  echo "usage: bash scripts/gpu-run.sh -o OUT [options of benchmarks/gpu_run.py]" >&2
  exit 2
fi
mkdir -p "$out"

run() {
  # GL loaders for rendering the synth trail through EGL
  if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
    if ls .gl/*.deb >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      for f in .gl/*.deb; do dpkg -x "$f" /; done
      ldconfig
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      # shellcheck disable=SC2086
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $GL_PACKAGES) >/dev/null 2>&1 ||
        echo "no libEGL: the synth trail cannot be rendered (the run goes on without it)"
    fi
  fi
  # NVIDIA's EGL vendor file, where some containers keep it outside glvnd's search path
  for f in /usr/local/nvidia/share/glvnd/egl_vendor.d/*nvidia*.json; do
    if [ -f "$f" ] && [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] &&
       ! ls /usr/share/glvnd/egl_vendor.d/*nvidia*.json /etc/glvnd/egl_vendor.d/*nvidia*.json >/dev/null 2>&1; then
      export __EGL_VENDOR_LIBRARY_FILENAMES=$f
    fi
  done

  # Python packages the run needs (PyAV is optional: without it the car track is decoded by OpenCV)
  missing=$("$PY" - <<'EOF'
import importlib.util
need = {"numpy": "numpy", "scipy": "scipy", "cv2": "opencv-python-headless", "safetensors": "safetensors",
        "tqdm": "tqdm", "matplotlib": "matplotlib", "moderngl": "moderngl", "glcontext": "glcontext"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
  )
  if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "installing torch"
    "$PY" -m pip install -q "torch==2.13.0" || exit 1
  fi
  if [ -n "$missing" ] || ls .whl/*.whl >/dev/null 2>&1; then
    if ls .whl/*.whl >/dev/null 2>&1; then
      echo "installing the carried wheels: $(cd .whl && echo *.whl)"
      "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl || exit 1
    else
      echo "installing:$missing"
      # shellcheck disable=SC2086
      "$PY" -m pip install -q --no-deps --target "$SITE" $missing || exit 1
    fi
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
  export TQDM_MININTERVAL=${TQDM_MININTERVAL:-15} PYTHONUNBUFFERED=1
  "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA:', torch.cuda.is_available())"
  "$PY" benchmarks/gpu_run.py "$@"
}

run "$@" 2>&1 | tee "$out/run.log"
exit "${PIPESTATUS[0]}"

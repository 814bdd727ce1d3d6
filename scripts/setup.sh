#!/usr/bin/env bash
# Fresh-machine setup for trt-sweep: system libraries, then a virtualenv in .venv.
#   bash scripts/setup.sh          # what `python -m sweep` needs
#   bash scripts/setup.sh --dev    # plus test tools, PyTorch (demo tests), Optuna, Ray,
#                                  # espeak-ng, sox, chromium (UI test)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

PY=${PYTHON:-python3}
pyver=$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

# The tritonserver python-backend stub links the system's libpython (it ignores virtualenvs).
need=()
ldconfig -p 2>/dev/null | grep -q "libpython${pyver}.so.1.0" || need+=("libpython${pyver}")
if [ "$dev" = 1 ]; then
  command -v espeak-ng >/dev/null || need+=(espeak-ng)
  command -v sox >/dev/null || need+=(sox)
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || $PY -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  # torch==2.13.0 (CPU) defines and exports the demo model; only the demo tests need it.
  .venv/bin/python -m pip install -q -e ".[dev,demo,optuna,ray]"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: ready (.venv, Python ${pyver})"

#!/usr/bin/env bash
# Fresh-machine setup for trt-sweep: system libraries, then a virtualenv in .venv.
#   bash scripts/setup.sh          # what `python -m sweep` needs
#   bash scripts/setup.sh --precision  # plus the precision stage (ModelOpt, torch)
#   bash scripts/setup.sh --dev    # plus test tools, PyTorch (demo tests), Optuna, Ray,
#                                  # the precision stage, espeak-ng, sox, chromium (UI test),
#                                  # PostgreSQL and psycopg2 (the rehearsal cluster's store)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
precision=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1; precision=1 ;;
    --precision) precision=1 ;;
    *) echo "setup: unknown option $arg (expected --dev, --precision)" >&2; exit 2 ;;
  esac
done

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
  # Debian puts initdb and postgres in /usr/lib/postgresql/<version>/bin, not on PATH.
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
    || need+=(postgresql)
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
extras=""
[ "$precision" = 1 ] && extras="precision"
# torch==2.13.0 (CPU) defines and exports the demo model, and ModelOpt imports it.
[ "$dev" = 1 ] && extras="dev,demo,optuna,ray,cluster,precision"
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install -q -e ".[$extras]"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: ready (.venv, Python ${pyver})"

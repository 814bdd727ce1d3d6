#!/bin/bash
# Training on a rented GPU machine with no network: unpack carried wheels and espeak-ng,
# synthesise the training set there (16 cores), train, copy results to $OUT.
# Carry .espeak/ (Debian 12 espeak-ng, libespeak-ng1, libpcaudio0, libsonic0 unpacked with
# dpkg -x into .espeak/root) and .whl/ (soundfile, cffi, pycparser, num2words wheels).
# Usage: demo/gpu_train.sh N_TRAIN MAX_MINUTES [extra train args...]
set -euo pipefail
N_TRAIN=${1:-30000}; MINUTES=${2:-6}; shift 2 || true
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/device_log.txt") 2>&1
export PYTHONUNBUFFERED=1
T0=$(date +%s)
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export ESPEAK_NG=$PWD/.espeak/root/usr/bin/espeak-ng
export ESPEAK_DATA_PATH=$PWD/.espeak/root/usr/lib/x86_64-linux-gnu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.is_available())"
$ESPEAK_NG --path=$ESPEAK_DATA_PATH -v ru -w /tmp/t.wav "проверка связи" && echo espeak ok
DATA=/tmp/data
python3 -m demo.synth --split train --n "$N_TRAIN" --seed 1 --out $DATA/demo_train --jobs 16
TEST_ARG=()
if [ -f demo/assets/data/demo_test/tarred_audio_manifest.json ]; then
  TEST_ARG=(--test demo/assets/data/demo_test)
else
  python3 -m demo.synth --split test --n 300 --seed 99 --out $DATA/test_dev --jobs 16
  TEST_ARG=(--test $DATA/test_dev)
fi
echo "synth done after $(( $(date +%s) - T0 )) s"
python3 -m demo.train --data $DATA/demo_train --out /tmp/run --seed 0 --max-minutes "$MINUTES" \
  --workers 12 "${TEST_ARG[@]}" "$@" || echo "TRAIN FAILED rc=$?"
cp /tmp/run/best.pt /tmp/run/train_log.jsonl "$OUTDIR"/ || true
echo "total $(( $(date +%s) - T0 )) s"

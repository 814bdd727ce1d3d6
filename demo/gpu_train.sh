#!/bin/bash
# Training on a rented GPU machine with no network: unpack carried wheels and tools,
# synthesise the training set there (16 cores), train, copy results to $OUT.
#
# Carry (both ignored by git; see demo/README.md, "Regenerating"):
#   .whl/    soundfile, cffi, pycparser, num2words wheels for the machine's Python
#   .carry/  bin/espeak-ng, bin/sox (wrappers) + lib/ (their libraries, from `ldd`),
#            espeak-ng-data/ (ru only), ru_RU.dic (hunspell-ru) and festival/ (the training
#            split's festival speech, made here with `demo.synth --prerender-festival`)
# Usage: demo/gpu_train.sh N_TRAIN MAX_MINUTES [extra train args...]
set -euo pipefail
N_TRAIN=${1:-40000}; MINUTES=${2:-6}; shift 2 || true
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/device_log.txt") 2>&1
export PYTHONUNBUFFERED=1
T0=$(date +%s)
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export ESPEAK_NG=$PWD/.carry/bin/espeak-ng ESPEAK_DATA_PATH=$PWD/.carry SOX=$PWD/.carry/bin/sox
export TRT_SWEEP_HUNSPELL_RU=$PWD/.carry/ru_RU.dic
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.is_available())"
$ESPEAK_NG --path=$ESPEAK_DATA_PATH -v ru -w /tmp/t.wav "проверка связи" && $SOX /tmp/t.wav -r 8000 -e u-law -b 8 /tmp/t8.wav && echo espeak+sox ok
DATA=/tmp/data
python3 -m demo.synth --split train --n "$N_TRAIN" --seed 1 --out $DATA/demo_train --jobs 16 \
  --festival-cache .carry/festival
echo "synth done after $(( $(date +%s) - T0 )) s"
# VARIANTS="name:args;name:args" trains several recipes at once on the one GPU (each with
# its own data workers) and keeps each one's best.pt under $OUT/<name>/.
if [ -n "${VARIANTS:-}" ]; then
  IFS=';' read -ra RUNS <<< "$VARIANTS"
  for run in "${RUNS[@]}"; do
    name=${run%%:*}; extra=${run#*:}
    # shellcheck disable=SC2086
    python3 -m demo.train --data $DATA/demo_train --out "$OUTDIR/$name" --seed 0 \
      --max-minutes "$MINUTES" --workers $(( 14 / ${#RUNS[@]} )) \
      --test demo/assets/data/demo_test $extra "$@" > "$OUTDIR/$name.stdout.log" 2>&1 &
  done
  wait
  for run in "${RUNS[@]}"; do name=${run%%:*}; grep -E '"(done|test)"' "$OUTDIR/$name.stdout.log" || true
    rm -f "$OUTDIR/$name/last.pt"; done
else
  python3 -m demo.train --data $DATA/demo_train --out "$OUTDIR/run" --seed 0 --max-minutes "$MINUTES" \
    --workers 14 --test demo/assets/data/demo_test "$@" || echo "TRAIN FAILED rc=$?"
fi
# Every epoch rewrites best.pt, so a run cut off at the call limit still returns one.
rm -f "$OUTDIR/run/last.pt"
echo "total $(( $(date +%s) - T0 )) s"

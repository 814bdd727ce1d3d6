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
#
# A schedule longer than one call (10 minutes) spans several: give every call the same
# `--schedule-minutes`. The data and the run live in $WORK (ignored by git, so a warm
# machine keeps them between calls); a call that finds $WORK/run/resume.pt carries on from
# it instead of starting again, and one that finds the data does not synthesise it again.
set -euo pipefail
N_TRAIN=${1:-40000}; MINUTES=${2:-6}; shift 2 || true
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
WORK=${WORK:-$PWD/demo/work/gpu}; mkdir -p "$WORK"
exec > >(tee "$OUTDIR/device_log.txt") 2>&1
export PYTHONUNBUFFERED=1
T0=$(date +%s)
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export ESPEAK_NG=$PWD/.carry/bin/espeak-ng ESPEAK_DATA_PATH=$PWD/.carry SOX=$PWD/.carry/bin/sox
export TRT_SWEEP_HUNSPELL_RU=$PWD/.carry/ru_RU.dic
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.is_available())"
DATA=$WORK/data
MANIFEST=$DATA/demo_train/tarred_audio_manifest.json
if [ -f "$MANIFEST" ] && [ "$(wc -l < "$MANIFEST")" -eq "$N_TRAIN" ]; then
  echo "training set already here: $MANIFEST"
else
  $ESPEAK_NG --path=$ESPEAK_DATA_PATH -v ru -w /tmp/t.wav "проверка связи" && $SOX /tmp/t.wav -r 8000 -e u-law -b 8 /tmp/t8.wav && echo espeak+sox ok
  python3 -m demo.synth --split train --n "$N_TRAIN" --seed 1 --out $DATA/demo_train --jobs 16 \
    --festival-cache .carry/festival
  echo "synth done after $(( $(date +%s) - T0 )) s"
fi
TEST=()
[ -d demo/assets/data/demo_test ] && TEST=(--test demo/assets/data/demo_test)
# Results come back as files of at most 16 MiB: larger checkpoints travel in parts
# (`cat best.pt.part-* > best.pt`).
collect() {  # $1 = run folder, $2 = where in $OUT
  mkdir -p "$2"; cp "$1/train_log.jsonl" "$2/" 2>/dev/null || true
  [ -f "$1/best.pt" ] && split -b 15M -d "$1/best.pt" "$2/best.pt.part-"
  return 0
}
# VARIANTS="name:args;name:args" trains several recipes at once on the one GPU (each with
# its own data workers) and keeps each one's best.pt under $OUT/<name>/.
if [ -n "${VARIANTS:-}" ]; then
  IFS=';' read -ra RUNS <<< "$VARIANTS"
  for run in "${RUNS[@]}"; do
    name=${run%%:*}; extra=${run#*:}
    resume=(); [ -f "$WORK/$name/resume.pt" ] && resume=(--resume "$WORK/$name/resume.pt")
    # shellcheck disable=SC2086
    python3 -m demo.train --data $DATA/demo_train --out "$WORK/$name" --seed 0 \
      --max-minutes "$MINUTES" --workers $(( 14 / ${#RUNS[@]} )) "${TEST[@]}" "${resume[@]}" \
      $extra "$@" > "$OUTDIR/$name.stdout.log" 2>&1 &
  done
  wait
  for run in "${RUNS[@]}"; do name=${run%%:*}
    grep -E '"(done|paused|test)"' "$OUTDIR/$name.stdout.log" || true
    collect "$WORK/$name" "$OUTDIR/$name"; done
else
  resume=(); [ -f "$WORK/run/resume.pt" ] && resume=(--resume "$WORK/run/resume.pt")
  python3 -m demo.train --data $DATA/demo_train --out "$WORK/run" --seed 0 --max-minutes "$MINUTES" \
    --workers 14 "${TEST[@]}" "${resume[@]}" "$@" || echo "TRAIN FAILED rc=$?"
  collect "$WORK/run" "$OUTDIR/run"
fi
echo "total $(( $(date +%s) - T0 )) s"

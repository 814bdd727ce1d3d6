#!/bin/bash
# Pack what demo/gpu_train.sh needs on a GPU machine with no network, from this machine
# (Debian with espeak-ng, sox, hunspell-ru, festival + festvox-ru installed, and the
# project's .venv): .whl/ and .carry/, both ignored by git, carried by name.
#
# Usage: demo/gpu_carry.sh N_TRAIN [PYTHON_VERSION]   (the GPU machine's Python, e.g. 3.12)
set -euo pipefail
N_TRAIN=${1:-80000}; PY=${2:-3.12}
cd "$(dirname "$0")/.."
rm -rf .whl .carry/bin .carry/lib .carry/espeak-ng-data
mkdir -p .whl .carry/bin .carry/lib .carry/libexec
# Wheels of the synthesis's pure-Python dependencies the GPU machine's image lacks.
.venv/bin/python -m pip download -q --only-binary=:all: --no-deps --dest .whl \
  --python-version "$PY" --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  soundfile cffi pycparser num2words
# espeak-ng and sox with every library ldd lists except glibc's own, behind wrappers that
# put those libraries on LD_LIBRARY_PATH for them alone.
for tool in espeak-ng sox; do
  cp "$(command -v $tool)" .carry/libexec/
  ldd "$(command -v $tool)" | awk '$3 ~ /^\// {print $3}' \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' \
    | xargs -r cp -L -t .carry/lib/
  printf '#!/bin/sh\nd=$(dirname "$0")/..\nLD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/libexec/%s" "$@"\n' \
    "$tool" > .carry/bin/$tool
  chmod +x .carry/bin/$tool
done
# eSpeak's data for the training voices only: Russian, and the accents' Ukrainian and
# Bulgarian (demo/accents.py), with every variant.
src=$(dirname "$(readlink -f "$(command -v espeak-ng)")")/../lib/x86_64-linux-gnu/espeak-ng-data
[ -d "$src" ] || src=/usr/lib/x86_64-linux-gnu/espeak-ng-data
dst=.carry/espeak-ng-data
mkdir -p $dst/lang/zle $dst/lang/zls $dst/voices
cp $src/{phontab,phonindex,phondata,intonations,ru_dict,uk_dict,bg_dict} $dst/
cp -r $src/voices/'!v' $dst/voices/
cp $src/lang/zle/{ru,uk} $dst/lang/zle/ && cp $src/lang/zls/bg $dst/lang/zls/
cp /usr/share/hunspell/ru_RU.dic .carry/ru_RU.dic
# festival and its voice take 250 MB: its speech for the training split travels instead.
.venv/bin/python -m demo.synth --split train --n "$N_TRAIN" --seed 1 --out /tmp/unused \
  --festival-cache .carry/festival --prerender-festival --jobs "$(nproc)"
.carry/bin/espeak-ng --path=.carry -v uk -q -x "перевірка" >/dev/null
du -sh .whl .carry

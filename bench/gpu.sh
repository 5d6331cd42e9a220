#!/usr/bin/env bash
# The GPU check, ready for the first machine with CUDA (about 8 minutes on one H100 at most):
# the CUDA tests, the CUDA options of fold-train (AMP fp16 with the grad scaler, bf16,
# channels_last, --compile), bench/throughput.py (fast path against the seed-style loop), the
# `fast` and `strong` recipes on the real data (5 folds: time, CV, official test), and a Ray run
# whose units are GPU tasks. Results: gpu.log (everything) and gpu.json (one row per step) in
# $OUT (the device tool's folder) or bench/results/, and a summary table on stdout.
#
#   make bench-gpu                         # on a machine with CUDA and this repo's .venv
#   make gpu-carry                         # here, before the device tool: wheels + real data in .gpu/
#   device run: command="bash bench/gpu.sh", carry=[".gpu"], timeout_s=560
#   device run: command="GPU_STEPS=auto-10m bash bench/gpu.sh", carry=[".gpu"], timeout_s=600  (fkaggle auto, 9m)
#
# Without CUDA it says so in one line and exits 2.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${FKAGGLE_PYTHON:-}"  # the interpreter with torch (default: .venv/bin/python, else python3)
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "bench-gpu: no CUDA device here (torch.cuda.is_available() is false for $PY): run it on a machine with an NVIDIA GPU" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -d .gpu/wheels ]; then  # the device machine has no network: what its image lacks travels as wheels
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/fkaggle-site .gpu/wheels/*.whl || exit 2
  export PYTHONPATH="/tmp/fkaggle-site:$PYTHONPATH"
fi
[ -d .gpu/data ] && export FKAGGLE_DATA="$PWD/.gpu/data"
RESULTS="${OUT:-bench/results}"
WORK="$(mktemp -d /tmp/fkaggle-gpu.XXXXXX)"
mkdir -p "$RESULTS"
: >"$RESULTS/gpu.log"
: >"$WORK/steps.tsv"
FK=("$PY" -m fmnist_kaggle.cli)

ONLY="${GPU_STEPS:-}"  # a comma-separated list of step names to run (default: all but auto-10m)
step() {  # step NAME LIMIT_S COMMAND...: run it with a time limit, its output into the log
  local name=$1 limit=$2 t0 rc
  shift 2
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then return; fi
  if [ -z "$ONLY" ] && [ "$name" = auto-10m ]; then return; fi
  t0=$(date +%s)
  echo "== $name (limit ${limit} s): $*" | tee -a "$RESULTS/gpu.log" >&2
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.out" 2>&1
  rc=$?
  cat "$WORK/$name.out" >>"$RESULTS/gpu.log"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" >>"$WORK/steps.tsv"
}

SMALL=(--competition competition/competition.toml --subset 6000 --folds 2 --epochs 2 --no-progress --workdir "$WORK/ws" --test "")
step cuda-tests 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests -rs
step amp-fp16-channels-last 45 "${FK[@]}" fold-train --recipe cpu --device cuda --amp fp16 --channels-last "${SMALL[@]}" --run fp16
step amp-bf16-compile 75 "${FK[@]}" fold-train --recipe cpu --device cuda --amp bf16 --compile "${SMALL[@]}" --run bf16-compile
step throughput 60 "$PY" bench/throughput.py --device cuda
step recipe-fast-on-cuda 60 "$PY" bench/time_to_accuracy.py --recipe fast --device cuda --workdir "$WORK/tta"
step recipe-strong 210 "$PY" bench/time_to_accuracy.py --recipe strong --device cuda --workdir "$WORK/tta"
step ray-gpu-tasks 45 "${FK[@]}" fold-train --model seed000_bncnn --executor ray "${SMALL[@]}" --run ray-gpu
# The autopilot on the real data with the CUDA portfolio, a device call of its own (GPU_STEPS=auto-10m): 9m by
# default, as a device call runs 600 s at most; GPU_AUTO_LIMIT=10m where a machine allows it
step auto-10m 590 "${FK[@]}" auto --competition competition/competition.toml --time-limit "${GPU_AUTO_LIMIT:-9m}" --workdir "$WORK/auto" --no-progress --json
"$PY" bench/gpu_summary.py "$WORK/steps.tsv" "$WORK" "$RESULTS/gpu.json"

#!/usr/bin/env bash
# Did a refactor change behaviour? The same fixed work on the same machine with two checkouts, and
# hashes to compare (issue 41's check): a `fast` fold-train (CV and the logits' SHA-256), the plans
# `--show-plan` makes for 5, 20 and 60 minutes from a given speeds file, the same plans with an
# injected clock (bench/same_plan.py: no wall-clock jitter), and a fixed-portfolio autopilot run
# (its choice and its runs' logits).
#
#   bash bench/same_behaviour.sh OUT CODE [SPEEDS]   # CODE: the checkout whose fmnist_kaggle runs
#   diff <(cat OUT1/*.txt) <(cat OUT2/*.txt)          # empty: the same behaviour
#
# SPEEDS (default: written on the first call into OUT/../speeds.json and reused) must be the same
# file for both checkouts.
set -euo pipefail
OUT=$(realpath -m "$1"); CODE=$(realpath "$2"); HERE=$(cd "$(dirname "$0")/.." && pwd)
SPEEDS=${3:-$(dirname "$OUT")/speeds.json}
PY="$HERE/.venv/bin/python"; export PYTHONPATH="$CODE"
FK=("$PY" -m fmnist_kaggle.cli)
rm -rf "$OUT"; mkdir -p "$OUT/ft" "$OUT/plan" "$OUT/auto"
if [ ! -f "$SPEEDS" ]; then  # made-up speeds under this machine's key, for both checkouts
  PYTHONPATH="$HERE" "$PY" - "$SPEEDS" <<'P'
import json, sys
from fmnist_kaggle.search.portfolio import load_portfolio
from fmnist_kaggle.training.device import machine_key
fast = next(e for e in load_portfolio() if e.name == "fast")
speeds = {}
for amp, scale in ((None, 1.0), ("off", 0.5)):
    for w, ips in {8: 4900.0, 16: 2300.0, 24: 1400.0, 32: 900.0}.items():
        key = fast.config(w, folds=5, subset=0, amp=amp).speed_key()
        speeds[key] = {"train_ips": ips * scale, "predict_ips": 4 * ips * scale, "device": "cpu",
                       "precision": "bfloat16" if amp is None else "float32", "source": "probe", "looks": 2}
json.dump({"schema": 1, "machines": {machine_key("auto"): speeds}}, open(sys.argv[1], "w"))
P
fi
cat >"$OUT/fixed.toml" <<'T'
[[entry]]
name = "a"
train = { model = "fmnist_resnet", model_kwargs = { width = 8 }, epochs = 3, batch_size = 32, optimizer = "sgd", lr = 0.05, label_smoothing = 0.1 }
min_epochs = 3
runs = 1

[[entry]]
name = "b"
train = { recipe = "fast", model_kwargs = { width = 8, stem = "whiten", bn_momentum = 0.4 }, epochs = 2, batch_size = 64, seeds = [1] }
min_epochs = 2
runs = 1
T
digest() {  # FILE...: each array's SHA-256
  "$PY" -c 'import sys, hashlib, numpy as np; [print(f, hashlib.sha256(np.load(f).tobytes()).hexdigest()) for f in sys.argv[1:]]' "$@"
}
cd "$OUT/ft" && "${FK[@]}" init --official >/dev/null 2>&1
"${FK[@]}" fold-train --recipe fast --subset 6000 --folds 2 --epochs 2 --amp off --run check --no-progress --json >result.json 2>stderr.txt
{ "$PY" -c 'import json; m = json.load(open("result.json")); print("cv", m["cv"]["acc"], m["cv"]["logloss"])'
  digest oof/check/oof_logits.npy oof/check/test_logits.npy; } >"$OUT/ft.txt"
cd "$OUT/plan" && "${FK[@]}" init --official >/dev/null 2>&1 && mkdir -p oof/autopilot && cp "$SPEEDS" oof/autopilot/speeds.json
for L in 5m 20m 60m; do "${FK[@]}" auto --show-plan --time-limit $L --json >plan-$L.json 2>>stderr.txt; done
"$PY" -c 'import json, sys; [print(f, [(r["entry"], r["width"], r["steps"]) for r in json.load(open(f))["purchases"]]) for f in sys.argv[1:]]' plan-*.json >"$OUT/plan.txt"
for S in 300 1200 3600 7200; do "$PY" "$HERE/bench/same_plan.py" $S; done >>"$OUT/plan.txt"
cd "$OUT/auto" && "${FK[@]}" init --official >/dev/null 2>&1
"${FK[@]}" auto --portfolio "$OUT/fixed.toml" --time-limit 3m --subset 600 --folds 3 --no-progress --json >auto.json 2>stderr.txt
{ "$PY" -c 'import json; a = json.load(open("auto.json")); print("chosen", a["chosen"]["method"], a["chosen"]["runs"], a["cv"])'
  digest oof/auto-*/*_logits.npy; } >"$OUT/auto.txt"
cat "$OUT/ft.txt" "$OUT/plan.txt" "$OUT/auto.txt"

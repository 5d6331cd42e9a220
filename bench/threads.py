"""torch's OpenMP wait policy on a quiet and a busy machine, each setting in a fresh process.

A busy machine is this one with two `while 1: pass` processes beside the measurement (what a
laptop with a browser open approximates). Each setting trains the `fast` model at widths 8 and 16
(fp32) for `--reps` x 20 steps on real Fashion-MNIST rows and predicts 8,192 images; the table
gives every repetition, so an intermittent collapse shows. A setting that has not finished in
`--timeout` seconds is reported as such (that is the collapse).

    python bench/threads.py [--reps 3] [--timeout 300] [--machines quiet,busy] [--settings 'spin 1000,passive']
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {
    "spin 300000 (GNU default)": {"GOMP_SPINCOUNT": "300000"},
    "spin 10000": {"GOMP_SPINCOUNT": "10000"},
    "spin 1000": {"GOMP_SPINCOUNT": "1000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}

CHILD = r"""
import itertools, json, sys, time, torch
import fmnist_kaggle
from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.training import fit
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.inference import predict
class NoBar:
    disable = True
    def update(self, n): pass
train = resolve_competition().train_set
x, y, images = train.images[:8192], train.labels[:8192], torch.from_numpy(train.images[:8192])
out = {}
for width in (8, 16):
    cfg = build_config(recipe="fast", amp="off", model_kwargs={"width": width})
    s, batches = fit.make_stepper(cfg, 10, x, y)
    feed = itertools.chain.from_iterable(batches.epoch_batches(e, e) for e in itertools.count())
    train_ips = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fit.train_epoch(s, itertools.islice(feed, 20), "timed", NoBar())
        train_ips.append(20 * cfg.batch_size / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    predict(s.eval_model, images, cfg, torch.device("cpu"))
    out[width] = {"train": train_ips, "predict": len(images) / (time.perf_counter() - t0)}
print(json.dumps(out))
"""


def measure(env: dict[str, str], reps: int, timeout: float) -> dict | None:
    child_env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD.replace("REPS", str(reps))],
            env={**child_env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--machines", default="quiet,busy")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="names from SETTINGS, comma-separated")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for machine in args.machines.split(","):
        busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2 if machine == "busy" else 0)]
        try:
            for name in args.settings.split(","):
                env = SETTINGS[name]
                t0 = time.perf_counter()
                got = measure(env, args.reps, args.timeout)
                rows.append({"machine": machine, "setting": name, "result": got, "seconds": time.perf_counter() - t0})
                cells = (
                    " | ".join(
                        f"w{w} train {'/'.join(f'{v:,.0f}' for v in r['train'])} predict {r['predict']:,.0f}"
                        for w, r in got.items()
                    )
                    if got
                    else f"not finished in {args.timeout:.0f} s"
                )
                print(f"{machine:<5} {name:<28} {cells}", flush=True)
        finally:
            for p in busy:
                p.kill()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()

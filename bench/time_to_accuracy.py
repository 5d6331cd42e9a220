"""Fold-train + blend with a recipe on the real Fashion-MNIST: wall time, CV and official-test accuracy.

python bench/time_to_accuracy.py --recipe cpu [--workdir /tmp/tta] [--amp off|auto|bf16] [--epochs N]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.evaluate.submission import make_submission
from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.training.config import build_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="cpu")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", default="0", help="runs with these fold-train seeds are blended (mean)")
    ap.add_argument("--amp", default="auto", help="auto (bf16 on CPUs with native bf16), off, bf16")
    ap.add_argument("--epochs", type=int, help="override the recipe's epochs")
    args = ap.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="fkaggle-tta-")
    comp = resolve_competition()
    hw = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available() and args.device != "cpu"
        else f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"
    )
    t0 = time.perf_counter()
    runs = []
    for s in args.seeds.split(","):
        cfg = build_config(recipe=args.recipe, seeds=[int(s)], device=args.device, amp=args.amp, epochs=args.epochs)
        name = f"tta-{args.recipe}-{args.amp}-e{cfg.epochs}-s{s}"
        train_folds(comp, cfg, run=name, workdir=workdir, progress=False)
        runs.append(name)
    train_s = time.perf_counter() - t0
    res = make_submission(comp, runs, "mean", f"tta-{args.recipe}-{args.amp}", workdir)
    wall = time.perf_counter() - t0
    print(
        f"\n{'recipe':<8} {'amp':<5} {'epochs':>6} {'hardware':<28} {'runs':>4} "
        f"{'wall':>8} {'train':>8} {'CV acc':>7} {'test acc':>8}"
    )
    print(
        f"{args.recipe:<8} {args.amp:<5} {cfg.epochs:>6} {hw[:28]:<28} {len(runs):>4} "
        f"{wall / 60:>6.1f}min {train_s / 60:>6.1f}min {res['cv']['acc']:.4f}  {res['test']['acc']:.4f}"
    )


if __name__ == "__main__":
    main()

"""Growing a run (issue 50): is a short run continued (`--init-from`: fold k starts from its fold-k
model, its one-cycle schedule anew) worth a run of the total length trained straight? Fold 0 of 5
of the real Fashion-MNIST (48,000 training rows, 12,000 held out), seed 0; each plan prints its
parts' held-out (CV) and official-test accuracy and the wall of all its parts.

    python bench/continuation.py [--recipe fast] [--width 8] [--amp off] 6 2+4 4 1.3+4 5.3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.runs.trainset import FoldModels, TrainingData
from fmnist_kaggle.runs.unit import train_unit
from fmnist_kaggle.training.config import build_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--amp", default="off")
    ap.add_argument("plans", nargs="+", help="epochs of each part, '+'-joined: 6 (straight), 2+4 (2, then 4 more)")
    args = ap.parse_args()
    comp = resolve_competition()
    train, test = comp.train_set, comp.test_set
    fold_of = make_folds(train.labels, 5, 42)
    va, rows = np.flatnonzero(fold_of == 0), int((fold_of != 0).sum())
    data = TrainingData(train, test, fold_of, identity={"bench": "continuation"})
    for plan in args.plans:
        parts, start, wall = [], None, 0.0
        for epochs in map(float, plan.split("+")):
            kw = dict(recipe=args.recipe, amp=args.amp, model_kwargs={"width": args.width}, eval_every=0)
            cfg = build_config(**kw, epochs=int(np.ceil(epochs)))
            cfg = replace(cfg, max_steps=round(epochs * cfg.steps_per_epoch(rows)), init_from="bench" if start else "")
            t0 = time.perf_counter()
            unit = train_unit(cfg, replace(data, start=start), fold=0, seed=0)
            wall += time.perf_counter() - t0
            start = FoldModels("bench", "", {}, {0: (unit.model_bytes,)}, {0: (Path("bench"),)})
            cv = float((unit.val_logits.argmax(1) == train.labels[va]).mean())
            acc = float((unit.test_logits.argmax(1) == test.labels).mean())
            parts.append(f"{epochs:g} ep: cv {cv:.4f} test {acc:.4f}")
        print(f"{args.recipe} w{args.width} {plan}: {' | '.join(parts)}  wall {wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()

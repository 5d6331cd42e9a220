"""Airbench-style ablation on the real Fashion-MNIST: one fold (fold 0 of 5, 48,000 training
rows) per variant at the same budget, each trick added to the previous variant; prints CV
(fold-0 held-out) accuracy, official-test accuracy of that one model and minutes.

    python bench/ablation.py [--epochs 3] [--only NAME,...] [--skip NAME,...] [--base cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.runs.trainset import TrainingData
from fmnist_kaggle.runs.unit import train_unit
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.recipes import get_recipe

# Each step adds its settings to everything above it (model keywords merge).
STEPS: list[tuple[str, dict]] = [
    ("base", {}),
    ("whiten", {"model_kwargs": {"stem": "whiten"}}),
    ("dirac", {"model_kwargs": {"dirac": True}}),
    ("bn", {"bn_freeze_scale": True, "bn_bias_lr": 64.0, "model_kwargs": {"bn_momentum": 0.4}}),
    ("lookahead", {"lookahead": 0.95}),
    ("translate", {"augment": "translate", "tta_shift": 2, "eval_every": 0}),
    ("smooth0.2", {"label_smoothing": 0.2}),
    ("poolfirst", {"model_kwargs": {"pool_first": True}}),
]


def merged(steps: list[tuple[str, dict]], upto: int, base: str, epochs: int) -> dict:
    cfg = {"recipe": base, "epochs": epochs, "model_kwargs": dict(get_recipe(base).settings.get("model_kwargs", {}))}
    for _, extra in steps[: upto + 1]:
        for k, v in extra.items():
            cfg[k] = {**cfg[k], **v} if k == "model_kwargs" else v
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--base", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated step names to run (the others are still merged in)")
    ap.add_argument(
        "--skip", default="", help="comma-separated step names left out entirely (tricks that did not help)"
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    comp = resolve_competition()
    train, test = comp.train_set, comp.test_set
    data = TrainingData(train, test, make_folds(train.labels, 5, 42), identity={"bench": "ablation"})
    only = set(filter(None, args.only.split(",")))
    skip = set(filter(None, args.skip.split(",")))
    steps = [step for step in STEPS if step[0] not in skip]
    hw = f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"
    rows = []
    for i, (name, _) in enumerate(steps):
        if only and name not in only:
            continue
        values = merged(steps, i, args.base, args.epochs)
        cfg = build_config(**{k: v for k, v in values.items() if k != "recipe"}, recipe=values["recipe"])
        t0 = time.perf_counter()
        unit = train_unit(cfg, data, fold=0, seed=0)
        minutes = (time.perf_counter() - t0) / 60
        va = data.split(0)[1]
        cv = float((unit.val_logits.argmax(1) == train.labels[va]).mean())
        acc = float((unit.test_logits.argmax(1) == test.labels).mean())
        rows.append(
            {"step": name, "cv": cv, "test": acc, "minutes": round(minutes, 2), "img_s": unit.summary["images_per_s"]}
        )
        print(
            f"{name:<12} cv {cv:.4f}  test {acc:.4f}  {minutes:5.2f} min  {unit.summary['images_per_s']:.0f} img/s",
            flush=True,
        )
    print(f"# {hw}, {args.epochs} epochs, fold 0 of 5, seed 0", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hardware": hw, "epochs": args.epochs, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

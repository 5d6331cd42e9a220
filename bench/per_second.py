"""More accuracy a second (issue 50): airbench-style ablations on the real Fashion-MNIST, each
variant on fold 0 of 5 (48,000 training rows) at the wall time of the baseline, each changed
alone from it. A variant's optimizer steps are sized from its own step times, measured first
(per image side for progressive resizing; the teacher's prediction pass counted for
distillation), so every variant spends about the baseline's seconds; the table prints the wall
each really took beside its fold-0 held-out (CV) and official-test accuracy.

    python bench/per_second.py [--base fast] [--width 16] [--epochs 4] [--amp off] [--only a,b] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fmnist_kaggle import metrics
from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.runs.trainset import FoldModels, PseudoLabels, TrainingData
from fmnist_kaggle.runs.unit import train_unit
from fmnist_kaggle.training.config import TrainConfig, build_config
from fmnist_kaggle.training.fit import make_stepper, train_epoch
from fmnist_kaggle.training.progressive import resized, side_at

# name -> (config changes, what the variant learns from: None, "teacher" or "pseudo")
VARIANTS: dict[str, tuple[dict, str | None]] = {
    "base": ({}, None),
    "ramp16": ({"resize_from": 16, "resize_until": 0.5}, None),
    "ramp16-0.75": ({"resize_from": 16, "resize_until": 0.75}, None),
    "ramp20": ({"resize_from": 20, "resize_until": 0.5}, None),
    "stage16": ({"resize_from": 16, "resize_until": 0.5, "resize_mode": "step"}, None),
    "batch128": ({"batch_size": 128, "lr": 0.1}, None),
    "batch512": ({"batch_size": 512, "lr": 0.4}, None),
    "distill": ({"distill_from": "base"}, "teacher"),
    "distill-T4": ({"distill_from": "base", "distill_temperature": 4.0}, "teacher"),
    "pseudo": ({"pseudo_label": "base"}, "pseudo"),
    "seed1": ({}, "seed1"),  # the base again with another seed: what a distilled run is blended against
}
PROBE_STEPS = 12


def step_seconds(cfg: TrainConfig, x: np.ndarray, y: np.ndarray, side: int) -> float:
    """Median seconds of one training step of `cfg` on images of `side` pixels (after warm-up)."""
    s, batches = make_stepper(replace(cfg, resize_from=0), 10, x, y)
    feed = itertools.chain.from_iterable(batches.epoch_batches(e, e) for e in itertools.count())
    times = []
    for _ in range(PROBE_STEPS + 3):
        xb, yb, *_ = next(feed)
        batch = iter([(resized(xb, side), yb)])
        t0 = time.perf_counter()
        train_epoch(s, batch, "probe", tqdm(disable=True), check_finite=False)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[3:]))


def steps_for(cfg: TrainConfig, seconds: float, per_side: dict[int, float], total_guess: int) -> int:
    """The most steps whose summed step times (each at its side) fit in `seconds`."""
    steps = total_guess
    for _ in range(20):  # the sides depend on the total: a fixed point, reached in a few rounds
        spent = sum(per_side[side_at(cfg, i, steps)] for i in range(steps))
        new = int(steps * seconds / spent)
        if abs(new - steps) <= 1:
            return new
        steps = new
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="fast")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--amp", default="off")
    ap.add_argument("--only", default="")
    ap.add_argument("--rows", type=int, default=0, help="train on the first N of fold 0's training rows (a smoke run)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    comp = resolve_competition()
    train, test = comp.train_set, comp.test_set
    fold_of = make_folds(train.labels, 5, 42)
    tr, va = np.flatnonzero(fold_of != 0), np.flatnonzero(fold_of == 0)
    if args.rows:  # fold 0's held-out rows and the first N of its training rows
        keep = np.sort(np.r_[tr[: args.rows], va])
        train, fold_of = train.subset(keep), fold_of[keep]
        tr, va = np.flatnonzero(fold_of != 0), np.flatnonzero(fold_of == 0)
    base_cfg = build_config(
        recipe=args.base, epochs=args.epochs, amp=args.amp, model_kwargs={"width": args.width}, eval_every=0
    )
    x, y = train.images[tr], train.labels[tr]
    sides = sorted(
        {side_at(build_config(**{**base_cfg.to_dict(), **c}), i, 100) for c, _ in VARIANTS.values() for i in range(100)}
    )
    per_side = {side: step_seconds(base_cfg, x, y, side) for side in sides}
    print(
        "step seconds by side: " + ", ".join(f"{k}px {v * 1000:.0f} ms" for k, v in per_side.items()), file=sys.stderr
    )
    only = set(filter(None, args.only.split(",")))
    data = TrainingData(train, test, fold_of, identity={"bench": "per_second"})
    base = train_unit(base_cfg, data, fold=0, seed=0)
    budget = base.summary["times"]["train"]  # the training seconds every variant gets
    # step probes run short of a unit's own pace (a unit also refreshes, copies, checks): scale them to it
    pace = budget / (base_cfg.total_steps(len(tr)) * per_side[28])
    per_side = {side: t * pace for side, t in per_side.items()}
    teacher_s = _teacher_seconds(base_cfg, base, x)
    rows = [_row("base", {}, base, base.summary["unit_seconds"], train, test, va)]
    for name, (changes, needs) in VARIANTS.items():
        if name == "base" or (only and name not in only):
            continue
        cfg = build_config(**{**base_cfg.to_dict(), **changes, "distill_from": "", "pseudo_label": ""})
        per = (
            per_side if cfg.batch_size == base_cfg.batch_size else {s: step_seconds(cfg, x, y, s) * pace for s in sides}
        )
        spend = budget - teacher_s if needs == "teacher" else budget
        cfg = replace(cfg, max_steps=steps_for(cfg, spend, per, base_cfg.total_steps(len(tr))), epochs=100)
        t0 = time.perf_counter()
        seed = 1 if needs == "seed1" else 0
        unit = train_unit(cfg, _learning_from(needs, data, base_cfg, base), fold=0, seed=seed)
        rows.append(_row(name, changes, unit, time.perf_counter() - t0, train, test, va, base))
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")),
        platform.processor(),
    )
    hw = f"{model}, {torch.get_num_threads()} threads, amp {args.amp}"
    print(f"# {hw}; {args.base} width {args.width}, base {args.epochs} epochs, fold 0 of 5, seed 0", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"hardware": hw, "per_side_s": per_side, "rows": rows}, indent=1))


def _learning_from(needs: str | None, data: TrainingData, base_cfg: TrainConfig, base) -> TrainingData:
    """The data a variant trains on: fold 0 as it is, with the base model as its distillation
    teacher, or with the test rows the base fold-0 model labels confidently (honest pseudo-labels)."""
    if needs == "teacher":
        return replace(data, teacher=_in_memory_teacher(base_cfg, base))
    if needs == "pseudo":
        p = metrics.softmax(base.test_logits)
        keep = np.flatnonzero(p.max(1) >= base_cfg.pseudo_threshold)
        return replace(data, pseudo=PseudoLabels(("base",), "", {0: keep}, {0: p[keep].argmax(1)}))
    return data


def _row(name: str, changes: dict, unit, wall: float, train, test, va: np.ndarray, base=None) -> dict:
    cv = float((unit.val_logits.argmax(1) == train.labels[va]).mean())
    acc = float((unit.test_logits.argmax(1) == test.labels).mean())
    blend = {}
    if base is not None:  # the variant averaged with the base (probabilities), as a session blends its runs
        for part, logits, labels in (("val", "val_logits", train.labels[va]), ("test", "test_logits", test.labels)):
            p = metrics.softmax(getattr(unit, logits)) + metrics.softmax(getattr(base, logits))
            blend[part] = float((p.argmax(1) == labels).mean())
    train_s, steps = unit.summary["times"]["train"], unit.summary["steps"]
    with_base = f"  with base: cv {blend['val']:.4f} test {blend['test']:.4f}" if blend else ""
    print(
        f"{name:<12} cv {cv:.4f}  test {acc:.4f}  wall {wall:6.1f} s  train {train_s:6.1f} s  {steps} steps{with_base}",
        flush=True,
    )
    return {
        "variant": name,
        "cv": cv,
        "test": acc,
        "blend_with_base": blend,
        "wall_s": round(wall, 1),
        "train_s": train_s,
        "steps": steps,
        "changes": changes,
    }


def _in_memory_teacher(cfg: TrainConfig, unit) -> FoldModels:
    """The base run's fold-0 model as a teacher (a session's earlier run of the same fold)."""
    return FoldModels(
        "base",
        "",
        {"config": cfg.to_dict(), "data": {"num_classes": 10}},
        {0: (unit.model_bytes,)},
        {0: (Path("base"),)},
    )


def _teacher_seconds(cfg: TrainConfig, unit, x: np.ndarray) -> float:
    """What the teacher's pass over the fold's training rows costs (the distilled student pays it)."""
    from fmnist_kaggle.runs.distill import teacher_logits

    teacher = _in_memory_teacher(cfg, unit)
    t0 = time.perf_counter()
    teacher_logits(teacher, 0, x, cfg.device)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

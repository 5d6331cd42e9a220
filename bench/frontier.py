"""Time-to-accuracy on the real data: a recipe variant at a few widths x training lengths, on fold 0
of the 5-fold split (48,000 training rows, 12,000 held out), each length its own one-cycle run.
Held-out accuracy (the autopilot's evidence), the official-test accuracy of that one model, the
seconds and the speed. Results are appended to --out as they finish; a re-run skips the points
already there (same variant, width and epochs).

    python bench/frontier.py --variant aug --recipe fast --set augment=altflip --set tta=true \\
        [--widths 16,24] [--epochs 4,8,16,32] [--amp auto] [--out bench/results/frontier.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fmnist_kaggle.data.competition import official_competition
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.training.config import build_config, parse_assignments
from fmnist_kaggle.training.device import amp_dtype, resolve_device
from fmnist_kaggle.training.fit import fit
from fmnist_kaggle.training.inference import predict


def point(comp, recipe: str, settings: dict, width: int, epochs: float, amp: str, seed: int = 0) -> dict:
    train, test = comp.train_set, comp.test_set
    fold_of = make_folds(train.labels, 5, 42)
    tr, va = np.flatnonzero(fold_of != 0), np.flatnonzero(fold_of == 0)
    base = build_config(recipe=recipe)
    kwargs = {**base.model_kwargs, **settings.pop("model_kwargs", {}), "width": width}
    steps = int(round(epochs * (len(tr) // base.batch_size))) if epochs != int(epochs) else 0
    cfg = build_config(
        recipe=recipe,
        model_kwargs=kwargs,
        epochs=int(np.ceil(epochs)),
        max_steps=steps,
        eval_every=0,
        amp=amp,
        **settings,
    )
    t0 = time.perf_counter()
    res = fit(
        cfg,
        10,
        train.images[tr],
        train.labels[tr],
        train.images[va],
        train.labels[va],
        fold=0,
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    logits = predict(res.model, torch.from_numpy(test.images), cfg, resolve_device("cpu"))
    return {
        "width": width,
        "epochs": epochs,
        "seed": seed,
        "val_acc": round(float((res.val_logits.argmax(1) == train.labels[va]).mean()), 5),
        "test_acc": round(float((logits.argmax(1) == test.labels).mean()), 5),
        "seconds": round(seconds, 1),
        "train_img_s": round(res.images_per_s, 1),
        "precision": str(amp_dtype(cfg, resolve_device("cpu")) or "float32"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", required=True, help="the name these points are kept under")
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training settings over the recipe")
    ap.add_argument("--widths", default="16")
    ap.add_argument("--epochs", default="4,8,16,32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--out", default="bench/results/frontier.json")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = parse_assignments(args.set, "--set")
    comp = official_competition()
    for width in map(int, args.widths.split(",")):
        for epochs in map(float, args.epochs.split(",")):
            done = json.loads(out.read_text()) if out.exists() else []
            key = (args.variant, width, epochs, args.seed)
            if any((p["variant"], p["width"], p["epochs"], p.get("seed", 0)) == key for p in done):
                continue
            p = {"variant": args.variant, "recipe": args.recipe, "settings": settings}
            p.update(point(comp, args.recipe, json.loads(json.dumps(settings)), width, epochs, args.amp, args.seed))
            done = json.loads(out.read_text()) if out.exists() else []
            out.write_text(json.dumps([*done, p], indent=1))
            print(json.dumps(p), flush=True)


if __name__ == "__main__":
    main()

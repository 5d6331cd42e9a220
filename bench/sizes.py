"""Which model size wins per second: time-to-accuracy of the `fast` recipe on the real data, a few
widths x training lengths, on fold 0 of the 5-fold split (48,000 training rows, 12,000 held out),
each length its own one-cycle run. The autopilot sizes its runs from this table
(`fmnist_kaggle/search/sizes.toml`, written with --write); docs/results.md shows it.

    python bench/sizes.py [--widths 8,16,24,32] [--epochs 1,2,4,8,16] [--amp auto] [--out sizes.json] [--write]

Results are appended to --out as they finish, and a re-run skips the points already there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.device import amp_dtype, resolve_device
from fmnist_kaggle.training.fit import fit
from fmnist_kaggle.training.inference import predict


def point(comp, width: int, epochs: int, amp: str) -> dict:
    train, test = comp.train_set, comp.test_set
    fold_of = make_folds(train.labels, 5, 42)
    tr, va = np.flatnonzero(fold_of != 0), np.flatnonzero(fold_of == 0)
    kwargs = {"width": width, "stem": "whiten", "bn_momentum": 0.4}
    cfg = build_config(recipe="fast", model_kwargs=kwargs, epochs=epochs, eval_every=0, amp=amp)
    t0 = time.perf_counter()
    res = fit(
        cfg, 10, train.images[tr], train.labels[tr], train.images[va], train.labels[va], fold=0, seed=0, progress=False
    )
    seconds = time.perf_counter() - t0
    logits = predict(res.model, torch.from_numpy(test.images), cfg, resolve_device("cpu"))
    return {
        "width": width,
        "epochs": epochs,
        "val_acc": round(float((res.val_logits.argmax(1) == train.labels[va]).mean()), 5),
        "test_acc": round(float((logits.argmax(1) == test.labels).mean()), 5),
        "seconds": round(seconds, 1),
        "train_img_s": round(res.images_per_s, 1),
        "precision": str(amp_dtype(cfg, resolve_device("cpu")) or "float32"),
    }


def write_table(points: list[dict], path: Path, hardware: str) -> None:
    """The autopilot's data: held-out accuracy per (width, epochs) of one fold of the real data."""
    lines = [
        "# Time-to-accuracy of the `fast` recipe on the real Fashion-MNIST, written by bench/sizes.py:",
        f"# fold 0 of 5 (48,000 training rows, 12,000 held out), one one-cycle run per point, {hardware}.",
        "# The autopilot reads accuracy against epochs per width; seconds come from speeds measured where it runs.",
        "",
    ]
    for p in sorted(points, key=lambda p: (p["width"], p["epochs"])):
        lines += ["[[point]]", f"width = {p['width']}", f"epochs = {p['epochs']}", f"val_acc = {p['val_acc']}", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="8,16,24,32")
    ap.add_argument("--epochs", default="1,2,4,8,16")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--out", default="bench/results/sizes.json")
    ap.add_argument("--write", action="store_true", help="write fmnist_kaggle/search/sizes.toml from --out")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.exists() else []
    from fmnist_kaggle.search.autopilot.speeds import this_machine

    hardware = this_machine("cpu")
    comp = resolve_competition()
    for width in map(int, args.widths.split(",")):
        for epochs in map(int, args.epochs.split(",")):
            if any(p["width"] == width and p["epochs"] == epochs for p in done):
                continue
            p = point(comp, width, epochs, args.amp)
            done.append(p)
            out.write_text(json.dumps(done, indent=1))
            print(json.dumps(p), flush=True)
    print(f"{'width':>5} {'epochs':>6} {'val acc':>8} {'test acc':>8} {'seconds':>8} {'img/s':>7}")
    for p in sorted(done, key=lambda p: (p["width"], p["epochs"])):
        print(
            f"{p['width']:>5} {p['epochs']:>6} {p['val_acc']:>8.4f} {p['test_acc']:>8.4f} "
            f"{p['seconds']:>8.0f} {p['train_img_s']:>7.0f}"
        )
    if args.write:
        write_table(done, Path(__file__).resolve().parents[1] / "fmnist_kaggle" / "search" / "sizes.toml", hardware)


if __name__ == "__main__":
    main()

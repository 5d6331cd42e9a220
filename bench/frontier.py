"""Time-to-accuracy on the real data: a recipe variant at a few widths x training lengths, on fold 0
of the 5-fold split (48,000 training rows, 12,000 held out), each length its own one-cycle run.
Held-out accuracy (the autopilot's evidence), the official-test accuracy of that one model, the
seconds and the speed. Results are appended to --out as they finish; a re-run skips the points
already there (same variant, width and epochs).

    python bench/frontier.py --variant fast-aug --recipe fast --set augment=cropflip --set tta=true \\
        [--widths 16,24] [--epochs 4,8,16,32] [--amp auto] [--out bench/results/frontier.json] [--logits DIR]
    python bench/frontier.py --write [--out ...]   # the points into fmnist_kaggle/search/frontier.toml

A variant named like a portfolio entry is that entry's evidence: `--write` replaces the entry's
points in frontier.toml with the measured ones (other entries' points stay). `--logits DIR` keeps
each point's held-out and test logits (DIR/VARIANT-wW-eE-sS.npz), for measuring blends offline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fmnist_kaggle.data.competition import official_competition
from fmnist_kaggle.data.folds import make_folds, stratified_subset
from fmnist_kaggle.training.config import build_config, parse_assignments
from fmnist_kaggle.training.device import amp_dtype, resolve_device
from fmnist_kaggle.training.fit import fit
from fmnist_kaggle.training.inference import predict


def point(
    comp,
    recipe: str,
    settings: dict,
    width: int,
    epochs: float,
    amp: str,
    seed: int = 0,
    logits: Path | None = None,
    subset: int = 0,
    fold: int = 0,
) -> dict:
    train, test = comp.train_set, comp.test_set
    if subset:  # small data: a stratified subset (as `--subset` draws it), fold 0 of its own 5 folds
        train = train.subset(stratified_subset(train.labels, subset, 42))
    fold_of = make_folds(train.labels, 5, 42)
    tr, va = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
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
        fold=fold,
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    test_logits = predict(res.model, torch.from_numpy(test.images), cfg, resolve_device("cpu"))
    if logits is not None:
        np.savez_compressed(logits, val=res.val_logits, test=test_logits, val_rows=va)
    return {
        "width": width,
        "epochs": epochs,
        "rows": int(len(tr)),
        "fold": fold,
        "seed": seed,
        "val_acc": round(float((res.val_logits.argmax(1) == train.labels[va]).mean()), 5),
        "test_acc": round(float((test_logits.argmax(1) == test.labels).mean()), 5),
        "seconds": round(seconds, 1),
        "train_img_s": round(res.images_per_s, 1),
        "precision": str(amp_dtype(cfg, resolve_device("cpu")) or "float32"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", help="the name these points are kept under (a portfolio entry's name)")
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training settings over the recipe")
    ap.add_argument("--widths", default="16")
    ap.add_argument("--epochs", default="4,8,16,32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subset", type=int, default=0, help="a stratified subset of N rows (small-data evidence)")
    ap.add_argument("--fold", type=int, default=0, help="the held-out fold of the 5 (another fold: less noise)")
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--out", default="bench/results/frontier.json")
    ap.add_argument("--logits", help="a folder to keep each point's held-out and test logits in")
    ap.add_argument("--write", action="store_true", help="write the points of --out into frontier.toml")
    ap.add_argument("--entries", default="fast,fast-aug,small", help="with --write: the variants that are entries")
    args = ap.parse_args()
    out = Path(args.out)
    if args.write:
        entries = set(args.entries.split(","))
        return write_frontier([p for p in json.loads(out.read_text()) if p["variant"] in entries])
    if not args.variant:
        ap.error("--variant is required to measure")
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = parse_assignments(args.set, "--set")
    comp = official_competition()
    for width in map(int, args.widths.split(",")):
        for epochs in map(float, args.epochs.split(",")):
            done = json.loads(out.read_text()) if out.exists() else []
            key = (args.variant, width, epochs, args.seed, args.subset, args.fold)
            if any(
                (p["variant"], p["width"], p["epochs"], p.get("seed", 0), p.get("subset", 0), p.get("fold", 0)) == key
                for p in done
            ):
                continue
            p = {"variant": args.variant, "recipe": args.recipe, "settings": settings, "subset": args.subset}
            stem = f"{args.variant}-w{width}-e{epochs:g}-s{args.seed}" + (f"-n{args.subset}" if args.subset else "")
            stem += f"-f{args.fold}" if args.fold else ""
            keep = Path(args.logits) / f"{stem}.npz" if args.logits else None
            if keep is not None:
                keep.parent.mkdir(parents=True, exist_ok=True)
            settings_copy = json.loads(json.dumps(settings))
            where = (args.seed, keep, args.subset, args.fold)
            p.update(point(comp, args.recipe, settings_copy, width, epochs, args.amp, *where))
            done = json.loads(out.read_text()) if out.exists() else []
            out.write_text(json.dumps([*done, p], indent=1))
            print(json.dumps(p), flush=True)


FRONTIER = Path(__file__).resolve().parents[1] / "fmnist_kaggle" / "search" / "frontier.toml"


def _fold_offsets(points: list[dict]) -> dict[int, float]:
    """Per fold, the mean accuracy fold 0 gives minus what it gives, over the points both measured."""
    key = lambda p: (p["variant"], p["width"], p["epochs"], p.get("rows", 48_000), p.get("seed", 0))  # noqa: E731
    fold0 = {key(p): p["val_acc"] for p in points if p.get("fold", 0) == 0}
    gaps: dict[int, list[float]] = {}
    for p in points:
        if p.get("fold", 0) and key(p) in fold0:
            gaps.setdefault(p["fold"], []).append(fold0[key(p)] - p["val_acc"])
    for fold, gap in gaps.items():
        print(f"fold {fold}: {len(gap)} paired points, offset {np.mean(gap):+.4f} (each: {np.round(gap, 4).tolist()})")
    return {fold: float(np.mean(gap)) for fold, gap in gaps.items()}


def write_frontier(points: list[dict]) -> None:
    """frontier.toml: the measured curves (entry and data size; the mean where several seeds or
    folds were measured) replace theirs, the other points stay. Another fold's points are first put
    on fold 0's scale: one fold is harder than another for every recipe alike, so its offset (the
    mean difference over the points measured on both) is added before averaging, and only the
    differences between recipes are averaged."""
    import tomllib

    from fmnist_kaggle.training.device import machine_key

    old = tomllib.loads(FRONTIER.read_text()).get("point", [])
    measured = {(p["variant"], p.get("rows", 48_000)) for p in points}  # (entry, data size) curves replaced
    offset = _fold_offsets(points)
    by_key: dict[tuple, list[float]] = {}
    for p in points:
        key = (p["variant"], p["width"], p["epochs"], p.get("rows", 48_000))
        by_key.setdefault(key, []).append(p["val_acc"] + offset.get(p.get("fold", 0), 0.0))
    rows = [dict(p) for p in old if (p.get("entry", "fast"), p.get("rows", 48_000)) not in measured]
    rows += [
        {"entry": e, "width": w, "epochs": ep, "val_acc": round(float(np.mean(v)), 5), "rows": r}
        for (e, w, ep, r), v in by_key.items()
    ]
    lines = [
        "# Time-to-accuracy of the autopilot's portfolio entries on the real Fashion-MNIST, written by",
        "# bench/frontier.py --write: fold 0 of 5 (48,000 training rows, 12,000 held out), one one-cycle run",
        f"# per point; the last points measured on {machine_key('cpu')}, bf16 autocast.",
        "# The autopilot reads held-out accuracy against epochs per entry and width; seconds come from",
        "# speeds measured where it runs (docs/results.md shows the table).",
        "",
    ]
    for p in sorted(rows, key=lambda p: (p.get("entry", "fast"), p.get("rows", 48_000), p["width"], p["epochs"])):
        epochs = int(p["epochs"]) if float(p["epochs"]).is_integer() else p["epochs"]
        lines += ["[[point]]", f'entry = "{p.get("entry", "fast")}"', f"width = {p['width']}", f"epochs = {epochs}"]
        lines += [f"val_acc = {p['val_acc']}"] + ([f"rows = {p['rows']}"] if p.get("rows", 48_000) != 48_000 else [])
        lines += [""]
    FRONTIER.write_text("\n".join(lines))
    print(f"wrote {FRONTIER} ({len(rows)} points)")


if __name__ == "__main__":
    main()

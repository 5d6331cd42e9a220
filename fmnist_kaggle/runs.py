"""K-fold training runs and their artifacts under `oof/<run>/` (schema: docs/artifacts.md).

A run's state lives in its files, not in memory: a fold is finished when its
`fold_K/metrics.json` exists, so re-running skips it, shards copied from other machines
count, and `fkaggle status` needs nothing but the folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import __version__, atomic, metrics
from fmnist_kaggle.competition import Competition
from fmnist_kaggle.config import TrainConfig
from fmnist_kaggle.data import ImageSet
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.folds import load_or_make_folds, stratified_subset

SCHEMA = 1


def oof_root(workdir: str | Path) -> Path:
    return Path(workdir) / "oof"


def default_run_name(cfg: TrainConfig, recipe: str | None = None) -> str:
    digest = hashlib.sha256(json.dumps(cfg.semantic(), sort_keys=True, default=str).encode()).hexdigest()[:6]
    model = cfg.model.replace("timm:", "timm-").replace("/", "-")
    return "-".join(p for p in (model, recipe, f"k{cfg.folds}", digest) if p)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"fmnist_kaggle": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "albumentations", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def training_data(comp: Competition, cfg: TrainConfig) -> ImageSet:
    train = comp.train_set
    if cfg.subset:
        train = train.subset(stratified_subset(train.labels, cfg.subset, cfg.fold_seed))
    return train


def _fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold_{fold}"


def _history_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def _read_history(path: Path) -> list[dict[str, Any]]:
    return list(csv.DictReader(path.open())) if path.exists() else []


def fold_train(
    comp: Competition,
    cfg: TrainConfig,
    run: str | None = None,
    workdir: str | Path = ".",
    only_folds: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    recipe: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train the selected folds of a run (all by default), then assemble if complete."""
    import torch

    from fmnist_kaggle.train import fit, predict, resolve_device

    train = training_data(comp, cfg)
    test = comp.test_set
    fold_of, folds_fp = load_or_make_folds(oof_root(workdir) / "folds", train, cfg.folds, cfg.fold_seed)
    run = run or default_run_name(cfg, recipe)
    run_dir = oof_root(workdir) / run
    selected = sorted(set(only_folds)) if only_folds else list(range(cfg.folds))
    bad = [f for f in selected if not 0 <= f < cfg.folds]
    if bad:
        raise FkaggleError(f"fold {bad[0]} out of range 0..{cfg.folds - 1}")

    identity = {
        "data_fingerprint": train.fingerprint(),
        "folds_fingerprint": folds_fp,
        "test_fingerprint": test.fingerprint() if test is not None else None,
        "config": cfg.semantic(),
    }
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        old_identity = {k: old["data"].get(k) for k in identity if k != "config"}
        old_identity["config"] = {k: v for k, v in old["config"].items() if k in identity["config"]}
        if old_identity != identity:
            if not overwrite:
                diff = sorted(k for k in identity["config"] if old_identity["config"].get(k) != identity["config"][k])
                what = f"config differs ({', '.join(diff)})" if diff else "training/test data or folds differ"
                raise FkaggleError(f"run exists and its {what}; pass --overwrite to replace it, or choose another --run", run_dir)
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run_dir / "config.toml", _config_toml(cfg))
    atomic.save_npy(run_dir / "folds.npy", fold_of)
    atomic.save_npy(run_dir / "labels.npy", train.labels)
    if test is not None and test.labels is not None:
        atomic.save_npy(run_dir / "test_labels.npy", test.labels)
    base = _base_manifest(comp, cfg, run, train, test, identity, recipe)
    _write_manifest(run_dir, base, cfg)

    device = resolve_device(cfg.device)
    for warning in cfg.warnings():
        log(warning)
    log(f"run {run}: {cfg.model}, {cfg.folds} folds ({', '.join(map(str, selected))} here), {len(train)} train rows, device {device}")
    for fold in selected:
        fdir = _fold_dir(run_dir, fold)
        if (fdir / "metrics.json").exists():
            log(f"fold {fold}: done already, skipped")
            continue
        t0 = time.perf_counter()
        tr, va = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        val_logits, test_logits, history, best_epochs, speeds = [], [], [], [], []
        for seed in cfg.seeds:
            seed_val, seed_test = fdir / f"seed_{seed}_val.npy", fdir / f"seed_{seed}_test.npy"
            if not seed_val.exists():
                result = fit(
                    cfg, train.num_classes, train.images[tr], train.labels[tr], train.images[va], train.labels[va],
                    fold=fold, seed=seed, checkpoint=fdir / f"checkpoint_seed_{seed}.pt", progress=progress,
                    desc=f"[{run} f{fold} s{seed}]",
                )  # fmt: skip
                # final predictions in fp32 (dtype None) for stable logits
                v = predict(result.model, torch.from_numpy(train.images[va]), cfg, device, None)
                t = predict(result.model, torch.from_numpy(test.images), cfg, device, None) if test is not None else np.zeros((0, train.num_classes), np.float32)
                with atomic.atomic_path(fdir / f"model_seed_{seed}.pt") as tmp:
                    torch.save(result.model.state_dict(), tmp)
                atomic.write_text(fdir / f"history_seed_{seed}.csv", _history_csv(result.history))
                atomic.save_npy(seed_test, t)
                atomic.save_npy(seed_val, v)  # written last: marks the seed finished
                (fdir / f"checkpoint_seed_{seed}.pt").unlink(missing_ok=True)
            val_logits.append(np.load(seed_val))
            test_logits.append(np.load(seed_test))
            hist = _read_history(fdir / f"history_seed_{seed}.csv")
            history += hist
            best = min(hist, key=lambda r: float(r["val_loss"])) if hist else None
            best_epochs.append(int(best["epoch"]) if best else 0)
            speeds.append(float(np.mean([float(r["images_per_s"]) for r in hist])) if hist else 0.0)
        v = np.mean(val_logits, axis=0).astype(np.float32)
        atomic.save_npy(fdir / "val_logits.npy", v)
        atomic.save_npy(fdir / "test_logits.npy", np.mean(test_logits, axis=0).astype(np.float32))
        atomic.write_text(fdir / "history.csv", _history_csv(history))
        m = {
            "fold": fold, "val_rows": int(len(va)), "acc": metrics.accuracy(v, train.labels[va]),
            "logloss": metrics.log_loss(v, train.labels[va]), "best_epochs": best_epochs,
            "seconds": round(time.perf_counter() - t0, 1), "images_per_s": round(float(np.mean(speeds)), 1), "finished": _now(),
        }  # fmt: skip
        atomic.write_json(fdir / "metrics.json", m)  # the fold's done marker
        log(f"fold {fold}: acc {m['acc']:.4f}  logloss {m['logloss']:.4f}  best epoch(s) {best_epochs}  {m['seconds']:.0f}s  {m['images_per_s']:.0f} img/s")
        _write_manifest(run_dir, base, cfg)
    manifest = assemble(run_dir)
    if manifest["complete"]:
        cv = manifest["cv"]
        per_fold = ", ".join(f"{f['acc']:.4f}" for f in cv["per_fold"])
        log(f"CV accuracy {cv['acc']:.4f}  log-loss {cv['logloss']:.4f}  (per fold: {per_fold})")
        if manifest.get("test_metrics"):
            log(f"test accuracy of the {cfg.folds}-fold ensemble: {manifest['test_metrics']['acc']:.4f}")
    else:
        log(f"folds missing: {manifest['missing_folds']} (run them, or copy their fold_K folders here)")
    return manifest


def _config_toml(cfg: TrainConfig) -> str:
    from fmnist_kaggle.config import to_toml

    return to_toml(cfg)


def _base_manifest(comp: Competition, cfg: TrainConfig, run: str, train: ImageSet, test: ImageSet | None, identity: dict, recipe: str | None) -> dict[str, Any]:
    from fmnist_kaggle.models import count_params, create_model

    return {
        "schema": SCHEMA,
        "run": run,
        "created": _now(),
        "model": cfg.model,
        "params": count_params(create_model(cfg.model, num_classes=train.num_classes, **cfg.model_kwargs)),
        "recipe": recipe,
        "seeds": cfg.seeds,
        "config": cfg.to_dict(),
        "data": {
            "competition": comp.name,
            "train_path": str(train.path),
            "rows": len(train),
            "num_classes": train.num_classes,
            "label_values": list(train.label_values),
            "class_names": comp.names,
            "data_fingerprint": identity["data_fingerprint"],
            "test_path": str(test.path) if test is not None else None,
            "test_rows": len(test) if test is not None else 0,
            "test_fingerprint": identity["test_fingerprint"],
            "folds": cfg.folds,
            "fold_seed": cfg.fold_seed,
            "folds_fingerprint": identity["folds_fingerprint"],
        },
        "versions": _versions(),
    }


def _write_manifest(run_dir: Path, base: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    manifest = {**old, **base, "created": old.get("created", base["created"]), "updated": _now()}
    fold_metrics, status = [], {}
    for f in range(cfg.folds):
        mfile = _fold_dir(run_dir, f) / "metrics.json"
        if mfile.exists():
            fold_metrics.append(json.loads(mfile.read_text()))
            status[str(f)] = "done"
        else:
            partial = any(_fold_dir(run_dir, f).glob("checkpoint_seed_*.pt")) or any(_fold_dir(run_dir, f).glob("seed_*_val.npy"))
            status[str(f)] = "partial" if partial else "missing"
    manifest["fold_status"] = status
    manifest["fold_metrics"] = fold_metrics
    manifest["missing_folds"] = [int(f) for f, s in status.items() if s != "done"]
    manifest["complete"] = not manifest["missing_folds"]
    atomic.write_json(path, manifest)
    return manifest


def _static_part(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without the fields that are re-derived from the fold folders."""
    return {k: v for k, v in manifest.items() if k not in ("fold_status", "fold_metrics", "missing_folds", "complete", "updated")}


def assemble(run_dir: Path) -> dict[str, Any]:
    """Once every fold is present: OOF logits, fold-mean test logits, history, curves, CV."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cfg = TrainConfig(**manifest["config"])
    base = _static_part(manifest)
    manifest = _write_manifest(run_dir, base, cfg)
    if not manifest["complete"]:
        return manifest
    fold_of = np.load(run_dir / "folds.npy")
    k = manifest["data"]["num_classes"]
    oof = np.full((len(fold_of), k), np.nan, dtype=np.float32)
    tests = []
    for f in range(cfg.folds):
        v = np.load(_fold_dir(run_dir, f) / "val_logits.npy")
        if len(v) != int((fold_of == f).sum()):
            raise FkaggleError(f"fold {f} has {len(v)} validation rows, the fold assignment {(fold_of == f).sum()}", run_dir)
        oof[fold_of == f] = v
        tests.append(np.load(_fold_dir(run_dir, f) / "test_logits.npy"))
    test_logits = np.mean(tests, axis=0).astype(np.float32)
    atomic.save_npy(run_dir / "oof_logits.npy", oof)
    atomic.save_npy(run_dir / "test_logits.npy", test_logits)
    history = []
    for f in range(cfg.folds):
        history += _read_history(_fold_dir(run_dir, f) / "history.csv")
    atomic.write_text(run_dir / "history.csv", _history_csv(history))
    if history:
        from fmnist_kaggle.plots import learning_curves

        learning_curves(history, run_dir / "learning_curves.png", title=manifest["run"])
    labels = np.load(run_dir / "labels.npy")
    manifest["cv"] = {
        "acc": metrics.accuracy(oof, labels),
        "logloss": metrics.log_loss(oof, labels),
        "per_fold": metrics.per_fold(oof, labels, fold_of),
    }
    if (run_dir / "test_labels.npy").exists():
        test_labels = np.load(run_dir / "test_labels.npy")
        manifest["test_metrics"] = {"acc": metrics.accuracy(test_logits, test_labels), "logloss": metrics.log_loss(test_logits, test_labels)}
    manifest["artifacts"] = ["oof_logits.npy", "test_logits.npy", "folds.npy", "labels.npy", "history.csv", "learning_curves.png", "config.toml"]
    atomic.write_json(run_dir / "manifest.json", manifest)
    return manifest


@dataclass
class Run:
    """A finished run: what blending and scoring read."""

    name: str
    dir: Path
    manifest: dict[str, Any]
    oof_logits: np.ndarray
    test_logits: np.ndarray
    fold_of: np.ndarray


def resolve_run_dir(ref: str | Path, workdir: str | Path = ".") -> Path:
    p = Path(ref)
    if (p / "manifest.json").exists():
        return p
    q = oof_root(workdir) / str(ref)
    if (q / "manifest.json").exists():
        return q
    raise FkaggleError(f"no run {ref!r} (looked for {p}/manifest.json and {q}/manifest.json)")


def load_run(ref: str | Path, workdir: str | Path = ".") -> Run:
    run_dir = resolve_run_dir(ref, workdir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if not (run_dir / "oof_logits.npy").exists():
        missing = manifest.get("missing_folds", [])
        raise FkaggleError(f"run is not complete (missing folds {missing}); `fkaggle status {manifest['run']}`", run_dir)
    return Run(
        name=manifest["run"],
        dir=run_dir,
        manifest=manifest,
        oof_logits=np.load(run_dir / "oof_logits.npy"),
        test_logits=np.load(run_dir / "test_logits.npy"),
        fold_of=np.load(run_dir / "folds.npy"),
    )


def run_status(ref: str | Path, workdir: str | Path = ".") -> dict[str, Any]:
    run_dir = resolve_run_dir(ref, workdir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cfg = TrainConfig(**manifest["config"])
    base = _static_part(manifest)
    manifest = _write_manifest(run_dir, base, cfg)
    if manifest["complete"] and not (run_dir / "oof_logits.npy").exists():
        manifest = assemble(run_dir)
    return manifest

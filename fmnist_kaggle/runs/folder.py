"""A run's folder (`oof/<run>/`, schema: docs/artifacts.md): its name, the data it trains on, the
model check made before anything is written, opening (or creating) it whole, the state of its
folds and seeds, and a fold finished once its seeds are in."""

from __future__ import annotations

import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle._version import __version__
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.folds import load_or_make_folds
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors import first_line
from fmnist_kaggle.runs.fold_models import load_fold_models, load_start
from fmnist_kaggle.runs.identity import identity_diff
from fmnist_kaggle.runs.pseudo import pseudo_labels
from fmnist_kaggle.runs.store import fold_state, read_seed
from fmnist_kaggle.runs.trainset import TrainingData, training_rows
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.artifacts import CorruptArtifact, read_array, utc_now, write_array, write_recorded
from fmnist_kaggle.storage.layout import SCHEMA, FoldDir, RunDir, Workspace
from fmnist_kaggle.training.config import TrainConfig, to_toml

log = logging.getLogger(__name__)


def default_run_name(cfg: TrainConfig) -> str:
    model = cfg.model.replace("timm:", "timm-").replace("/", "-").replace(":", "-")
    return "-".join(p for p in (model, cfg.recipe, f"k{cfg.folds}", cfg.semantic_hash()[:6]) if p)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"fmnist_kaggle": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "albumentations", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------- the data a run trains on


def training_data(comp: Competition, cfg: TrainConfig, ws: Workspace) -> TrainingData:
    train = training_rows(comp, cfg)
    test = comp.test_set
    fold_of, folds_fp = load_or_make_folds(ws, train, cfg.folds, cfg.fold_seed)
    identity = {
        "data_fingerprint": train.fingerprint(),
        "folds_fingerprint": folds_fp,
        "test_fingerprint": test.fingerprint() if test is not None else None,
        "config": cfg.semantic(),
    }
    pseudo = None
    if cfg.teachers():
        if test is None:
            raise FkaggleError("--pseudo-label needs a test file to label (--test or the competition config)")
        pseudo = pseudo_labels(ws, cfg.teachers(), identity, cfg.folds, cfg.pseudo_threshold)
        identity["teacher_fingerprint"] = pseudo.fingerprint  # a retrained teacher makes another run
    teacher = None
    if cfg.distill_from:
        teacher = load_fold_models(ws, cfg.distill_from, identity, cfg.folds, "distillation teacher")
        identity["distill_fingerprint"] = teacher.fingerprint
    start = None
    if cfg.init_from:
        start = load_start(ws, cfg, identity)
        identity["init_fingerprint"] = start.fingerprint  # a retrained start makes another run
    return TrainingData(train, test, fold_of, identity, pseudo, teacher, start)


# ----------------------------------------------------------------------------- opening a run


def check_model(cfg: TrainConfig, num_classes: int, device: bool = True, forward: bool = True) -> int:
    """Build the model once, on the CPU, and resolve the device where units train in this process
    (a Ray cluster's devices are its own): a bad model keyword, pretrained file or device is
    refused here, before a run folder exists; a user's own model (`forward`: with the data's
    classes) gives finite (2, K) logits on two images. Returns the parameter count."""
    from fmnist_kaggle.models import check_model_size, count_params, create_model
    from fmnist_kaggle.models.registry import check_built, is_users
    from fmnist_kaggle.training.device import resolve_device

    if device:
        resolve_device(cfg.device)
    check_model_size(cfg.model, num_classes, **cfg.model_kwargs)  # before anything is allocated
    users = is_users(cfg.model)
    try:
        model = create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs)
    except FkaggleError:
        raise
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:  # e.g. a negative width: one line
        raise FkaggleError(f"model {cfg.model} with {cfg.model_kwargs}: {first_line(exc)[:300]}") from None
    except Exception as exc:  # noqa: BLE001  (a user's factory may raise anything)
        if not users:
            raise
        raise FkaggleError(f"model {cfg.model}: its factory failed: {first_line(exc)[:300]}") from None
    if users:  # before any unit trains and before anything is written
        check_built(model, cfg.model, num_classes, forward)
    return count_params(model)


def open_run(
    ws: Workspace, name: str, cfg: TrainConfig, data: TrainingData, comp: Competition, overwrite: bool, params: int
) -> tuple[RunDir, dict[str, Any]]:
    """The run folder for this config and data: checked to be the same run, or made whole in a
    staging folder and renamed into place, so a failure never leaves a half-made run that blocks
    its name; `--overwrite` removes the old run only once the new one is in place beside it."""
    rd = ws.run(name)
    replace = ""
    if rd.manifest_path.exists():
        try:
            diff = identity_diff(rd.read_manifest().get("identity"), data.identity)
        except FkaggleError:
            if not overwrite:
                raise
            diff = "unreadable manifest"
        if diff and not overwrite:
            raise FkaggleError(
                f"run exists and its {diff}; pass --overwrite to replace it, or choose another --run", rd.path
            )
        replace = diff
    elif rd.path.exists() and any(rd.path.iterdir()):
        if not overwrite:
            raise FkaggleError(
                "folder exists without a run manifest; pass --overwrite only if it is a "
                "run folder to replace, or choose another --run",
                rd.path,
            )
        raise FkaggleError(
            "folder exists without a run manifest; refusing to delete what fkaggle did not write", rd.path
        )
    if rd.exists() and not replace:
        return rd, rd.read_manifest()
    staging = RunDir(ws.oof / f".{name}.new-{os.getpid()}", name)  # a dot name: never listed as a run
    try:
        staging.path.mkdir(parents=True)
        manifest = _new_manifest(comp, cfg, staging, data, params)
        staging.write_manifest(manifest)
        if replace:
            rd.remove()
            log.warning(f"{rd.path}: {replace}; --overwrite: replaced the run")
        staging.path.replace(rd.path)  # onto nothing, or onto an empty folder
    finally:
        shutil.rmtree(staging.path, ignore_errors=True)
    return rd, manifest


def data_source(comp: Competition) -> dict[str, Any]:
    """Where the run's data came from, as absolute paths: commands that need its images later
    (explain, cv's picture) find them with no data option, and check them by fingerprint."""
    absolute = lambda p: str(Path(p).absolute()) if p is not None else None
    return {
        "config": absolute(comp.config_path),
        "format": comp.format,
        "id_column": comp.id_column,
        "label_column": comp.label_column,
        **{
            k: absolute(getattr(comp, k)) for k in ("train", "train_labels", "test", "test_labels", "sample_submission")
        },
    }


def _new_manifest(comp: Competition, cfg: TrainConfig, rd: RunDir, data: TrainingData, params: int) -> dict[str, Any]:
    train, test = data.train, data.test
    files = {
        rd.folds_npy.name: write_array(rd.folds_npy, data.fold_of),
        rd.labels_npy.name: write_array(rd.labels_npy, train.labels),
    }
    if test is not None and test.labels is not None:
        files[rd.test_labels_npy.name] = write_array(rd.test_labels_npy, test.labels)
    atomic.write_text(rd.config_toml, to_toml(cfg))
    return {
        "schema": SCHEMA,
        "run": rd.name,
        "created": utc_now(),
        "model": cfg.model,
        "params": params,
        "recipe": cfg.recipe,
        "seeds": cfg.seeds,
        "config": cfg.to_dict(),
        "identity": data.identity,
        "data": {
            "competition": comp.name,
            "train_path": str(train.path),
            "rows": len(train),
            "num_classes": train.num_classes,
            "label_values": list(train.label_values),
            "class_names": comp.names,
            "data_fingerprint": data.identity["data_fingerprint"],
            "test_path": str(test.path) if test is not None else None,
            "test_rows": len(test) if test is not None else 0,
            "test_fingerprint": data.identity["test_fingerprint"],
            "folds": cfg.folds,
            "fold_seed": cfg.fold_seed,
            "folds_fingerprint": data.identity["folds_fingerprint"],
            "source": data_source(comp),
        },
        "files": files,
        "versions": _versions(),
        **({"pseudo_label": data.pseudo.record(cfg.pseudo_threshold, cfg.pseudo_weight)} if data.pseudo else {}),
        **({"distill": data.teacher.record()} if data.teacher else {}),
        **({"init": data.start.record("init_from")} if data.start else {}),
    }


# ----------------------------------------------------------------------------- fold and seed states


def _seed_done(fd: FoldDir, seed: int, identity: dict[str, Any]) -> bool:
    """Whether the seed is finished; a corrupt finished seed is discarded (it will retrain)."""
    if not fd.seed_summary(seed).exists():
        return False
    try:
        read_seed(fd, seed, identity)
        return True
    except CorruptArtifact as exc:
        log.warning(f"{exc}; seed {seed} of fold {fd.fold} will be retrained")
        fd.seed_summary(seed).unlink(missing_ok=True)
        return False


def unfinished_units(rd: RunDir, cfg: TrainConfig, identity: dict[str, Any], folds: list[int]) -> list[tuple[int, int]]:
    """The unfinished (fold, seed) units of the selected folds. Corrupt results are discarded
    (with a warning) so they retrain; foreign folds are refused, naming the folder."""
    units = []
    for fold in folds:
        fd = rd.fold(fold)
        state, detail, _ = fold_state(fd, identity)
        if state == "done":
            continue
        if state == "foreign":
            raise FkaggleError(detail)
        if state == "corrupt":
            log.warning(f"{detail}; fold {fold} will be rebuilt")
            fd.metrics.unlink(missing_ok=True)
        units += [(fold, seed) for seed in cfg.seeds if not _seed_done(fd, seed, identity)]
    return units


# ----------------------------------------------------------------------------- one (fold, seed)


def finish_fold(rd: RunDir, cfg: TrainConfig, data: TrainingData, fold: int) -> dict[str, Any]:
    """Average a fold's seeds into its val/test logits and write its metrics (the done marker)."""
    fd = rd.fold(fold)
    _, va = data.split(fold)
    seeds = [read_seed(fd, s, data.identity) for s in cfg.seeds]
    val = np.mean(
        [read_array(fd.seed_val(s["seed"]), s["artifacts"][fd.seed_val(s["seed"]).name], finite=True) for s in seeds],
        axis=0,
    ).astype(np.float32)
    test = np.mean(
        [read_array(fd.seed_test(s["seed"]), s["artifacts"][fd.seed_test(s["seed"]).name], finite=True) for s in seeds],
        axis=0,
    ).astype(np.float32)
    history = [r for s in seeds for r in csvfile.read_csv_rows(fd.seed_history(s["seed"]))]
    arts = {
        fd.val_logits.name: write_array(fd.val_logits, val),
        fd.test_logits.name: write_array(fd.test_logits, test),
        fd.history.name: write_recorded(fd.history, csvfile.csv_text(history).encode()),
    }
    y = data.train.labels[va]
    m = {
        "fold": fold,
        "val_rows": int(len(va)),
        "acc": metrics.accuracy(val, y),
        "logloss": metrics.log_loss(val, y),
        "best_epochs": [s["best_epoch"] for s in seeds],
        "seconds": round(sum(s["seconds"] for s in seeds), 1),
        "images_per_s": round(float(np.mean([s["images_per_s"] for s in seeds])), 1),
        "hosts": sorted({s.get("host", "") for s in seeds}),
        "nodes": sorted({s["node_id"] for s in seeds if "node_id" in s}),
        "finished": utc_now(),
        "seeds": [{k: v for k, v in s.items() if k not in ("artifacts", "identity")} for s in seeds],
        "identity": data.identity,
        "artifacts": arts,
    }
    m["times"] = {k: round(sum(s.get("times", {}).get(k, 0.0) for s in seeds), 1) for k in PHASES}
    atomic.write_json(fd.metrics, m)
    log.info(
        f"fold {fold}: acc {m['acc']:.4f}  logloss {m['logloss']:.4f}  best epoch(s) {m['best_epochs']}  "
        f"{fold_time_text(m)}"
    )
    return m


PHASES = ("train", "validate", "predict", "setup", "checkpoint", "write")  # where a unit's seconds go


def fold_time_text(m: dict[str, Any]) -> str:
    """'65 s: training 7 s (3,056 img/s), validating 4 s, ...': where a fold's seconds went."""
    times = m.get("times") or {}
    words = {"validate": "validating", "predict": "predicting", "setup": "setup", "checkpoint": "checkpoints"}
    rest = [f"{words.get(k, 'writing')} {times[k]:.0f} s" for k in PHASES[1:] if times.get(k, 0) >= 0.5]
    total = sum(times.values()) or m["seconds"]
    train = f"training {times.get('train', m['seconds']):.0f} s ({m['images_per_s']:,.0f} img/s)"
    return f"{total:.0f} s: {', '.join([train, *rest])}"

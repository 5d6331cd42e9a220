"""The driver of k-fold runs (`oof/<run>/`, schema: docs/artifacts.md): open, plan, drive,
record, conclude.

A run's state lives in its files, not in memory. The unit of work is one (fold, seed)
training: `prepare_run` opens (or creates) the run folder and `plan`s its unfinished units,
`drive` keeps an executor busy with them (under an optional deadline), `record_unit` saves
each result as it arrives and `finish_fold` averages a fold's seeds once all are in;
`conclude` assembles the run (`store.assemble`) once every fold is done. Every finished
artifact is recorded (size, SHA-256, shape) and verified when read, so copied shards count,
and corrupt or foreign folds are found, not trusted.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle._version import __version__
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.folds import check_folds, load_or_make_folds
from fmnist_kaggle.durations import duration, duration_arg
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors import Executor, Unit, UnitFailed, UnitLate, make_executor
from fmnist_kaggle.runs.identity import identity_diff
from fmnist_kaggle.runs.pseudo import pseudo_labels
from fmnist_kaggle.runs.store import assemble, fold_state, read_seed
from fmnist_kaggle.runs.track import track_run
from fmnist_kaggle.runs.trainset import TrainingData, training_rows
from fmnist_kaggle.runs.unit import UnitResult, save_unit
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.artifacts import CorruptArtifact, read_array, utc_now, write_array, write_recorded
from fmnist_kaggle.storage.layout import SCHEMA, FoldDir, RunDir, Workspace
from fmnist_kaggle.training.config import TrainConfig, to_toml
from fmnist_kaggle.training.deadline import Deadline
from fmnist_kaggle.training.recipes import get_recipe, recipe_names
from fmnist_kaggle.training.timing import LimitModel

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
    return TrainingData(train, test, fold_of, identity, pseudo)


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
        raise FkaggleError(f"model {cfg.model} with {cfg.model_kwargs}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001  (a user's factory may raise anything)
        if not users:
            raise
        raise FkaggleError(f"model {cfg.model}: its factory failed: {_first_line(exc)}") from None
    if users:  # before any unit trains and before anything is written
        check_built(model, cfg.model, num_classes, forward)
    return count_params(model)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


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


# ----------------------------------------------------------------------------- the run


@dataclass
class RunJob:
    """One run's share of a training session: its folder, config, data and unfinished units."""

    rd: RunDir
    cfg: TrainConfig
    data: TrainingData
    folds: list[int]  # the folds selected here (all, or a --fold shard)
    units: list[tuple[int, int]]  # unfinished (fold, seed)
    tag: Any = None  # the caller's (a sweep's trial)
    deadline: Deadline | None = None  # what its units obey where they train here (the driver's if None)
    size: Callable[[TrainConfig], int] | None = None  # steps a unit starting now may take (the autopilot's)
    failures: list[str] = field(default_factory=list)
    outstanding: int = 0  # units submitted and not back yet
    cancelled: int = 0  # units a deadline stopped


LONG_ON_CPU_S = 3600.0
SLOW_ON_CPU_IPS = 500.0  # a timm backbone slower than this on a CPU gets a hint of what is faster


def announce_estimate(name: str, cfg: TrainConfig, data: TrainingData, units: int) -> float | None:
    """Time a few real steps here and say how long the run will take (stderr); warn when a run
    would take hours on a CPU, naming the recipe made for one. Returns the estimate (seconds)."""
    from fmnist_kaggle.training.estimate import measure_run_time

    estimate = measure_run_time(
        cfg,
        data.train.images,
        data.train.labels,
        data.train.num_classes,
        units,
        len(data.test) if data.test is not None else 0,
    )
    return None if estimate is None else _announce(f"run {name}", f"{units} unit(s)", cfg, *estimate)


def fit_to_time(
    name: str, cfg: TrainConfig, comp: Competition, ws: Workspace, units: int, limit: Deadline
) -> TrainConfig:
    """The config sized to train its `units` by `limit` here (timed on a few real steps):
    as it is when it fits, else with fewer optimizer steps a unit (max_steps); refused in one line,
    with the limit it needs, when even MIN_STEPS a unit do not fit."""
    from fmnist_kaggle.training.estimate import MIN_STEPS, measure_throughput, steps_within, unit_shape, units_seconds

    train, test = training_rows(comp, cfg), comp.test_set
    check_folds(ws, train, cfg.folds, cfg.fold_seed)  # refused here, as the run would be, with nothing written
    shape = unit_shape(len(train), cfg.folds, len(test) if test is not None else 0)
    sample = slice(0, min(len(train), 4 * max(cfg.batch_size, cfg.eval_batch_size)))
    speed = measure_throughput(cfg, train.images[sample], train.labels[sample], train.num_classes, seconds=1.5)
    model, whole = LimitModel(), limit.left() + limit.elapsed_since_start()
    seconds = model.trainable(limit.left())
    steps = steps_within(cfg, speed, shape, units, seconds)
    if steps is None:
        need = units_seconds(cfg, speed, shape, units, min(MIN_STEPS, cfg.total_steps(shape.train_rows)))
        give = model.limit_for(need, whole - limit.left())
        raise FkaggleError(
            f"--time-limit leaves {max(0.0, seconds):.0f} s to train, and run {name} needs about {need:.0f} s for "
            f"its {units} unit(s) at the fewest steps worth training ({MIN_STEPS} a unit; {speed.train_ips:,.0f} "
            f"img/s here): give --time-limit {duration_arg(give)} or more, or fewer --folds or --seeds"
        )
    spe = cfg.steps_per_epoch(shape.train_rows)
    sized = steps < cfg.total_steps(shape.train_rows)
    estimate = units_seconds(cfg, speed, shape, units, steps)
    log.info(
        f"run {name}: estimated {duration(estimate)} for {units} unit(s) here ({speed.train_ips:,.0f} img/s)"
        + (f", sized to {steps} steps a unit ({steps / spe:.2f} epochs) to fit the --time-limit" if sized else "")
    )
    return replace(cfg, epochs=math.ceil(steps / spe), max_steps=steps).validate() if sized else cfg


def announce_plan_estimate(what: str, cfgs: list[TrainConfig], comp: Competition, always: bool = False) -> float | None:
    """The same for several whole runs (a sweep's or a reproduction's trials), timed once per model
    setup (`always`: however small they are, for a time limit)."""
    from fmnist_kaggle.training.estimate import measure_runs_time

    if not cfgs:
        return None
    train, test = comp.train_set, comp.test_set
    test_rows = len(test) if test is not None else 0
    estimate = measure_runs_time(cfgs, train.images, train.labels, train.num_classes, test_rows, always)
    return None if estimate is None else _announce(what, f"{len(cfgs)} run(s)", cfgs[0], *estimate)


def _announce(what: str, units: str, cfg: TrainConfig, seconds: float, speed: Any) -> float:
    log.info(
        f"{what}: estimated {duration(seconds)} for {units} here ({speed.train_ips:,.0f} "
        f"img/s training, {speed.predict_ips:,.0f} img/s predicting; {speed.device}, "
        f"{speed.precision})"
    )
    if speed.device == "cpu" and cfg.model.startswith("timm:") and speed.train_ips < SLOW_ON_CPU_IPS:
        log.warning(
            f"note: {cfg.model} trains at {speed.train_ips:,.0f} img/s on this CPU (timm backbones are made for "
            f"GPUs and 224-pixel images); --recipe fast ({get_recipe('fast').settings['model']}) trains several "
            "thousand images a second here and scores about 94% on Fashion-MNIST"
        )
    if speed.device == "cpu" and seconds > LONG_ON_CPU_S:
        made_for = get_recipe(cfg.recipe).hardware if cfg.recipe else None
        instead = (
            f"--recipe {' or '.join(recipe_names('cpu'))} (made for CPUs)"
            if made_for != "cpu"
            else "fewer --epochs or --folds, a --subset to try things"
        )
        why = f"recipe {cfg.recipe} is tuned for a GPU" if made_for == "gpu" else "long for a CPU"
        log.warning(
            f"warning: {what} would train for about {duration(seconds)} on this CPU "
            f"({speed.train_ips:,.0f} img/s): {why}; "
            f"use {instead}, or a GPU (here with CUDA, or --executor ray --address HEAD:PORT); "
            "Ctrl-C keeps finished folds"
        )
    return seconds


def prepare_run(
    comp: Competition,
    cfg: TrainConfig,
    run: str | None = None,
    workdir: str | Path = ".",
    only_folds: list[int] | None = None,
    overwrite: bool = False,
    tag: Any = None,
    trains_here: bool = True,
    limit: Deadline | None = None,
) -> RunJob:
    """Check everything, open (or create) the run folder and plan its unfinished units
    (`trains_here`: the units train in this process, so its device is checked too). `limit`: the
    deadline of a --time-limit; a new run is sized to the time left (fewer steps a unit), or
    refused with the limit it needs."""
    ws = Workspace(workdir)
    name = run if run is not None else default_run_name(cfg)
    ws.run(name)  # refuse a bad name before any work
    selected = sorted(set(only_folds)) if only_folds else list(range(cfg.folds))
    bad = [f for f in selected if not 0 <= f < cfg.folds]
    if bad:
        raise FkaggleError(f"fold {bad[0]} out of range 0..{cfg.folds - 1}")
    check_model(
        cfg, 10, device=trains_here, forward=False
    )  # before the data is read (seconds for a big CSV) or anything written
    params = check_model(cfg, comp.train_set.num_classes, device=False)
    if limit is not None and trains_here and (overwrite or not ws.run(name).exists()):  # a begun run keeps its size
        cfg = fit_to_time(name, cfg, comp, ws, len(selected) * len(cfg.seeds), limit)  # before anything is written
        name = run if run is not None else default_run_name(cfg)
    data = training_data(comp, cfg, ws)
    rd, manifest = open_run(ws, name, cfg, data, comp, overwrite, params)
    for warning in cfg.warnings():
        log.warning(warning)
    if cfg.subset and tag is None:  # a sweep's trials search on a subset on purpose
        log.warning(
            f"warning: run {name} trains on a stratified subset of {len(data.train)} rows (subset = {cfg.subset}): "
            "its OOF rows cannot be blended with full-data runs; set subset = 0 (or "
            "drop it from the config) to train on all rows"
        )
    units = unfinished_units(rd, cfg, data.identity, selected)
    if manifest["config"] != cfg.to_dict():  # speed settings (device, amp...) may differ between resumes
        rd.write_manifest({**manifest, "config": cfg.to_dict()})
    log.info(
        f"run {name}: {cfg.model}, {cfg.folds} folds ({', '.join(map(str, selected))} "
        f"here), {len(data.train)} train rows, {len(units)} (fold, seed) unit(s) "
        "to train"
    )
    if trains_here and units and tag is None:  # the autopilot and sweeps make their own estimates
        announce_estimate(name, cfg, data, len(units))
    return RunJob(rd, cfg, data, selected, units, tag)


def record_unit(job: RunJob, result: UnitResult) -> None:
    """Save a finished unit; finish its fold when that was the fold's last seed."""
    save_unit(job.rd, result, job.data.identity)
    if _seeds_in(job, result.fold):
        finish_fold(job.rd, job.cfg, job.data, result.fold)
    track_run(job.rd)


def _seeds_in(job: RunJob, fold: int) -> bool:
    fd = job.rd.fold(fold)
    return all(fd.seed_summary(s).exists() for s in job.cfg.seeds)


def conclude(job: RunJob) -> dict[str, Any]:
    """Finish folds whose seeds were all done before, assemble the run, say how it went."""
    for fold in job.folds:
        if not job.rd.fold(fold).metrics.exists() and _seeds_in(job, fold):
            finish_fold(job.rd, job.cfg, job.data, fold)
    manifest = assemble(job.rd)
    track_run(job.rd, manifest, ended=True)
    log.debug(run_summary(manifest))  # the result itself is the caller's to print (stdout)
    warning = near_chance(manifest, job.cfg, job.data)
    if warning:
        log.warning(f"warning: {warning}")
    return manifest


def run_summary(manifest: dict[str, Any]) -> str:
    """A run's result in words: its CV (per fold), the test accuracy where known, or what is missing."""
    name, folds = manifest["run"], manifest["data"]["folds"]
    if not manifest["complete"]:
        return (
            f"run {name}: folds missing {manifest['missing_folds']} (run them, or copy "
            f"their fold_K folders here and `fkaggle assemble {name}`)"
        )
    cv = manifest["cv"]
    lines = [
        f"run {name} ({manifest.get('model')}, {folds} folds): CV accuracy {cv['acc']:.4f} "
        f" log-loss {cv['logloss']:.4f}  (per fold: {_per_fold_text(cv)})"
    ]
    if manifest.get("test_metrics"):
        lines.append(f"  test accuracy of the {folds}-fold ensemble: {manifest['test_metrics']['acc']:.4f}")
    return "\n".join(lines)


def drive(
    executor: Executor,
    jobs: Iterator[RunJob],
    on_done: Callable[[RunJob, dict[str, Any]], None] = lambda job, manifest: None,
    progress: bool = True,
    deadline: Deadline | None = None,
    on_unit: Callable[[RunJob, UnitResult | UnitLate], bool] = lambda job, result: False,
) -> list[RunJob]:
    """Keep the executor busy with the units of `jobs` (pulled lazily, so a search can choose the
    next trial from the last results), record each result as it arrives and conclude each job
    when its last unit is back. `deadline`: no unit starts after it, and units still queued or
    running then are cancelled (finished ones stay recorded, so the same command resumes); units
    that train here obey their job's deadline (its pace check: UnitLate) or this one between
    steps. `on_unit` sees each recorded unit and each UnitLate; on an executor that trains one unit
    at a time, True (and any UnitLate) stops the rest of that job (the autopilot's "this run cannot
    finish in time"). Returns the jobs left incomplete by failed or cancelled units."""
    loop = _DriveLoop(executor, iter(jobs), on_done, on_unit, deadline, progress)
    with loop.bar:
        while True:
            loop.fill()
            if not loop.pending:
                return loop.unfinished
            done = None if loop.late() else executor.next_done(loop.wait_s())
            if done is None:
                loop.cut_at_deadline()
            else:
                loop.take(*done)


class _DriveLoop:
    """`drive`'s state: the units in flight (id(unit) -> its job), the jobs left unfinished."""

    def __init__(
        self,
        executor: Executor,
        jobs: Iterator[RunJob],
        on_done: Callable[[RunJob, dict[str, Any]], None],
        on_unit: Callable[[RunJob, UnitResult | UnitLate], bool],
        deadline: Deadline | None,
        progress: bool,
    ) -> None:
        from tqdm.auto import tqdm

        self.executor, self.jobs, self.on_done, self.on_unit, self.deadline = executor, jobs, on_done, on_unit, deadline
        self.pending: dict[int, RunJob] = {}
        self.unfinished: list[RunJob] = []
        hide = executor.shows_unit_progress or not progress
        self.bar = tqdm(total=0, desc="units", unit="unit", disable=True if hide else None)

    def late(self) -> bool:
        return self.deadline is not None and self.deadline.passed()

    def wait_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline.left())

    def fill(self) -> None:
        """Submit jobs' units until the executor is full (the first job before it starts)."""
        while not self.late() and (not self.pending or len(self.pending) < self.executor.capacity):
            job = next(self.jobs, None)
            if job is None:
                return
            if not job.units:
                self.finish(job)
            for fold, seed in job.units:
                unit = Unit(job.rd.name, job.cfg, job.data, fold, seed, job.rd.fold(fold).checkpoint(seed))
                if self.executor.trains_here:  # closures over the session: never sent to workers
                    unit.deadline, unit.size = job.deadline or self.deadline, job.size
                self.executor.submit(unit)
                self.pending[id(unit)] = job
                job.outstanding += 1
                self.bar.total += 1
            self.bar.refresh()

    def finish(self, job: RunJob) -> None:
        self.on_done(job, conclude(job))
        if job.failures or job.cancelled:
            self.unfinished.append(job)

    def give_back(self, unit: Unit) -> RunJob:
        job = self.pending.pop(id(unit))
        job.outstanding -= 1
        return job

    def cut_queued(self) -> None:
        """The rest of a stopped job (one unit at a time: only its units are queued)."""
        if self.executor.capacity == 1:
            for cut in [self.give_back(u) for u in self.executor.cancel()]:
                cut.cancelled += 1

    def cut_at_deadline(self) -> None:
        """The deadline: nothing more starts, nothing in flight is waited for."""
        cut = [self.give_back(unit) for unit in self.executor.cancel()]
        for job in cut:
            job.cancelled += 1
        log.warning(
            f"deadline reached: {len(cut)} (fold, seed) unit(s) cancelled; finished units are kept (re-run to resume)"
        )
        for job in {id(j): j for j in cut}.values():
            if job.outstanding == 0:
                self.finish(job)

    def take(self, unit: Unit, outcome: UnitResult | UnitFailed | UnitLate) -> None:
        job = self.give_back(unit)
        self.bar.update(1)
        if isinstance(outcome, UnitFailed):
            log.error(str(outcome))
            job.failures.append(str(outcome))
        elif isinstance(outcome, UnitLate):
            log.debug(str(outcome))  # the caller that asked says why
            job.cancelled += 1
            self.on_unit(job, outcome)
            self.cut_queued()
        else:
            record_unit(job, outcome)
            log.debug(f"{unit} done{_where(outcome.summary)} in {outcome.summary.get('seconds', 0):.0f}s")
            if self.on_unit(job, outcome):
                self.cut_queued()
        if job.outstanding == 0:
            self.finish(job)


def _where(summary: dict[str, Any]) -> str:
    return f" on {summary['node_ip']} ({summary['host']})" if "node_ip" in summary else ""


def failure_message(jobs: list[RunJob]) -> str:
    lines = [f for job in jobs for f in job.failures]
    cancelled = sum(job.cancelled for job in jobs)
    what = [f"{len(lines)} (fold, seed) unit(s) failed: {'; '.join(lines)}"] if lines else []
    what += [f"{cancelled} (fold, seed) unit(s) stopped at the deadline"] if cancelled else []
    return (
        f"{'; '.join(what)}. Finished units are kept; re-run the same command to "
        f"{'retry' if lines else 'finish'} the rest"
    )


def train_folds(
    comp: Competition,
    cfg: TrainConfig,
    run: str | None = None,
    workdir: str | Path = ".",
    only_folds: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
    deadline: Deadline | float | None = None,
    time_limit: bool = False,
) -> dict[str, Any]:
    """Train the selected folds of a run (all by default) on `executor` (this process by
    default), recording each (fold, seed) as it finishes; assemble the run if complete.
    `deadline` (a Deadline, or a `time.monotonic()` value): no step or unit starts after it;
    with `time_limit` it is a --time-limit: a new run is sized to end before it (or refused with
    the limit it needs). Returns the run's manifest (`fmnist_kaggle.fold_train` returns the `Run`)."""
    if isinstance(deadline, (int, float)):
        deadline = Deadline.at_time(float(deadline))
    here = executor is None or executor.trains_here
    limit = deadline if time_limit else None
    job = prepare_run(comp, cfg, run, workdir, only_folds, overwrite, trains_here=here, limit=limit)
    done: dict[str, Any] = {}
    with executor or make_executor("local", progress=progress) as ex:
        failed = drive(ex, iter([job]), lambda job, manifest: done.update(manifest), progress, deadline)
    if not done:  # the deadline came before the run's first unit could start
        job.cancelled = len(job.units)
        done.update(conclude(job))
        failed = [job] if job.units else []
    if failed:
        raise FkaggleError(failure_message(failed))
    return done


def _per_fold_text(cv: dict[str, Any]) -> str:
    return ", ".join(f"{f['acc']:.4f}" for f in cv["per_fold"])


def near_chance(manifest: dict[str, Any], cfg: TrainConfig, data: TrainingData, margin: float = 0.1) -> str | None:
    """A finished run whose CV is within `margin` of always guessing the most common class learned
    next to nothing: say so with the number of steps it had. Judged on the measured CV, never
    predicted from the budget (small runs often learn well)."""
    if not manifest.get("complete") or manifest.get("cv") is None:
        return None
    majority = float(np.bincount(data.train.labels).max() / len(data.train.labels))
    if manifest["cv"]["acc"] >= majority + margin:
        return None
    rows = int((data.fold_of != 0).sum())
    steps = cfg.total_steps(rows)
    return (
        f"run {manifest['run']}: CV accuracy {manifest['cv']['acc']:.4f} is near "
        f"chance (always guessing the most common class scores {majority:.4f}) "
        f"after {steps} optimizer steps per fold ({rows} rows, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, lr {cfg.lr:g}): "
        "train longer (--epochs), on more rows, with a smaller --batch-size, or check --lr"
    )


# ----------------------------------------------------------------------------- reading finished runs

"""K-fold training runs and their artifacts under `oof/<run>/` (schema: docs/artifacts.md).

A run's state lives in its files, not in memory. The unit of work is one (fold, seed)
training: `plan` lists the unfinished units, `train_unit` trains one (no file writes but
its epoch checkpoint), `save_unit` records its artifacts, `finish_fold` averages a fold's
seeds once all are in, and `assemble` builds the run's OOF and test logits once every
fold is done. Every finished artifact is recorded (size, SHA-256, shape) and verified
when read, so copied shards count, and corrupt or foreign folds are found, not trusted.
"""

from __future__ import annotations

import io
import logging
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist_kaggle import __version__, atomic, metrics
from fmnist_kaggle.competition import Competition
from fmnist_kaggle.config import TrainConfig, build_config, to_toml
from fmnist_kaggle.data import ImageSet
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.executors import Executor, LocalExecutor, Unit, UnitFailed
from fmnist_kaggle.folds import load_or_make_folds, stratified_subset
from fmnist_kaggle.plots import learning_curves
from fmnist_kaggle.pseudo import PseudoLabels, pseudo_labels
from fmnist_kaggle.workspace import SCHEMA, CorruptArtifact, FoldDir, RunDir, Workspace, read_array, read_json, read_verified, write_array, write_recorded

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
DERIVED = ("fold_status", "fold_metrics", "missing_folds", "complete", "cv", "test_metrics", "updated")


def default_run_name(cfg: TrainConfig) -> str:
    model = cfg.model.replace("timm:", "timm-").replace("/", "-")
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


@dataclass
class TrainingData:
    """What every (fold, seed) unit of a run trains on, and the identity it is recorded under."""

    train: ImageSet
    test: ImageSet | None
    fold_of: np.ndarray
    identity: dict[str, Any]  # data/folds/test fingerprints and the semantic config
    pseudo: PseudoLabels | None = None  # --pseudo-label: per fold, test rows and their teacher labels

    def split(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        return np.flatnonzero(self.fold_of != fold), np.flatnonzero(self.fold_of == fold)


def training_rows(comp: Competition, cfg: TrainConfig) -> ImageSet:
    """The competition's training rows a run with this config trains on (all, or its --subset)."""
    train = comp.train_set
    if cfg.subset:
        need = cfg.folds * train.num_classes
        if cfg.subset < need:
            raise FkaggleError(f"--subset {cfg.subset} is too small: {cfg.folds}-fold stratified CV of {train.num_classes} classes needs at least {need} rows")
        train = train.subset(stratified_subset(train.labels, cfg.subset, cfg.fold_seed))
    return train


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


def identity_diff(found: dict[str, Any] | None, expected: dict[str, Any]) -> str | None:
    """None when identical; else what differs, in words."""
    found = found or {}
    names = {"data_fingerprint": "training data", "folds_fingerprint": "fold assignment (--folds/--fold-seed/--subset)", "test_fingerprint": "test data", "teacher_fingerprint": "pseudo-label teachers' predictions"}
    for key, what in names.items():
        if found.get(key) != expected.get(key):
            return f"{what} differs"
    cfg_a, cfg_b = found.get("config") or {}, expected.get("config") or {}
    keys = sorted(k for k in set(cfg_a) | set(cfg_b) if cfg_a.get(k) != cfg_b.get(k))
    return f"config differs ({', '.join(keys)})" if keys else None


# ----------------------------------------------------------------------------- opening a run


def open_run(ws: Workspace, name: str, cfg: TrainConfig, data: TrainingData, comp: Competition, overwrite: bool) -> tuple[RunDir, dict[str, Any]]:
    """The run folder for this config and data: created, or checked to be the same run."""
    rd = ws.run(name)
    if rd.manifest_path.exists():
        try:
            diff = identity_diff(rd.read_manifest().get("identity"), data.identity)
        except FkaggleError:
            if not overwrite:
                raise
            diff = "unreadable manifest"
        if diff and not overwrite:
            raise FkaggleError(f"run exists and its {diff}; pass --overwrite to replace it, or choose another --run", rd.path)
        if diff:
            rd.remove()
            log.warning(f"{rd.path}: {diff}; --overwrite: replaced the run")
    elif rd.path.exists() and any(rd.path.iterdir()):
        if not overwrite:
            raise FkaggleError("folder exists without a run manifest; pass --overwrite only if it is a run folder to replace, or choose another --run", rd.path)
        raise FkaggleError("folder exists without a run manifest; refusing to delete what fkaggle did not write", rd.path)
    if rd.exists():
        return rd, rd.read_manifest()
    manifest = _new_manifest(comp, cfg, rd, data)
    rd.write_manifest(manifest)
    return rd, manifest


def _new_manifest(comp: Competition, cfg: TrainConfig, rd: RunDir, data: TrainingData) -> dict[str, Any]:
    from fmnist_kaggle.models import count_params, create_model

    train, test = data.train, data.test
    files = {"folds.npy": write_array(rd.folds_npy, data.fold_of), "labels.npy": write_array(rd.labels_npy, train.labels)}
    if test is not None and test.labels is not None:
        files["test_labels.npy"] = write_array(rd.test_labels_npy, test.labels)
    atomic.write_text(rd.config_toml, to_toml(cfg))
    return {
        "schema": SCHEMA, "run": rd.name, "created": atomic.utc_now(), "model": cfg.model,
        "params": count_params(create_model(cfg.model, num_classes=train.num_classes, **cfg.model_kwargs)),
        "recipe": cfg.recipe, "seeds": cfg.seeds, "config": cfg.to_dict(), "identity": data.identity,
        "data": {
            "competition": comp.name, "train_path": str(train.path), "rows": len(train), "num_classes": train.num_classes,
            "label_values": list(train.label_values), "class_names": comp.names,
            "data_fingerprint": data.identity["data_fingerprint"], "test_path": str(test.path) if test is not None else None,
            "test_rows": len(test) if test is not None else 0, "test_fingerprint": data.identity["test_fingerprint"],
            "folds": cfg.folds, "fold_seed": cfg.fold_seed, "folds_fingerprint": data.identity["folds_fingerprint"],
        },
        "files": files, "versions": _versions(),
        **({"pseudo_label": data.pseudo.record(cfg.pseudo_threshold, cfg.pseudo_weight)} if data.pseudo else {}),
    }  # fmt: skip


# ----------------------------------------------------------------------------- fold and seed states


def read_fold(fd: FoldDir, identity: dict[str, Any]) -> dict[str, Any]:
    """A finished fold's metrics, its artifacts verified; FkaggleError (foreign) or CorruptArtifact otherwise."""
    m = read_json(fd.metrics, "fold metrics")
    diff = identity_diff(m.get("identity"), identity)
    if diff:
        raise FkaggleError(f"fold folder does not belong to this run: its {diff} (copied from another run?)", fd.path)
    arts = m.get("artifacts") or {}
    for path in (fd.val_logits, fd.test_logits, fd.history):
        read_verified(path, arts.get(path.name))
    return m


def fold_state(fd: FoldDir, identity: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """(done | partial | missing | corrupt | foreign, detail, metrics of a done fold), writing nothing."""
    if fd.metrics.exists():
        try:
            return "done", "", read_fold(fd, identity)
        except CorruptArtifact as exc:
            return "corrupt", str(exc), None
        except FkaggleError as exc:
            return "foreign", str(exc), None
    return ("partial" if fd.path.is_dir() and fd.has_partial_work() else "missing"), "", None


def read_seed(fd: FoldDir, seed: int, identity: dict[str, Any]) -> dict[str, Any]:
    """A finished seed's summary with its artifacts verified."""
    s = read_json(fd.seed_summary(seed), "seed summary")
    diff = identity_diff(s.get("identity"), identity)
    if diff:
        raise FkaggleError(f"seed {seed} does not belong to this run: its {diff} (copied from another run?)", fd.seed_summary(seed))
    arts = s.get("artifacts") or {}
    for path in (fd.seed_val(seed), fd.seed_test(seed), fd.seed_model(seed), fd.seed_history(seed)):
        read_verified(path, arts.get(path.name))
    return s


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


def plan(rd: RunDir, cfg: TrainConfig, identity: dict[str, Any], folds: list[int]) -> list[tuple[int, int]]:
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


@dataclass
class UnitResult:
    """Everything one (fold, seed) training produces; written by `save_unit` wherever it ran."""

    fold: int
    seed: int
    val_logits: np.ndarray
    test_logits: np.ndarray
    model_bytes: bytes  # torch.save of the state dict (tensors only)
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def train_unit(cfg: TrainConfig, data: TrainingData, fold: int, seed: int, checkpoint: Path | None = None, progress: bool = False, desc: str = "") -> UnitResult:
    """Train one seed on one fold and predict its held-out rows and the test set (fp32)."""
    import torch

    from fmnist_kaggle.train import fit, predict, resolve_device

    t0 = time.perf_counter()
    tr, va = data.split(fold)
    train = data.train
    x, y, w = train.images[tr], train.labels[tr], None
    if data.pseudo is not None:  # fold k: test rows labelled by the teachers' fold-k models only
        rows = data.pseudo.rows[fold]
        x, y = np.concatenate([x, data.test.images[rows]]), np.concatenate([y, data.pseudo.labels[fold]])
        w = np.r_[np.ones(len(tr), np.float32), np.full(len(rows), cfg.pseudo_weight, np.float32)]
    result = fit(cfg, train.num_classes, x, y, train.images[va], train.labels[va], fold=fold, seed=seed, checkpoint=checkpoint, progress=progress, desc=desc, train_w=w)
    device = resolve_device(cfg.device)
    val = predict(result.model, torch.from_numpy(train.images[va]), cfg, device)
    test = predict(result.model, torch.from_numpy(_writable(data.test.images)), cfg, device) if data.test is not None else np.zeros((0, train.num_classes), np.float32)
    buf = io.BytesIO()
    torch.save(result.model.state_dict(), buf)
    summary = {"fold": fold, "seed": seed, **result.summary(), "host": platform.node(), "unit_seconds": round(time.perf_counter() - t0, 1), "finished": atomic.utc_now()}
    return UnitResult(fold, seed, val, test, buf.getvalue(), result.history, summary)


def _writable(a: np.ndarray) -> np.ndarray:
    """Arrays that came through Ray's object store are read-only views: copy before torch uses them."""
    return a if a.flags.writeable else a.copy()


def save_unit(rd: RunDir, result: UnitResult, identity: dict[str, Any]) -> None:
    """Record a finished (fold, seed): artifacts first, the summary naming their hashes last."""
    fd = rd.fold(result.fold)
    s = result.seed
    arts = {
        fd.seed_val(s).name: write_array(fd.seed_val(s), result.val_logits),
        fd.seed_test(s).name: write_array(fd.seed_test(s), result.test_logits),
        fd.seed_model(s).name: write_recorded(fd.seed_model(s), result.model_bytes),
        fd.seed_history(s).name: write_recorded(fd.seed_history(s), atomic.csv_text(result.history).encode()),
    }
    atomic.write_json(fd.seed_summary(s), {**result.summary, "identity": identity, "artifacts": arts})
    fd.checkpoint(s).unlink(missing_ok=True)


def finish_fold(rd: RunDir, cfg: TrainConfig, data: TrainingData, fold: int) -> dict[str, Any]:
    """Average a fold's seeds into its val/test logits and write its metrics (the done marker)."""
    fd = rd.fold(fold)
    _, va = data.split(fold)
    seeds = [read_seed(fd, s, data.identity) for s in cfg.seeds]
    val = np.mean([read_array(fd.seed_val(s["seed"]), s["artifacts"][fd.seed_val(s["seed"]).name], finite=True) for s in seeds], axis=0).astype(np.float32)
    test = np.mean([read_array(fd.seed_test(s["seed"]), s["artifacts"][fd.seed_test(s["seed"]).name], finite=True) for s in seeds], axis=0).astype(np.float32)
    history = [r for s in seeds for r in atomic.read_csv_rows(fd.seed_history(s["seed"]))]
    arts = {
        fd.val_logits.name: write_array(fd.val_logits, val),
        fd.test_logits.name: write_array(fd.test_logits, test),
        fd.history.name: write_recorded(fd.history, atomic.csv_text(history).encode()),
    }
    y = data.train.labels[va]
    m = {
        "fold": fold, "val_rows": int(len(va)), "acc": metrics.accuracy(val, y), "logloss": metrics.log_loss(val, y),
        "best_epochs": [s["best_epoch"] for s in seeds], "seconds": round(sum(s["seconds"] for s in seeds), 1),
        "images_per_s": round(float(np.mean([s["images_per_s"] for s in seeds])), 1), "hosts": sorted({s.get("host", "") for s in seeds}), "nodes": sorted({s["node_id"] for s in seeds if "node_id" in s}),
        "finished": atomic.utc_now(), "seeds": [{k: v for k, v in s.items() if k not in ("artifacts", "identity")} for s in seeds],
        "identity": data.identity, "artifacts": arts,
    }  # fmt: skip
    atomic.write_json(fd.metrics, m)
    log.info(f"fold {fold}: acc {m['acc']:.4f}  logloss {m['logloss']:.4f}  best epoch(s) {m['best_epochs']}  {m['seconds']:.0f}s  {m['images_per_s']:.0f} img/s")
    return m


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
    failures: list[str] = field(default_factory=list)
    outstanding: int = 0  # units submitted and not back yet


def prepare_run(comp: Competition, cfg: TrainConfig, run: str | None = None, workdir: str | Path = ".", only_folds: list[int] | None = None, overwrite: bool = False, tag: Any = None) -> RunJob:
    """Check everything, open (or create) the run folder and plan its unfinished units."""
    ws = Workspace(workdir)
    name = run if run is not None else default_run_name(cfg)
    ws.run(name)  # refuse a bad name before any work
    selected = sorted(set(only_folds)) if only_folds else list(range(cfg.folds))
    bad = [f for f in selected if not 0 <= f < cfg.folds]
    if bad:
        raise FkaggleError(f"fold {bad[0]} out of range 0..{cfg.folds - 1}")
    data = training_data(comp, cfg, ws)
    rd, manifest = open_run(ws, name, cfg, data, comp, overwrite)
    for warning in cfg.warnings():
        log.warning(warning)
    units = plan(rd, cfg, data.identity, selected)
    if manifest["config"] != cfg.to_dict():  # speed settings (device, amp...) may differ between resumes
        rd.write_manifest({**manifest, "config": cfg.to_dict()})
    log.info(f"run {name}: {cfg.model}, {cfg.folds} folds ({', '.join(map(str, selected))} here), {len(data.train)} train rows, {len(units)} (fold, seed) unit(s) to train")
    _warn_if_few_steps(cfg, data)
    return RunJob(rd, cfg, data, selected, units, tag)


def record(job: RunJob, result: UnitResult) -> None:
    """Save a finished unit; finish its fold when that was the fold's last seed."""
    save_unit(job.rd, result, job.data.identity)
    if _seeds_in(job, result.fold):
        finish_fold(job.rd, job.cfg, job.data, result.fold)


def _seeds_in(job: RunJob, fold: int) -> bool:
    fd = job.rd.fold(fold)
    return all(fd.seed_summary(s).exists() for s in job.cfg.seeds)


def conclude(job: RunJob) -> dict[str, Any]:
    """Finish folds whose seeds were all done before, assemble the run, say how it went."""
    for fold in job.folds:
        if not job.rd.fold(fold).metrics.exists() and _seeds_in(job, fold):
            finish_fold(job.rd, job.cfg, job.data, fold)
    manifest = assemble(job.rd)
    if manifest["complete"]:
        cv = manifest["cv"]
        log.info(f"{job.rd.name}: CV accuracy {cv['acc']:.4f}  log-loss {cv['logloss']:.4f}  (per fold: {_per_fold_text(cv)})")
        if manifest.get("test_metrics"):
            log.info(f"{job.rd.name}: test accuracy of the {job.cfg.folds}-fold ensemble: {manifest['test_metrics']['acc']:.4f}")
    elif not job.failures:
        log.info(f"folds missing: {manifest['missing_folds']} (run them, or copy their fold_K folders here and `fkaggle assemble {job.rd.name}`)")
    return manifest


def drive(executor: Executor, jobs: Iterator[RunJob], on_done: Callable[[RunJob, dict[str, Any]], None] = lambda job, manifest: None, progress: bool = True) -> list[RunJob]:
    """Keep the executor busy with the units of `jobs` (pulled lazily, so a search can choose the
    next trial from the last results), record each result as it arrives and conclude each job
    when its last unit is back. Returns the jobs that had failed units (the rest are complete)."""
    from tqdm.auto import tqdm

    pending: dict[int, RunJob] = {}  # id(unit) -> its job
    failed: list[RunJob] = []
    jobs = iter(jobs)
    bar = tqdm(total=0, desc="units", unit="unit", disable=True if executor.shows_unit_progress or not progress else None)

    def finish(job: RunJob) -> None:
        on_done(job, conclude(job))
        if job.failures:
            failed.append(job)

    with bar:
        while True:
            while not pending or len(pending) < executor.capacity:  # the first job is prepared before the executor starts
                job = next(jobs, None)
                if job is None:
                    break
                if not job.units:
                    finish(job)
                for fold, seed in job.units:
                    unit = Unit(job.rd.name, job.cfg, job.data, fold, seed, job.rd.fold(fold).checkpoint(seed))
                    executor.submit(unit)
                    pending[id(unit)] = job
                    job.outstanding += 1
                    bar.total += 1
                bar.refresh()
            if not pending:
                return failed
            unit, outcome = executor.next_done()
            job = pending.pop(id(unit))
            job.outstanding -= 1
            bar.update(1)
            if isinstance(outcome, UnitFailed):
                log.error(str(outcome))
                job.failures.append(str(outcome))
            else:
                record(job, outcome)
                log.debug(f"{unit} done{_where(outcome.summary)} in {outcome.summary.get('seconds', 0):.0f}s")
            if job.outstanding == 0:
                finish(job)


def _where(summary: dict[str, Any]) -> str:
    return f" on {summary['node_ip']} ({summary['host']})" if "node_ip" in summary else ""


def failure_message(jobs: list[RunJob]) -> str:
    lines = [f for job in jobs for f in job.failures]
    return f"{len(lines)} (fold, seed) unit(s) failed: {'; '.join(lines)}. Finished units are kept; re-run the same command to retry the rest"


def fold_train(
    comp: Competition,
    cfg: TrainConfig,
    run: str | None = None,
    workdir: str | Path = ".",
    only_folds: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Train the selected folds of a run (all by default) on `executor` (this process by
    default), recording each (fold, seed) as it finishes; assemble the run if complete."""
    job = prepare_run(comp, cfg, run, workdir, only_folds, overwrite)
    done: dict[str, Any] = {}
    with executor or LocalExecutor(progress) as ex:
        failed = drive(ex, iter([job]), lambda job, manifest: done.update(manifest), progress)
    if failed:
        raise FkaggleError(failure_message(failed))
    return done


def _per_fold_text(cv: dict[str, Any]) -> str:
    return ", ".join(f"{f['acc']:.4f}" for f in cv["per_fold"])


def _warn_if_few_steps(cfg: TrainConfig, data: TrainingData) -> None:
    rows = int((data.fold_of != 0).sum())
    steps = max(1, rows // min(cfg.batch_size, rows)) * cfg.epochs
    if steps < 50:
        log.warning(f"only {steps} optimizer steps per fold ({rows} rows, batch {cfg.batch_size}, {cfg.epochs} epochs): expect a model near chance; use more data, epochs or a smaller batch")


def status(rd: RunDir, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's manifest with every fold's state derived from its folder. Writes nothing."""
    manifest = manifest or rd.read_manifest()
    if manifest.get("predicted_from"):  # a prediction of another run's models: no folds of its own
        return {**manifest, "fold_status": {}, "fold_problems": {}, "fold_metrics": [], "missing_folds": [], "complete": True}
    identity = manifest["identity"]
    states, details, fold_metrics = {}, {}, []
    for f in range(manifest["data"]["folds"]):
        state, detail, done_metrics = fold_state(rd.fold(f), identity)
        states[str(f)] = state
        if detail:
            details[str(f)] = detail
        if done_metrics is not None:
            fold_metrics.append(done_metrics)
    missing = [int(f) for f, s in states.items() if s != "done"]
    return {**manifest, "fold_status": states, "fold_problems": details, "fold_metrics": [{k: v for k, v in m.items() if k not in ("identity", "artifacts")} for m in fold_metrics], "missing_folds": missing, "complete": not missing}


def assemble(rd: RunDir) -> dict[str, Any]:
    """Once every fold is done: OOF logits, fold-mean test logits, history, curves, CV."""
    base = {k: v for k, v in rd.read_manifest().items() if k not in DERIVED}
    if base.get("predicted_from"):
        raise FkaggleError(f"a prediction of run {base['predicted_from']['run']}: nothing to assemble", rd.path)
    manifest = {**status(rd, base), "updated": atomic.utc_now()}
    manifest.pop("fold_problems")
    if not manifest["complete"]:
        rd.write_manifest(manifest)
        return manifest
    fold_of = rd.array("folds", base)
    labels = rd.array("labels", base)
    oof = np.full((len(fold_of), base["data"]["num_classes"]), np.nan, dtype=np.float32)
    tests, history = [], []
    for f in range(base["data"]["folds"]):
        fd = rd.fold(f)
        arts = read_json(fd.metrics)["artifacts"]
        v = read_array(fd.val_logits, arts[fd.val_logits.name], finite=True)
        if len(v) != int((fold_of == f).sum()):
            raise FkaggleError(f"fold {f} has {len(v)} validation rows, the fold assignment {(fold_of == f).sum()}", fd.path)
        oof[fold_of == f] = v
        tests.append(read_array(fd.test_logits, arts[fd.test_logits.name], finite=True))
        history += atomic.read_csv_rows(fd.history)
    test_logits = np.mean(tests, axis=0).astype(np.float32)
    files = dict(base["files"])
    files["oof_logits.npy"] = write_array(rd.oof_logits, oof)
    files["test_logits.npy"] = write_array(rd.test_logits, test_logits)
    files["history.csv"] = write_recorded(rd.history, atomic.csv_text(history).encode())
    if history:
        learning_curves(history, rd.curves_png, title=rd.name)
    manifest["files"] = files
    manifest["cv"] = {"acc": metrics.accuracy(oof, labels), "logloss": metrics.log_loss(oof, labels), "per_fold": metrics.per_fold(oof, labels, fold_of)}
    if "test_labels.npy" in files:
        test_labels = rd.array("test_labels", base)
        manifest["test_metrics"] = {"acc": metrics.accuracy(test_logits, test_labels), "logloss": metrics.log_loss(test_logits, test_labels)}
    rd.write_manifest(manifest)
    return manifest


# ----------------------------------------------------------------------------- reading finished runs


def run_images(manifest: dict[str, Any], comp: Competition) -> ImageSet:
    """A run's training images, rebuilt from the competition's data and checked against the
    fingerprint the run recorded (the run folder keeps labels and logits, not images)."""
    train = training_rows(comp, build_config(**manifest["config"]))
    if train.fingerprint() != manifest["identity"]["data_fingerprint"]:
        raise FkaggleError(f"run {manifest['run']} was trained on other data than {train.path} (fingerprints differ); pass the run's --competition or --train")
    return train


def load_fold_model(rd: RunDir, manifest: dict[str, Any], fold: int, seed: int) -> torch.nn.Module:
    """A finished (fold, seed) model in eval mode, its file verified before torch.load(weights_only=True)."""
    import torch

    from fmnist_kaggle.models import create_model

    fd = rd.fold(fold)
    read_seed(fd, seed, manifest["identity"])  # every model file verified first
    cfg = manifest["config"]
    model = create_model(cfg["model"], num_classes=manifest["data"]["num_classes"], in_chans=1, **cfg["model_kwargs"])
    model.load_state_dict(torch.load(fd.seed_model(seed), map_location="cpu", weights_only=True))
    return model.eval()


def predict_run(ref: str, test_path: str | Path, name: str | None = None, workdir: str | Path = ".", format: str = "auto", device: str = "auto") -> dict[str, Any]:
    """Apply a run's saved fold (and seed) models to another test file. The result is a run
    `oof/NAME/` holding the source's OOF logits (same data, folds, labels) and the new
    fold-averaged test logits, with the new test file's fingerprint: `blend NAME --test FILE`
    (alone or with other runs predicted on that file) makes its submission."""
    import torch

    from fmnist_kaggle.data import load_images
    from fmnist_kaggle.train import predict, resolve_device

    src = load_run(ref, workdir)
    ws = Workspace(workdir)
    out = ws.run(name or f"{src.name}-on-{Path(test_path).name.split('.')[0]}")
    if out.path.exists():
        raise FkaggleError("exists; choose another --name", out.path)
    if src.manifest.get("predicted_from"):
        raise FkaggleError(f"{src.name} is itself a prediction of {src.manifest['predicted_from']['run']}: predict from that run", src.dir.path)
    data = src.manifest["data"]
    test = load_images(test_path, format, label_values=tuple(data["label_values"]))
    cfg = build_config(**{**src.manifest["config"], "device": device})
    dev = resolve_device(device)
    images = torch.from_numpy(test.images)
    folds = []
    for f in range(data["folds"]):
        per_seed = [predict(load_fold_model(src.dir, src.manifest, f, seed).to(dev), images, cfg, dev) for seed in src.manifest["seeds"]]
        log.debug(f"fold {f}: {len(per_seed)} seed model(s) predicted {len(test)} rows")
        folds.append(np.mean(per_seed, axis=0))
    test_logits = np.mean(folds, axis=0).astype(np.float32)
    return _write_prediction(out, src, test, test_logits)


def _write_prediction(out: RunDir, src: "Run", test: Any, test_logits: np.ndarray) -> dict[str, Any]:
    files = {
        "folds.npy": write_array(out.folds_npy, src.fold_of), "labels.npy": write_array(out.labels_npy, src.labels),
        "oof_logits.npy": write_array(out.oof_logits, src.oof_logits), "test_logits.npy": write_array(out.test_logits, test_logits),
    }  # fmt: skip
    fingerprint = test.fingerprint()
    m = {k: v for k, v in src.manifest.items() if k not in DERIVED and k != "files"}
    m.update(
        run=out.name, created=atomic.utc_now(), files=files, cv=src.manifest["cv"],
        identity={**src.manifest["identity"], "test_fingerprint": fingerprint},
        data={**src.manifest["data"], "test_path": str(test.path), "test_rows": len(test), "test_fingerprint": fingerprint},
        predicted_from={"run": src.name, "test_path": str(test.path), "test_fingerprint": fingerprint},
    )
    if test.labels is not None:
        files["test_labels.npy"] = write_array(out.test_labels_npy, test.labels)
        m["test_metrics"] = {"acc": metrics.accuracy(test_logits, test.labels), "logloss": metrics.log_loss(test_logits, test.labels)}
    out.write_manifest(m)  # last: the folder is a run once its manifest names its verified files
    return m


def list_runs(workdir: str | Path = ".") -> list[dict[str, Any]]:
    """One summary row per run in the workspace (reads only; an unreadable run says why)."""
    ws = Workspace(workdir)
    rows = []
    for name in ws.run_names():
        rd = ws.run(name)
        try:
            m = status(rd)
        except FkaggleError as exc:
            rows.append({"run": name, "problem": str(exc)})
            continue
        done = m["data"]["folds"] if m.get("predicted_from") else sum(s == "done" for s in m["fold_status"].values())
        assembled = "oof_logits.npy" in m.get("files", {})
        rows.append({
            "run": name, "model": m["model"], "folds_done": done, "folds": m["data"]["folds"], "assembled": assembled,
            "cv_acc": m["cv"]["acc"] if assembled and m.get("cv") else None, "cv_logloss": m["cv"]["logloss"] if assembled and m.get("cv") else None,
            "test_acc": (m.get("test_metrics") or {}).get("acc") if assembled else None, "created": m["created"],
            "predicted_from": (m.get("predicted_from") or {}).get("run"),
        })  # fmt: skip
    return rows


@dataclass
class Run:
    """A finished run: what blending and scoring read (every array verified)."""

    name: str
    dir: RunDir
    manifest: dict[str, Any]
    oof_logits: np.ndarray
    test_logits: np.ndarray
    fold_of: np.ndarray
    labels: np.ndarray


def load_run(ref: str, workdir: str = ".") -> Run:
    rd = Workspace(workdir).find_run(ref)
    manifest = rd.read_manifest()
    if "oof_logits.npy" not in manifest.get("files", {}):
        st = status(rd, manifest)
        hint = f"`fkaggle assemble {rd.name}`" if st["complete"] else f"missing folds {st['missing_folds']}; `fkaggle status {rd.name}`"
        raise FkaggleError(f"run is not assembled ({hint})", rd.path)
    return Run(rd.name, rd, manifest, rd.array("oof_logits", manifest, finite=True), rd.array("test_logits", manifest, finite=True), rd.array("folds", manifest), rd.array("labels", manifest))

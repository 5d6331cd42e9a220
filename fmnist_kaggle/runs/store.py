"""Reading a run's folder: fold and seed states (verified, never trusted), status, assembly of
the OOF and test logits once every fold is done, and the finished `Run` that evaluation reads.

Status only reads; `assemble` writes the run-level artifacts. A run made by `fkaggle predict`
(`predicted_from`) holds its source's OOF logits and new test logits, and no folds of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.images import ImageSet
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import learning_curves
from fmnist_kaggle.runs.identity import identity_diff
from fmnist_kaggle.runs.trainset import training_rows
from fmnist_kaggle.storage import csvfile
from fmnist_kaggle.storage.artifacts import (
    CorruptArtifact,
    read_array,
    read_json,
    read_verified,
    torch_load,
    utc_now,
    write_array,
    write_recorded,
)
from fmnist_kaggle.storage.layout import FoldDir, RunDir, Workspace
from fmnist_kaggle.storage.schemas import DONE_MARKER
from fmnist_kaggle.training.config import build_config, selects_epoch

if TYPE_CHECKING:
    import torch

DERIVED = ("fold_status", "fold_metrics", "missing_folds", "complete", "partial", "cv", "test_metrics", "updated")


def predicted_from(manifest: dict[str, Any]) -> str | None:
    """The source run of a run that `fkaggle predict` made (it has no folds of its own), else None."""
    return (manifest.get("predicted_from") or {}).get("run")


def _read_done_marker(
    marker: Path, what: str, owner: str, where: Path, identity: dict[str, Any], artifacts: tuple[Path, ...]
) -> dict[str, Any]:
    """A done marker (fold metrics, seed summary) of this run, with every artifact it records verified."""
    m = read_json(marker, what, DONE_MARKER)
    diff = identity_diff(m.get("identity"), identity)
    if diff:
        raise FkaggleError(f"{owner} does not belong to this run: its {diff} (copied from another run?)", where)
    records = m.get("artifacts") or {}
    for path in artifacts:
        read_verified(path, records.get(path.name))
    return m


def read_fold(fd: FoldDir, identity: dict[str, Any]) -> dict[str, Any]:
    """A finished fold's metrics, its artifacts verified; FkaggleError (foreign) or CorruptArtifact otherwise."""
    return _read_done_marker(
        fd.metrics, "fold metrics", "fold folder", fd.path, identity, (fd.val_logits, fd.test_logits, fd.history)
    )


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
    marker = fd.seed_summary(seed)
    return _read_done_marker(
        marker,
        "seed summary",
        f"seed {seed}",
        marker,
        identity,
        (fd.seed_val(seed), fd.seed_test(seed), fd.seed_model(seed), fd.seed_history(seed)),
    )


def status(rd: RunDir, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's manifest with every fold's state derived from its folder. Writes nothing."""
    manifest = manifest or rd.read_manifest()
    if predicted_from(manifest):  # a prediction of another run's models: no folds of its own
        return {
            **manifest,
            "fold_status": {},
            "fold_problems": {},
            "fold_metrics": [],
            "missing_folds": [],
            "complete": True,
        }
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
    return {
        **manifest,
        "fold_status": states,
        "fold_problems": details,
        "fold_metrics": [{k: v for k, v in m.items() if k not in ("identity", "artifacts")} for m in fold_metrics],
        "missing_folds": missing,
        "complete": not missing,
    }


def assemble(rd: RunDir, partial: bool = False) -> dict[str, Any]:
    """Once every fold is done: OOF logits, fold-mean test logits, history, curves, CV. With
    `partial`, a run some of whose folds are done is assembled over those: OOF logits on their
    rows (NaN elsewhere), the mean of their test logits, CV over their rows, marked `partial`
    (the autopilot's run that the deadline cut: its finished work still makes a submission)."""
    base = {k: v for k, v in rd.read_manifest().items() if k not in DERIVED}
    if predicted_from(base):
        raise FkaggleError(f"a prediction of run {predicted_from(base)}: nothing to assemble", rd.path)
    manifest = {**status(rd, base), "updated": utc_now()}
    manifest.pop("fold_problems")
    done = [f for f in range(base["data"]["folds"]) if f not in manifest["missing_folds"]]
    if not manifest["complete"] and not (partial and done):
        rd.write_manifest(manifest)
        return manifest
    fold_of = rd.array("folds", base)
    labels = rd.array("labels", base)
    oof = np.full((len(fold_of), base["data"]["num_classes"]), np.nan, dtype=np.float32)
    tests, history = [], []
    for f in done:
        fd = rd.fold(f)
        arts = read_json(fd.metrics, "fold metrics", DONE_MARKER)["artifacts"]
        v = read_array(fd.val_logits, arts[fd.val_logits.name], finite=True)
        if len(v) != int((fold_of == f).sum()):
            raise FkaggleError(
                f"fold {f} has {len(v)} validation rows, the fold assignment {(fold_of == f).sum()}", fd.path
            )
        oof[fold_of == f] = v
        tests.append(read_array(fd.test_logits, arts[fd.test_logits.name], finite=True))
        history += csvfile.read_csv_rows(fd.history)
    test_logits = np.mean(tests, axis=0).astype(np.float32)
    files = dict(base["files"])
    files[rd.oof_logits.name] = write_array(rd.oof_logits, oof)
    files[rd.test_logits.name] = write_array(rd.test_logits, test_logits)
    files[rd.history.name] = write_recorded(rd.history, csvfile.csv_text(history).encode())
    if history:
        learning_curves(history, rd.curves_png, title=rd.name)
    manifest["files"] = files
    covered = np.isin(fold_of, done)
    if not manifest["complete"]:
        manifest["partial"] = {"folds": done, "rows": int(covered.sum()), "of": len(fold_of)}
    manifest["cv"] = {
        "acc": metrics.accuracy(oof[covered], labels[covered]),
        "logloss": metrics.log_loss(oof[covered], labels[covered]),
        "per_fold": metrics.per_fold(oof[covered], labels[covered], fold_of[covered]),
    }
    if rd.test_labels_npy.name in files:
        test_labels = rd.array("test_labels", base)
        manifest["test_metrics"] = {
            "acc": metrics.accuracy(test_logits, test_labels),
            "logloss": metrics.log_loss(test_logits, test_labels),
        }
    rd.write_manifest(manifest)
    return manifest


def run_images(manifest: dict[str, Any], comp: Competition | None = None) -> ImageSet:
    """A run's training images, rebuilt from `comp`'s data, or with None from where the run
    recorded its data came from, and checked against the fingerprint the run recorded (the
    run folder keeps labels and logits, not images)."""
    comp = comp or recorded_competition(manifest)
    if comp.train is not None and not comp.train.exists():
        raise FkaggleError(
            f"run {manifest['run']} was trained on {comp.train}, which is gone (moved "
            "or deleted): pass --train PATH (or --competition FILE) with its data"
        )
    train = training_rows(comp, build_config(**manifest["config"]))
    if train.fingerprint() != manifest["identity"]["data_fingerprint"]:
        raise FkaggleError(
            f"run {manifest['run']} was trained on other data than {train.path} holds "
            "now (fingerprints differ): pass --train PATH (or --competition FILE) with "
            "the run's data"
        )
    return train


def recorded_competition(manifest: dict[str, Any]) -> Competition:
    """The competition as the run recorded it (runs before the record: the default config)."""
    from fmnist_kaggle.data.competition import resolve_competition

    source = manifest["data"].get("source")
    if not isinstance(source, dict):
        return resolve_competition()
    path = lambda key: Path(source[key]) if source.get(key) else None
    return Competition(
        name=manifest["data"].get("competition") or "custom",
        format=source.get("format") or "auto",
        id_column=source.get("id_column") or "Id",
        label_column=source.get("label_column") or "Label",
        class_names=tuple(manifest["data"].get("class_names") or ()),
        config_path=path("config"),
        **{k: path(k) for k in ("train", "train_labels", "test", "test_labels", "sample_submission")},
    )


def load_fold_model(rd: RunDir, manifest: dict[str, Any], fold: int, seed: int) -> torch.nn.Module:
    """A finished (fold, seed) model in eval mode, its file verified before torch.load(weights_only=True)."""
    return build_fold_model(manifest, read_fold_model(rd, manifest, fold, seed), rd.fold(fold).seed_model(seed))


def read_fold_model(rd: RunDir, manifest: dict[str, Any], fold: int, seed: int) -> bytes:
    """A finished (fold, seed) model's weight file, verified against its recorded hash."""
    fd = rd.fold(fold)
    summary = read_seed(fd, seed, manifest["identity"])  # every model file verified first
    path = fd.seed_model(seed)
    return read_verified(path, summary["artifacts"].get(path.name))


def build_fold_model(manifest: dict[str, Any], weights: bytes, path: Path) -> torch.nn.Module:
    """The run's model with verified weight bytes (torch.load(weights_only=True)) in eval mode."""
    from fmnist_kaggle.models import create_model

    state = torch_load(weights, path)
    cfg = manifest["config"]
    model = create_model(cfg["model"], num_classes=manifest["data"]["num_classes"], in_chans=1, **cfg["model_kwargs"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:  # another model's weights under a rewritten record
        raise CorruptArtifact(f"not the weights of {cfg['model']} ({str(exc).splitlines()[0][:100]})", path) from None
    return model.eval()


def list_runs(workdir: str | Path = ".") -> list[dict[str, Any]]:
    """One summary row per run in the workspace, best CV first, then runs without one (reads
    only; an unreadable run says why)."""
    ws = Workspace(workdir)
    rows = []
    for name in ws.run_names():
        rd = ws.run(name)
        try:
            m = status(rd)
        except FkaggleError as exc:
            rows.append({"run": name, "problem": str(exc)})
            continue
        done = m["data"]["folds"] if predicted_from(m) else sum(s == "done" for s in m["fold_status"].values())
        assembled = rd.assembled(m)
        rows.append(
            {
                "run": name,
                "model": m["model"],
                "folds_done": done,
                "folds": m["data"]["folds"],
                "assembled": assembled,
                "cv_acc": m["cv"]["acc"] if assembled and m.get("cv") else None,
                "cv_logloss": m["cv"]["logloss"] if assembled and m.get("cv") else None,
                "test_acc": (m.get("test_metrics") or {}).get("acc") if assembled else None,
                "created": m["created"],
                "predicted_from": predicted_from(m),
                "optimistic": selects_epoch(m.get("config") or {}),
                "partial": bool(m.get("partial")),
            }
        )
    return sorted(rows, key=lambda r: (r.get("cv_acc") is None, -(r.get("cv_acc") or 0.0), r["run"]))  # best CV first


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
    rows: np.ndarray | None = None  # a partial run: the training rows its arrays hold (None: all)

    @property
    def identity(self) -> dict[str, Any]:
        """Fingerprints of its data, folds, test file (and teachers), and its semantic config."""
        return self.manifest["identity"]

    @property
    def cv(self) -> dict[str, Any]:
        """Out-of-fold accuracy and log-loss (overall and per fold)."""
        return self.manifest["cv"]

    @property
    def optimistic(self) -> bool:
        """Its epochs were chosen on the rows its CV scores (--select-epoch): the CV flatters it."""
        return selects_epoch(self.manifest.get("config") or {})

    @property
    def predicted_from(self) -> str | None:
        """The run whose fold models made these test logits on another test file, if any."""
        return predicted_from(self.manifest)

    @property
    def partial(self) -> dict[str, Any] | None:
        """Where only some folds finished: {folds, rows, of}; its arrays hold those folds' rows only."""
        return self.manifest.get("partial")


def load_run(ref: str, workdir: str | Path = ".") -> Run:
    """A finished (assembled) run of the workspace, every array verified against its record."""
    rd = Workspace(workdir).find_run(ref)
    manifest = rd.read_manifest()
    if not rd.assembled(manifest):
        st = status(rd, manifest)
        hint = (
            f"`fkaggle assemble {rd.name}`"
            if st["complete"]
            else f"missing folds {st['missing_folds']}; `fkaggle status {rd.name}`"
        )
        raise FkaggleError(f"run is not assembled ({hint})", rd.path)
    fold_of, labels = rd.array("folds", manifest), rd.array("labels", manifest)
    part = manifest.get("partial")
    oof = rd.array("oof_logits", manifest, finite=part is None)
    if part is not None:  # the rows of its finished folds only (the rest are NaN on disk)
        covered = np.isin(fold_of, part["folds"])
        if covered.sum() != part["rows"] or not np.isfinite(oof[covered]).all():
            raise CorruptArtifact("partial OOF logits do not match the folds the manifest names", rd.oof_logits)
        oof, fold_of, labels = oof[covered], fold_of[covered], labels[covered]
    rows = np.flatnonzero(covered) if part is not None else None
    return Run(rd.name, rd, manifest, oof, rd.array("test_logits", manifest, finite=True), fold_of, labels, rows)


def data_options(manifest: dict[str, Any], test: str | Path | None = None) -> list[str]:
    """Command-line data options that find a run's recorded data again (none for the default
    competition config); `test` replaces its test file."""
    from fmnist_kaggle.data.competition import DEFAULT_CONFIG

    source = manifest["data"].get("source") or {}
    tests = ["--test", str(test)] if test is not None else []
    if source.get("config"):
        config = [] if Path(source["config"]) == DEFAULT_CONFIG.absolute() else ["--competition", source["config"]]
        return config + tests
    options = []
    for key in ("train", "train_labels", "test", "test_labels", "sample_submission"):
        if source.get(key) and not (key.startswith("test") and test is not None):
            options += [f"--{key.replace('_', '-')}", source[key]]
    return options + tests


def resume_command(manifest: dict[str, Any], rd: RunDir) -> str:
    """The command that trains a run's missing folds, runnable as printed."""
    import shlex

    folds = ",".join(map(str, manifest["missing_folds"]))
    args = ["--config", str(rd.config_toml), *data_options(manifest), "--run", manifest["run"], "--fold", folds]
    return "fkaggle fold-train " + shlex.join(args)

"""The one owner of the workspace layout: every path under `oof/` and `submissions/`.

No other module composes artifact paths or names artifact files. Names given by users
(runs, blends, sweeps) are single path components checked here, so nothing they name can
leave its folder. What is in the files, and their records, is `storage.artifacts`'s
(docs/artifacts.md).
"""

from __future__ import annotations

import difflib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import CorruptArtifact, present, read_array, read_json
from fmnist_kaggle.storage.schemas import MANIFEST, schema_problem

SCHEMA = 2
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 120  # leaves room in a 255-byte file name for suffixes (NAME.test_logprobs.npy, sweep trial names)
# Names the layout itself uses in oof/ and submissions/: a run or blend called so would clobber them.
RESERVED = {
    "folds",
    "sweeps",
    "cv",
    "reproduce",
    "autopilot",
    "data-check",
    "history",
    "readme.md",
    "readme",
    "report.html",
}


def check_name(name: str, what: str = "run") -> str:
    """A user-given name: one path component of safe characters, not a reserved layout name."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name.endswith(".tmp"):
        raise FkaggleError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-', starting "
            "with a letter or digit (one name, not a path)"
        )
    if len(name) > MAX_NAME:
        raise FkaggleError(f"invalid {what} name: {len(name)} characters, at most {MAX_NAME}")
    if name.lower() in RESERVED:
        raise FkaggleError(
            f"invalid {what} name {name!r}: reserved by the workspace layout ({', '.join(sorted(RESERVED))})"
        )
    return name


def inside(path: Path, base: Path) -> Path:
    """`path`, when no symbolic link takes it out of `base` (`base` itself may be a link, e.g.
    `oof/` on a bigger disk): nothing the workspace reads or writes follows a link out of it."""
    try:
        real, root = path.resolve(), base.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise FkaggleError(f"cannot resolve the path ({exc})", path) from None
    if real != root and root not in real.parents:
        raise FkaggleError(
            f"a symbolic link out of the workspace (to {real}): the workspace follows "
            "no links out of it; remove the link",
            path,
        )
    return path


# ----------------------------------------------------------------------------- run folders


@dataclass(frozen=True)
class FoldDir:
    path: Path
    fold: int

    @property
    def metrics(self) -> Path:  # the fold's done marker, with the records of its artifacts
        return self.path / "metrics.json"

    @property
    def val_logits(self) -> Path:
        return self.path / "val_logits.npy"

    @property
    def test_logits(self) -> Path:
        return self.path / "test_logits.npy"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    def seed_summary(self, seed: int) -> Path:  # the seed's done marker
        return self.path / f"seed_{seed}.json"

    def seed_val(self, seed: int) -> Path:
        return self.path / f"seed_{seed}_val.npy"

    def seed_test(self, seed: int) -> Path:
        return self.path / f"seed_{seed}_test.npy"

    def seed_model(self, seed: int) -> Path:
        return self.path / f"model_seed_{seed}.pt"

    def seed_history(self, seed: int) -> Path:
        return self.path / f"history_seed_{seed}.csv"

    def checkpoint(self, seed: int) -> Path:
        return self.path / f"checkpoint_seed_{seed}.pt"

    def has_partial_work(self) -> bool:
        return any(self.path.glob("checkpoint_seed_*.pt")) or any(self.path.glob("seed_*.json"))


@dataclass(frozen=True)
class RunDir:
    path: Path
    name: str

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def config_toml(self) -> Path:
        return self.path / "config.toml"

    @property
    def folds_npy(self) -> Path:
        return self.path / "folds.npy"

    @property
    def labels_npy(self) -> Path:
        return self.path / "labels.npy"

    @property
    def test_labels_npy(self) -> Path:
        return self.path / "test_labels.npy"

    @property
    def oof_logits(self) -> Path:
        return self.path / "oof_logits.npy"

    @property
    def test_logits(self) -> Path:
        return self.path / "test_logits.npy"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def curves_png(self) -> Path:
        return self.path / "learning_curves.png"

    def explain_png(self, fold: int) -> Path:
        return self.path / f"activation_maps_fold{fold}.png"

    def fold(self, k: int) -> FoldDir:
        return FoldDir(inside(self.path / f"fold_{k}", self.path), k)

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> dict[str, Any]:
        m = read_json(self.manifest_path, "run manifest")  # the schema version first: its own message
        if m.get("schema") != SCHEMA:
            raise FkaggleError(
                f"run manifest has schema {m.get('schema')!r}, this fkaggle reads schema {SCHEMA} "
                f"(docs/artifacts.md); retrain with `fkaggle fold-train ... --run {self.name} --overwrite`",
                self.manifest_path,
            )
        problem = schema_problem(m, MANIFEST)
        if problem:
            raise CorruptArtifact(f"malformed run manifest: {problem}", self.manifest_path)
        if m.get("run") != self.name:
            raise FkaggleError(f"manifest names run {m.get('run')!r}, not {self.name!r}", self.manifest_path)
        return m

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic.write_json(self.manifest_path, manifest)

    def assembled(self, manifest: dict[str, Any]) -> bool:
        """Whether the manifest records the run's OOF logits (every fold in and assembled)."""
        return self.oof_logits.name in manifest.get("files", {})

    def array(self, key: str, manifest: dict[str, Any], finite: bool = False) -> np.ndarray:
        """A run-level array (folds, labels, oof_logits...) verified against the manifest's record."""
        path = self.path / f"{key}.npy"
        return read_array(path, manifest.get("files", {}).get(path.name), finite)

    def remove(self) -> None:
        """Delete this run's folder: only a folder whose manifest names this run (never anything else)."""
        if not self.path.exists():
            return
        try:
            named = read_json(self.manifest_path, "run manifest").get("run")
        except FkaggleError:
            named = None
        if named != self.name or self.path.is_symlink():
            raise FkaggleError(
                f"refusing to delete: not a run folder of run {self.name!r} (its manifest names {named!r})", self.path
            )
        shutil.rmtree(self.path)


# ----------------------------------------------------------------------------- the workspace


@dataclass(frozen=True)
class SubmissionFiles:
    csv: Path
    record: Path  # NAME.json: provenance and uploads, with the CSV's SHA-256
    logprobs: Path


@dataclass(frozen=True)
class AutoFiles:
    """`fkaggle auto --name NAME`: its decisions and its leaderboard."""

    state: Path  # state.json: sessions, each entry's run, epochs and outcome, the final choice
    markdown: Path
    csv: Path
    png: Path


class Workspace:
    """A competition workspace: `oof/` (runs, folds, sweeps, reports) and `submissions/`."""

    def __init__(self, root: str | Path = ".") -> None:
        self.root = Path(root)

    @property
    def oof(self) -> Path:
        return self.root / "oof"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    def _in_oof(self, *parts: str) -> Path:
        return inside(self.oof.joinpath(*parts), self.oof)

    @property
    def folds_dir(self) -> Path:
        return self._in_oof("folds")

    @property
    def sweeps_dir(self) -> Path:
        return self._in_oof("sweeps")

    @property
    def cv_dir(self) -> Path:
        return self._in_oof("cv")

    @property
    def data_check_png(self) -> Path:
        return self._in_oof("data-check", "samples.png")

    @property
    def drift_pngs(self) -> tuple[Path, Path]:
        """`fkaggle data drift`: pixel importances, and the most test-like training images."""
        return self._in_oof("data-check", "drift_importance.png"), self._in_oof("data-check", "drift_test_like.png")

    @property
    def tracking_db(self) -> Path:
        """MLflow's default store for `--track` (where `mlflow ui` run in the workspace looks)."""
        return self.root / "mlflow.db"

    @property
    def tracking_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def report_html(self) -> Path:
        """`fkaggle report`'s default page."""
        return self._in_oof("report.html")

    @property
    def drift_json(self) -> Path:
        """`fkaggle data drift`'s result (AUC, verdict), read by the report."""
        return self._in_oof("data-check", "drift.json")

    @property
    def duplicates_json(self) -> Path:
        """`fkaggle data check`'s repeated images (within train, within test, between them)."""
        return self._in_oof("data-check", "duplicates.json")

    @property
    def history_csv(self) -> Path:
        return inside(self.submissions / "history.csv", self.submissions)

    def fold_assignment(self, data_fingerprint: str, k: int, seed: int) -> tuple[Path, Path]:
        """The saved fold assignment (.npy) and its record (.json) for (data, k, seed)."""
        stem = self.folds_dir / f"{data_fingerprint[:16]}-k{k}-seed{seed}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def run(self, name: str) -> RunDir:
        return RunDir(self._in_oof(check_name(name, "run")), name)

    def run_names(self) -> list[str]:
        if not self.oof.is_dir():
            return []
        return sorted(p.name for p in self.oof.iterdir() if present(p / "manifest.json") and NAME.fullmatch(p.name))

    def find_run(self, ref: str) -> RunDir:
        """An existing run by name (`oof/NAME` and a trailing slash are accepted too)."""
        text = str(ref).rstrip("/")
        parts = Path(text).parts
        if len(parts) == 2 and parts[0] == "oof":
            text = parts[1]
        rd = self.run(text)
        if not rd.exists():
            names = self.run_names()
            close = difflib.get_close_matches(text, names, n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else (f" (runs here: {', '.join(names[:8])})" if names else "")
            )
            raise FkaggleError(f"no run {text!r} in {self.oof}{hint}")
        return rd

    def sweep(self, name: str) -> dict[str, Path]:
        check_name(name, "sweep")
        d = self.sweeps_dir
        return {
            "results": d / f"{name}.csv",
            "table": d / f"{name}_table.csv",
            "markdown": d / f"{name}.md",
            "png": d / f"{name}.png",
            "best": d / f"{name}_best.toml",
            "optuna": d / f"{name}.optuna.db",
        }

    def reproduction(self, name: str) -> dict[str, Path]:
        """`fkaggle reproduce`'s comparison of a report's tables with ours."""
        d, name = self._in_oof("reproduce"), check_name(name, "reproduction")
        return {"markdown": d / f"{name}.md", "csv": d / f"{name}.csv", "png": d / f"{name}.png"}

    @property
    def autopilot_root(self) -> Path:
        return self._in_oof("autopilot")

    @property
    def autopilot_speeds(self) -> Path:
        """Speeds the autopilot measured here, per machine and model setup (every session reuses them)."""
        return self._in_oof("autopilot", "speeds.json")

    @property
    def session_lock(self) -> Path:
        """`oof/.session.lock`: held by the one `fkaggle auto` session that may write this workspace."""
        return self.oof / ".session.lock"

    def autopilot(self, name: str) -> AutoFiles:
        d = self._in_oof("autopilot", check_name(name, "autopilot"))
        return AutoFiles(d / "state.json", d / "leaderboard.md", d / "leaderboard.csv", d / "leaderboard.png")

    def confusion_png(self, run: str) -> Path:
        return self.cv_dir / f"{check_name(run)}_confusion.png"

    def predictions_png(self, run: str) -> Path:
        return self.cv_dir / f"{check_name(run)}_predictions.png"

    def submission(self, name: str) -> SubmissionFiles:
        check_name(name, "submission")
        d = self.submissions
        return SubmissionFiles(
            *(inside(d / f"{name}{suffix}", d) for suffix in (".csv", ".json", ".test_logprobs.npy"))
        )

    def submission_named(self, file: str | None) -> SubmissionFiles | None:
        """The workspace's files for a submission known by file name only (an upload record, Kaggle's
        list), when that name is one of ours: a plain `NAME.csv`, never a path."""
        if not file or "/" in file or "\\" in file:
            return None
        return self.submission_for(self.submissions / file)

    def submission_for(self, path: Path) -> SubmissionFiles | None:
        """The workspace's files for a submission CSV, when that CSV lives in submissions/."""
        try:
            inside = path.resolve().parent == self.submissions.resolve()
        except OSError:
            return None
        if not inside or path.suffix != ".csv" or not NAME.fullmatch(path.stem) or path.stem.lower() in RESERVED:
            return None
        return self.submission(path.stem)

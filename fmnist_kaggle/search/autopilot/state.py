"""The autopilot's memory: `oof/autopilot/NAME/state.json` (docs/artifacts.md).

Every decision is written before it is acted on, so the same command resumes: its sessions (limit,
hardware, executor, wall and training seconds), each run it bought (a `RunRecord`: entry, width,
optimizer steps, seed, status, estimate, the seconds it trained, summed over sessions, and when it
finished, in its session's minutes), the choice and the submission. Nothing else is remembered.
The file is read key by key against these records: a hand-edited value of the wrong type, or an
order naming a run that is not there, is one line naming the file and the key.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import CorruptArtifact, present, read_json, utc_now
from fmnist_kaggle.storage.layout import AutoFiles
from fmnist_kaggle.storage.schemas import AUTOPILOT_STATE

SCHEMA = 2
DONE = ("complete",)
OPEN = ("training", "incomplete")  # bought, not finished: a later session finishes them first
STATUSES = (*DONE, *OPEN, "failed")


@dataclass
class RunRecord:
    """One run the autopilot bought: what it is (enough to train it again without the portfolio:
    `train`, the entry's settings) and how it went."""

    run: str
    entry: str
    status: str
    width: int | None = None
    model: str = ""
    steps: int = 0  # optimizer steps of each unit
    steps_per_epoch: int = 1
    epochs: int = 0
    fractional_epochs: float = 0.0
    seed: int = 0
    estimate_s: float = 0.0
    unit_estimate_s: float = 0.0
    expected_acc: float | None = None
    session: int = 0
    note: str = ""
    seconds: float = 0.0  # training wall time, summed over the sessions that trained it
    cv_acc: float | None = None
    cv_logloss: float | None = None
    test_acc: float | None = None
    minute: float | None = None  # when it finished, in its session's minutes
    train: dict[str, Any] | None = None  # the entry's training settings when it was bought
    folds_done: int | None = None  # an incomplete run assembled over its finished folds (partial)
    continues: str | None = None  # the finished run whose fold models its folds started from
    prior_epochs: float | None = None  # the epochs those models had trained

    def total_epochs(self) -> float:
        """The epochs its models trained: its own and, for a continuation, its start's."""
        return (self.prior_epochs or 0.0) + self.fractional_epochs

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class SessionRecord:
    """One `fkaggle auto` command: its limit, where it ran, and the seconds it used (saved as they pass)."""

    started: str
    time_limit_s: float
    hardware: str = ""
    executor: str = ""
    capacity: int = 1
    wall_s: float = 0.0
    train_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WORDS = {str: "text", int: "a whole number", float: "a number", dict: "a table", type(None): "null"}


def _admits(hint: Any, value: Any) -> bool:
    """Whether a JSON value fits a record field's type (numbers finite, whole numbers whole)."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = tuple(typing.get_origin(k) or k for k in kinds)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (
        (value is None and type(None) in kinds)
        or (float in kinds and number and math.isfinite(value))
        or (int in kinds and float not in kinds and number and isinstance(value, int))
        or any(k in (str, dict) and isinstance(value, k) for k in kinds)
    )


def _typed(cls: type, raw: Any, where: str, path: Any) -> Any:
    """A record from its JSON object, each key checked against the field's type (one line naming it)."""
    if not isinstance(raw, dict):
        raise FkaggleError(f"{where} must be an object, got {raw!r:.60}", path)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in raw and not _admits(hints[f.name], raw[f.name]):
            kinds = typing.get_args(hints[f.name]) or (hints[f.name],)
            want = " or ".join(_WORDS.get(typing.get_origin(k) or k, str(k)) for k in kinds)
            raise FkaggleError(f"{where}.{f.name} must be {want}, got {raw[f.name]!r:.60}", path)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    lacking = [k for k in required if k not in raw]
    if lacking:
        raise FkaggleError(f"{where} lacks {', '.join(lacking)}", path)
    return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@dataclass
class AutopilotState:
    """The state of one autopilot (NAME): its identity, sessions, runs in order, and what it chose."""

    files: AutoFiles
    identity: dict[str, Any]  # schema, name, the data, test and fold fingerprints it was made on
    sessions: list[SessionRecord] = field(default_factory=list)
    runs: dict[str, RunRecord] = field(default_factory=dict)  # in the order they were bought
    extra: dict[str, Any] = field(default_factory=dict)  # choice, stopped, submission, uploaded, final_s, upload_s
    committed: bool = False  # written once a run has started (or a state existed): a refused session writes nothing
    wall: Callable[[], float] | None = None  # the current session's elapsed seconds, saved with every write

    @classmethod
    def open(cls, files: AutoFiles, name: str, fingerprints: dict[str, Any]) -> AutopilotState:
        """The state of autopilot NAME on this data (a new one if there is none)."""
        if not present(files.state):
            return cls(files, {"schema": SCHEMA, "name": name, **fingerprints})
        try:
            data = read_json(files.state, "autopilot state", AUTOPILOT_STATE)
        except CorruptArtifact as exc:
            raise FkaggleError(f"{exc}; delete {files.state.parent} or choose another --name") from None
        for key, value in fingerprints.items():
            if data.get(key) != value:
                what = key.removesuffix("_fingerprint").replace("_", " ")
                raise FkaggleError(
                    f"made on other {what} ({key}); choose another --name (or delete {files.state.parent})", files.state
                )
        return cls.from_dict(files, data)

    @classmethod
    def from_dict(cls, files: AutoFiles, data: dict[str, Any]) -> AutopilotState:
        path = files.state
        order = data["order"]
        missing = [name for name in order if name not in data["runs"]]
        if missing or len(set(order)) != len(order) or set(data["runs"]) - set(order):
            raise FkaggleError(f"order must name each run of runs once (it names {missing or order})", path)
        runs = {name: _typed(RunRecord, data["runs"][name], f"runs.{name}", path) for name in order}
        for name, rec in runs.items():
            if rec.run != name or rec.status not in STATUSES:
                raise FkaggleError(f"runs.{name}: run {rec.run!r} with status {rec.status!r}", path)
        sessions = [_typed(SessionRecord, s, f"sessions[{i}]", path) for i, s in enumerate(data["sessions"])]
        known = {"schema", "name", "sessions", "runs", "order", *EXTRA}
        identity = {k: v for k, v in data.items() if k not in known or k in ("schema", "name")}
        extra = {k: data[k] for k in EXTRA if k in data}
        for key in ("final_s", "upload_s"):
            if key in extra and (isinstance(extra[key], bool) or not isinstance(extra[key], (int, float))):
                raise FkaggleError(f"{key} must be a number, got {extra[key]!r:.60}", path)
        return cls(files, identity, sessions, runs, extra, committed=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.identity,
            "sessions": [s.to_dict() for s in self.sessions],
            "runs": {name: rec.to_dict() for name, rec in self.runs.items()},
            "order": list(self.runs),
            **self.extra,
        }

    def save(self) -> None:
        if self.committed:
            if self.wall is not None and self.sessions:
                self.session.wall_s = round(self.wall(), 1)
            atomic.write_json(self.files.state, self.to_dict())

    def commit(self) -> None:
        """The first run starts: from now on the session's decisions are on disk."""
        if not self.committed:
            self.committed = True
            self.files.state.parent.mkdir(parents=True, exist_ok=True)
            self.save()

    # -- sessions

    def start_session(self, wall: Callable[[], float], **values: Any) -> SessionRecord:
        self.sessions.append(SessionRecord(started=utc_now(), **values))
        self.wall = wall
        return self.session

    @property
    def session(self) -> SessionRecord:
        return self.sessions[-1]

    @property
    def session_index(self) -> int:
        return len(self.sessions) - 1

    def totals(self) -> dict[str, float]:
        """Wall and training seconds over every session, this one included."""
        return {k: round(sum(getattr(s, k) for s in self.sessions), 1) for k in ("wall_s", "train_s")}

    # -- runs

    def runs_with(self, *statuses: str) -> list[RunRecord]:
        return [r for r in self.runs.values() if not statuses or r.status in statuses]

    def record(self, run: str, **values: Any) -> RunRecord:
        """Create or update a run's record (a new one needs `entry` and `status`), then save."""
        rec = self.runs.get(run) or RunRecord(run, values["entry"], values["status"])
        for key, value in values.items():
            setattr(rec, key, value)
        self.runs[run] = rec
        self.save()
        return rec

    def add_seconds(self, run: str, seconds: float) -> None:
        """Training wall time of a run, summed over the sessions that trained it (and the session's)."""
        rec = self.runs[run]
        rec.seconds = round(rec.seconds + seconds, 1)
        self.session.train_s = round(self.session.train_s + seconds, 1)
        self.save()

    def purchases(self, entry: str) -> int:
        """Runs of the entry bought so far (in every session)."""
        return sum(r.entry == entry for r in self.runs.values())

    def complete_runs(self) -> list[str]:
        return [r.run for r in self.runs_with(*DONE)]

    def partial_runs(self) -> list[str]:
        """Incomplete runs assembled over their finished folds: scored alone, never blended."""
        return [r.run for r in self.runs_with("incomplete") if r.folds_done]

    def finished(self) -> list[RunRecord]:
        """The complete runs no later run continues: what a purchase may continue."""
        continued = {r.continues for r in self.runs.values()}
        return [r for r in self.runs_with(*DONE) if r.run not in continued]

    def scored_runs(self) -> list[str]:
        """What the choice is made among: the complete runs, then the partial ones."""
        return self.complete_runs() + self.partial_runs()


EXTRA = ("choice", "stopped", "submission", "uploaded", "final_s", "upload_s")

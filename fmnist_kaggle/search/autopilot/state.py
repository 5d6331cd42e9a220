"""The autopilot's memory: `oof/autopilot/NAME/state.json` (docs/artifacts.md).

Every decision is written before it is acted on, so the same command resumes: its sessions (limit,
hardware, executor, wall and training seconds), each run it bought (entry, width, optimizer
steps, seed, status, estimate, the seconds it trained, summed over sessions, and when it finished,
in its session's minutes), the choice and the submission. Nothing else is remembered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import CorruptArtifact, present, read_json, utc_now
from fmnist_kaggle.storage.layout import AutoFiles
from fmnist_kaggle.storage.schemas import AUTOPILOT_STATE

SCHEMA = 2
DONE = ("complete",)
OPEN = ("training", "incomplete")  # bought, not finished: a later session finishes them first


@dataclass
class AutopilotState:
    files: AutoFiles
    data: dict[str, Any]
    committed: bool = False  # written once a run has started (or a state existed): a refused session writes nothing
    session: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, files: AutoFiles, name: str, fingerprints: dict[str, Any]) -> AutopilotState:
        """The state of autopilot NAME on this data (a new one if there is none)."""
        if not present(files.state):
            data = {"schema": SCHEMA, "name": name, **fingerprints, "sessions": [], "runs": {}, "order": []}
            return cls(files, data)
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
        return cls(files, data, committed=True)

    def save(self) -> None:
        if self.committed:
            atomic.write_json(self.files.state, self.data)

    def commit(self) -> None:
        """The first run starts: from now on the session's decisions are on disk."""
        if not self.committed:
            self.committed = True
            self.files.state.parent.mkdir(parents=True, exist_ok=True)
            self.save()

    # -- sessions

    def start_session(self, **fields: Any) -> dict[str, Any]:
        self.session = {"started": utc_now(), "wall_s": 0.0, "train_s": 0.0, **fields}
        self.data["sessions"].append(self.session)
        return self.session

    @property
    def session_index(self) -> int:
        return len(self.data["sessions"]) - 1

    def totals(self) -> dict[str, float]:
        """Wall and training seconds over every session, this one included."""
        sessions = self.data["sessions"]
        return {k: round(sum(s.get(k, 0.0) for s in sessions), 1) for k in ("wall_s", "train_s")}

    # -- runs

    def runs(self, *statuses: str) -> list[dict[str, Any]]:
        recs = [self.data["runs"][n] for n in self.data["order"]]
        return [r for r in recs if not statuses or r["status"] in statuses]

    def record(self, run: str, **fields: Any) -> dict[str, Any]:
        rec = self.data["runs"].setdefault(run, {"run": run, "seconds": 0.0})
        rec.update(fields)
        if run not in self.data["order"]:
            self.data["order"].append(run)
        self.save()
        return rec

    def add_seconds(self, run: str, seconds: float) -> None:
        """Training wall time of a run, summed over the sessions that trained it (and the session's)."""
        rec = self.data["runs"][run]
        rec["seconds"] = round(rec.get("seconds", 0.0) + seconds, 1)
        self.session["train_s"] = round(self.session.get("train_s", 0.0) + seconds, 1)
        self.save()

    def purchases(self, entry: str) -> int:
        """Runs of the entry bought so far (in every session)."""
        return len([r for r in self.data["runs"].values() if r["entry"] == entry])

    def complete_runs(self) -> list[str]:
        return [r["run"] for r in self.runs(*DONE)]

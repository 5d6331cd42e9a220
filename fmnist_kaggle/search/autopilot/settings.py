"""What a user asks of one autopilot session: one settings object shared by `fkaggle auto`,
`fmnist_kaggle.auto` and `--show-plan`, so the three cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AutoSettings:
    """A session's settings besides the data and the executor. `time_limit` is in seconds
    (`durations.parse_duration` reads '20m'), counted from `started` (a `time.monotonic()`
    value: the command's start; default: when the session opens)."""

    time_limit: float = 1200.0
    name: str = "auto"
    folds: int = 5
    subset: int = 0  # a stratified subset of N training rows (0: all)
    device: str | None = None
    amp: str | None = None
    portfolio: str | Path | None = None  # a portfolio TOML replacing the packaged one
    frontier: str | Path | None = None  # a time-to-accuracy table replacing the packaged one
    workdir: str | Path = "."
    submit_message: str | None = None  # upload the choice with this message (needs a slug)
    slug: str | None = None
    progress: bool = True
    started: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more training settings for every run

    @property
    def submitting(self) -> bool:
        return self.submit_message is not None

    def train(self) -> dict[str, Any]:
        """The training settings every run of the session gets on top of its entry's."""
        return {"folds": self.folds, "subset": self.subset, "device": self.device, "amp": self.amp, **self.extra}

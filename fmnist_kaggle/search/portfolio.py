"""The autopilot's portfolio: an ordered table of training configs per kind of hardware.

Data, not code paths (`portfolio.toml`, package data): a user reads it with
`fkaggle auto --show-plan` and replaces it with `--portfolio FILE`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import files
from fmnist_kaggle.storage.layout import check_name
from fmnist_kaggle.training.config import FIELDS, TrainConfig, build_config

HARDWARE = ("cpu", "cpu-bf16", "cuda")
_KEYS = {"name", "hardware", "train", "min_epochs", "comparable", "why"}
DEFAULT = resources.files("fmnist_kaggle") / "search" / "portfolio.toml"


@dataclass(frozen=True)
class Entry:
    name: str
    hardware: tuple[str, ...]
    train: dict[str, Any]  # build_config keywords: recipe and overrides
    min_epochs: int
    comparable: bool  # a blend partner: needs the epochs of the best finished run
    why: str

    def config(self, epochs: int | None = None, **speed: Any) -> TrainConfig:
        """The entry's training config; `epochs` sizes it (default: its most), `speed` adds
        settings that change speed only (device, amp)."""
        values = {
            **self.train,
            **({"epochs": epochs} if epochs is not None else {}),
            **{k: v for k, v in speed.items() if v is not None},
        }
        return build_config(**values)

    @property
    def max_epochs(self) -> int:
        return self.config().epochs


def hardware_kind(device: str, native_bf16: bool) -> str:
    """'cuda', 'cpu-bf16' or 'cpu': which rows of the portfolio apply."""
    return "cuda" if device.startswith("cuda") else "cpu-bf16" if native_bf16 else "cpu"


def load_portfolio(path: str | Path | None = None) -> list[Entry]:
    """The entries of the packaged portfolio, or of a user's file in the same format."""
    where = Path(str(path or DEFAULT))
    text = files.read_text(where, "portfolio", limit=1 << 20) if path else DEFAULT.read_text(encoding="utf-8")
    try:
        rows = tomllib.loads(text).get("entry")
    except tomllib.TOMLDecodeError as exc:
        raise FkaggleError(f"invalid TOML ({exc})", where) from None
    if not isinstance(rows, list) or not rows:
        raise FkaggleError("no [[entry]] tables (see fmnist_kaggle/search/portfolio.toml)", where)
    entries = [_entry(row, where) for row in rows]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise FkaggleError(f"entry names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}", where)
    return entries


def _entry(row: Any, where: Path) -> Entry:
    if not isinstance(row, dict) or set(row) - _KEYS or "name" not in row or "train" not in row:
        raise FkaggleError(
            f"each [[entry]] needs name and train, and only {', '.join(sorted(_KEYS))}; got {row!r:.120}", where
        )
    name, train = str(row["name"]), row["train"]
    try:
        check_name(name, "portfolio entry")
        if not isinstance(train, dict) or set(train) - set(FIELDS):
            unknown = ", ".join(sorted(set(train) - set(FIELDS))) if isinstance(train, dict) else repr(train)
            raise FkaggleError(f"train must be a table of training settings; unknown: {unknown}")
        hardware = tuple(row.get("hardware", HARDWARE))
        if not hardware or set(hardware) - set(HARDWARE):
            raise FkaggleError(f"hardware must name some of {', '.join(HARDWARE)}, got {list(hardware)}")
        min_epochs = row.get("min_epochs", 1)
        if not isinstance(min_epochs, int) or isinstance(min_epochs, bool) or min_epochs < 1:
            raise FkaggleError(f"min_epochs must be a positive integer, got {min_epochs!r}")
        entry = Entry(
            name, hardware, dict(train), min_epochs, bool(row.get("comparable", False)), str(row.get("why", ""))
        )
        if entry.max_epochs < min_epochs:
            raise FkaggleError(f"its epochs ({entry.max_epochs}) are fewer than min_epochs ({min_epochs})")
    except FkaggleError as exc:
        raise FkaggleError(f"entry {name!r}: {exc}", where) from None
    return entry


def for_hardware(entries: list[Entry], kind: str) -> list[Entry]:
    chosen = [e for e in entries if kind in e.hardware]
    if not chosen:
        raise FkaggleError(f"the portfolio has no entry for {kind} hardware")
    return chosen

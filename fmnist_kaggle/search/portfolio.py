"""The autopilot's portfolio: model families per kind of hardware and size of data, each with a
width knob, and the evidence of which width and length win per second (the frontier).

Data, not code paths: `portfolio.toml` (what can be trained) and `frontier.toml` (held-out
accuracy per entry, width and training length, measured on the real data by bench/frontier.py),
package data a user reads with `fkaggle auto --show-plan` and replaces with `--portfolio FILE`.
"""

from __future__ import annotations

import math
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
_SESSION_KEYS = {"folds", "subset"}  # `fkaggle auto --folds/--subset`: one split for the whole session
_KEYS = {"name", "hardware", "rows", "train", "widths", "epochs", "min_epochs", "runs", "why"}
DEFAULT = resources.files("fmnist_kaggle") / "search" / "portfolio.toml"
FRONTIER = resources.files("fmnist_kaggle") / "search" / "frontier.toml"


@dataclass(frozen=True)
class Entry:
    """A model family: a training config, the widths it may be built at, and the most and fewest
    epochs a run of it is worth (fractional: the last epoch may stop part-way)."""

    name: str
    hardware: tuple[str, ...]
    rows: tuple[int, float]  # training rows it is for: [low, high)
    train: dict[str, Any]  # build_config keywords: recipe and overrides
    widths: tuple[int, ...]  # model_kwargs.width choices; () = the config's model as it is
    epochs: float
    min_epochs: float
    why: str
    runs: int = 0  # the most runs of it one autopilot buys (0: as many as the time allows)

    def config(self, width: int | None = None, epochs: float | None = None, **extra: Any) -> TrainConfig:
        """The entry's config at `width`, sized to `epochs` (whole epochs, the last one cut by
        max_steps when the caller gives it), with `extra` settings (seeds, folds, device, amp...)."""
        values = {**self.train, **{k: v for k, v in extra.items() if v is not None}}
        if width is not None:
            values["model_kwargs"] = {**self.train.get("model_kwargs", {}), "width": width}
        values["epochs"] = max(1, math.ceil(epochs if epochs is not None else self.epochs))
        return build_config(**values)

    def fits_rows(self, rows: int) -> bool:
        return self.rows[0] <= rows < self.rows[1]

    def width_choices(self) -> tuple[int | None, ...]:
        """The widths a run may be built at (None: the config's model as it is)."""
        return self.widths or (None,)

    @property
    def first_seed(self) -> int:
        return int(self.train.get("seeds", [0])[0])


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _number(row: dict[str, Any], key: str, default: float) -> float:
    value = row.get(key, default)
    if not _is_number(value) or not 0 < value < 1e6:
        raise FkaggleError(f"{key} must be a positive number, got {value!r}")
    return float(value)


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
        if shared := sorted(_SESSION_KEYS & set(train)):
            # every run of a session is cut into the same folds, which its blends need; an entry's
            # own value would be silently replaced
            raise FkaggleError(f"{shared[0]} is the session's setting, not an entry's: give --{shared[0]}")
        hardware = tuple(row.get("hardware", HARDWARE))
        if not hardware or set(hardware) - set(HARDWARE):
            raise FkaggleError(f"hardware must name some of {', '.join(HARDWARE)}, got {list(hardware)}")
        widths = row.get("widths", [])
        if not isinstance(widths, list) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
        ):
            raise FkaggleError(f"widths must be a list of positive whole numbers, got {widths!r}")
        rows = row.get("rows", [0, math.inf])
        numbers = isinstance(rows, list) and len(rows) == 2 and all(_is_number(r) for r in rows)
        if not numbers or not (math.isfinite(rows[0]) and 0 <= rows[0] < rows[1]):
            raise FkaggleError(
                f"rows must be [LOW, HIGH] training rows, 0 <= LOW < HIGH (HIGH may be inf), got {rows!r}"
            )
        base = build_config(**train)  # a bad setting is named here, not when the run starts
        epochs = _number(row, "epochs", base.epochs)
        min_epochs = _number(row, "min_epochs", min(1.0, epochs))
        if min_epochs > epochs:
            raise FkaggleError(f"min_epochs ({min_epochs:g}) is more than epochs ({epochs:g})")
        runs = row.get("runs", 0)
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 0:
            raise FkaggleError(f"runs must be a whole number >= 0 (0: no limit), got {runs!r}")
        entry = Entry(
            name,
            hardware,
            (int(rows[0]), float(rows[1])),
            dict(train),
            tuple(sorted(widths)),
            epochs,
            min_epochs,
            str(row.get("why", "")),
            runs,
        )
    except FkaggleError as exc:
        raise FkaggleError(f"entry {name!r}: {exc}", where) from None
    return entry


def for_hardware(entries: list[Entry], kind: str, rows: int | None = None) -> list[Entry]:
    """The entries for this hardware (and, given `rows`, this size of data)."""
    chosen = [e for e in entries if kind in e.hardware and (rows is None or e.fits_rows(rows))]
    if not chosen:
        raise FkaggleError(f"the portfolio has no entry for {kind} hardware" + (f" and {rows} rows" if rows else ""))
    return chosen


# ----------------------------------------------------------------------------- which width and length win per second


FULL_ROWS = 48_000  # training rows of one fold of the official data: what a point without `rows` measured


@dataclass(frozen=True)
class Frontier:
    """Held-out accuracy of an entry's runs per (width, epochs), from one fold of the real data, at
    one or more sizes of data (training rows): small data has its own evidence."""

    points: dict[tuple[str, int], dict[int, list[tuple[float, float]]]]  # (entry, width) -> rows -> (epochs, acc)

    def widths(self, entry: str) -> set[int]:
        return {w for (e, w) in self.points if e == entry}

    def curve(self, entry: str, width: int, rows: int = FULL_ROWS) -> list[tuple[float, float]]:
        """The (epochs, accuracy) points measured for the width at the entry's measured data size
        nearest `rows`; none when this width was not measured at that size (a full-data curve
        says little of 4,000 rows)."""
        sizes = {r for (e, _), by_rows in self.points.items() if e == entry for r in by_rows}
        if not sizes:
            return []
        nearest = min(sizes, key=lambda r: abs(math.log(max(rows, 1) / r)))
        return (self.points.get((entry, width)) or {}).get(nearest, [])

    def accuracy(self, entry: str, width: int, epochs: float, rows: int = FULL_ROWS) -> float | None:
        """The expected held-out accuracy at `epochs` on `rows` training rows (the curve measured at
        the nearest size, interpolated in log epochs; flat past its longest run; below its shortest,
        its first two points' slope), None if unmeasured (or shorter than a curve's only point)."""
        pts = self.curve(entry, width, rows)
        if not pts:
            return None
        xs = [math.log2(e) for e, _ in pts]
        x = math.log2(max(epochs, 1e-3))
        if x >= xs[-1]:
            return pts[-1][1]
        if x <= xs[0]:
            if len(pts) == 1:
                return None  # no evidence of how much shorter runs lose
            slope = (pts[1][1] - pts[0][1]) / (xs[1] - xs[0])
            return max(0.0, pts[0][1] - slope * (xs[0] - x))
        i = next(i for i in range(1, len(xs)) if x <= xs[i])
        t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
        return pts[i - 1][1] + t * (pts[i][1] - pts[i - 1][1])


def load_frontier(path: str | Path | None = None) -> Frontier:
    """The packaged time-to-accuracy table (bench/frontier.py --write), or a file in its format;
    each point checked (one line naming the file and the point)."""
    where = Path(str(path or FRONTIER))
    text = files.read_text(where, "frontier", limit=1 << 20) if path else FRONTIER.read_text(encoding="utf-8")
    try:
        rows = tomllib.loads(text).get("point", [])
    except tomllib.TOMLDecodeError as exc:
        raise FkaggleError(f"invalid TOML ({exc})", where) from None
    points: dict[tuple[str, int], dict[int, list[tuple[float, float]]]] = {}
    for i, p in enumerate(rows if isinstance(rows, list) else [rows]):
        ok = isinstance(p, dict) and isinstance(p.get("entry", "fast"), str)
        ok = ok and isinstance(p.get("width"), int) and not isinstance(p.get("width"), bool) and p["width"] > 0
        ok = ok and _is_number(p.get("epochs")) and 0 < p["epochs"] < 1e6
        ok = ok and _is_number(p.get("val_acc")) and 0 <= p["val_acc"] <= 1
        rows_ = p.get("rows", FULL_ROWS) if isinstance(p, dict) else None
        ok = ok and isinstance(rows_, int) and not isinstance(rows_, bool) and rows_ > 0
        if not ok:
            raise FkaggleError(
                f"point {i + 1} must have entry (text), width (a whole number > 0), epochs (> 0), "
                f"val_acc (0..1) and optionally rows (training rows > 0), got {p!r:.100}",
                where,
            )
        curve = points.setdefault((p.get("entry", "fast"), p["width"]), {}).setdefault(rows_, [])
        curve.append((float(p["epochs"]), float(p["val_acc"])))
    return Frontier({k: {r: sorted(c) for r, c in v.items()} for k, v in points.items()})

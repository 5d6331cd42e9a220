"""Durations as people write and read them: `parse_duration('20m')` for every time limit, and
`duration(seconds)` for every time printed (estimates, clocks, stop reasons)."""

from __future__ import annotations

import math
import re

from fmnist_kaggle.errors import FkaggleError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float, option: str = "--time-limit") -> float:
    """'90s', '20m', '1.5h' (or plain seconds) -> seconds; anything else is one line naming `option`."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text))
    seconds = float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0
    if not m or not 0 < seconds < 1e7:
        raise FkaggleError(f"{option} expects a duration such as 90s, 20m or 1.5h, got {text!r}")
    return seconds


def duration(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour (negative durations read as 0:00)."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def duration_arg(seconds: float) -> str:
    """A --time-limit that covers `seconds`, as a person would type it: '90s' under 2 minutes, else whole minutes."""
    return f"{10 * math.ceil(seconds / 10)}s" if seconds < 120 else f"{math.ceil(seconds / 60)}m"

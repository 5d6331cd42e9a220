"""`fkaggle auto`: the best submission a time budget can buy, on any machine and any data size.

One module per part: `settings` (what a user asks), `timing` (the time model: pure), `state`
(the memory, typed records), `speeds` (measured once on the executor and kept), `menu` (what can
be bought here, at what speed), `policy` (the decisions: pure, tested with made-up speeds and
clocks), `buying` (buying and resuming runs), `watch` (runs as they train), `finish` (the choice
and the submission), `leaderboard`, `plan` (`--show-plan` in words), `session` (what the parts
share) and `run` (the orchestration).
"""

from fmnist_kaggle.durations import parse_duration as parse_time_limit
from fmnist_kaggle.search.autopilot.leaderboard import COLUMNS
from fmnist_kaggle.search.autopilot.run import run_auto, show_plan
from fmnist_kaggle.search.autopilot.settings import AutoSettings

__all__ = ["COLUMNS", "AutoSettings", "parse_time_limit", "run_auto", "show_plan"]

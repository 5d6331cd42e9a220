"""`fkaggle auto`: the best submission a time budget can buy, on any machine and any data size.

One module each for the autopilot's memory (`state`), the speeds it measures and keeps (`speeds`),
its decisions (`policy`: pure, tested with made-up speeds and clocks), its leaderboard
(`leaderboard`) and the session that ties them to the executor (`session`).
"""

from fmnist_kaggle.search.autopilot.leaderboard import COLUMNS
from fmnist_kaggle.search.autopilot.session import parse_time_limit, plan_table, run_auto, show_plan

__all__ = ["COLUMNS", "parse_time_limit", "plan_table", "run_auto", "show_plan"]

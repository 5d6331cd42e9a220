"""Log lines on stderr that never start on a progress bar's line: written through `tqdm.write`,
which clears the bars, prints the line and draws them again (the CLI's and the Python API's)."""

from __future__ import annotations

import logging
import sys


class BarSafeHandler(logging.StreamHandler):
    """A stderr handler that writes each record on its own line above any progress bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm  # light, but only needed once something logs

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001  (logging must never raise)
            self.handleError(record)

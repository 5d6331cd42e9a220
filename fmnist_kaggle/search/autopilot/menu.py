"""What can be bought here: each portfolio entry at each of its widths, with its speed measured on
the executor that trains the units (or kept from an earlier session on this machine). Widths are
timed narrowest first and only as far as the time could buy: a short budget times only what it
can buy. An option whose run failed is not offered again this session."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.policy import Budget, Option
from fmnist_kaggle.search.autopilot.speeds import SpeedBook, sample
from fmnist_kaggle.search.portfolio import Entry
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.estimate import Throughput

log = logging.getLogger(__name__)


class Menu:
    """The options measured so far, keyed by (entry name, width)."""

    def __init__(
        self,
        open_book: Callable[[], SpeedBook],
        measure: Callable[[TrainConfig], Throughput],
        settings: dict,
        where: Callable[[], str] = str,
    ) -> None:
        self.open_book, self.measure, self.settings, self.where = open_book, measure, settings, where
        self._book: SpeedBook | None = None
        self.options: dict[tuple[str, int | None], Option] = {}
        self.failed: set[tuple[str, int | None]] = set()

    @property
    def book(self) -> SpeedBook:
        """The kept speeds, opened on first use (a Ray cluster is asked what it is only then)."""
        if self._book is None:
            self._book = self.open_book()
        return self._book

    def option(self, entry: Entry, width: int | None) -> Option:
        """The entry at `width` with its speed: kept here before, else measured now (and kept)."""
        key = (entry.name, width)
        if key not in self.options:
            cfg = entry.config(width, **self.settings)
            speed = self.book.get(cfg)
            if speed is None:
                speed = self.measure(cfg)
                self.book.put(cfg, speed, "measured")
                log.info(
                    f"{self.where()} {entry.name}{f' width {width}' if width else ''}: {speed.train_ips:,.0f} "
                    f"training img/s, {speed.predict_ips:,.0f} predicted img/s ({speed.precision} on {speed.device})"
                )
            self.options[key] = Option(entry, width, speed)
        return self.options[key]

    def candidates(self, entries: list[Entry], budget: Budget, seconds: float) -> list[Option]:
        """Each entry's widths, narrowest first, measured until one cannot fit its shortest run in
        `seconds` (wider ones are slower still)."""
        out = []
        for entry in entries:
            for width in entry.width_choices():
                if (entry.name, width) in self.failed:
                    continue
                opt = self.option(entry, width)
                out.append(opt)
                if policy.longest_fit(opt, budget, seconds) is None:
                    break
        return out

    def measured(self) -> list[Option]:
        """The options measured so far that have not failed (nothing is timed anew)."""
        return [o for key, o in self.options.items() if key not in self.failed]

    def fail(self, entry: str, width: int | None) -> None:
        self.failed.add((entry, width))


def measure_on(executor, train) -> Callable[[TrainConfig], Throughput]:  # noqa: ANN001
    """A config's speed measured on `executor` (where its units train) on the sample rows of `train`."""

    def measure(cfg: TrainConfig) -> Throughput:
        x, y = sample(train.images, train.labels)
        return executor.measure(cfg, x, y, train.num_classes)

    return measure

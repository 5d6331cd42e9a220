"""What can be bought here: each portfolio entry at each of its widths, with its speed measured on
the executor that trains the units (or kept from an earlier session on this machine). The setups
not kept yet are measured together, in one interleaved probe, so they share the machine's noise:
a busy first minute slows them all alike, and the first unit's correction fixes them all. An
option whose run failed is not offered again this session."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fmnist_kaggle.search.autopilot.policy import Option
from fmnist_kaggle.search.autopilot.speeds import SpeedBook, new_probe_id, sample
from fmnist_kaggle.search.portfolio import Entry
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.estimate import Throughput

log = logging.getLogger(__name__)


class Menu:
    """The options known so far, keyed by (entry name, width)."""

    def __init__(
        self,
        open_book: Callable[[], SpeedBook],
        measure: Callable[[list[TrainConfig]], list[Throughput]],
        settings: dict,
        where: Callable[[], str] = str,
    ) -> None:
        self.open_book, self.measure, self.settings, self.where = open_book, measure, settings, where
        self._book: SpeedBook | None = None
        self.options: dict[tuple[str, int | None], Option] = {}
        self.failed: set[tuple[str, int | None]] = set()
        self.probe_id: str | None = None

    @property
    def book(self) -> SpeedBook:
        """The kept speeds, opened on first use (a Ray cluster is asked what it is only then)."""
        if self._book is None:
            self._book = self.open_book()
        return self._book

    def config(self, entry: Entry, width: int | None) -> TrainConfig:
        return entry.config(width, **self.settings)

    def prepare(self, entries: list[Entry], fits: Callable[[Option], bool] | None = None) -> None:
        """Every width of these entries as an option; the speeds not kept (or due another look)
        measured in interleaved probes. With `fits`, each entry's narrowest width is probed
        first, and a wider one only when its run could fit at that speed (wider is slower, so a
        width that cannot fit then is never timed)."""
        wanted = [(e, w) for e in entries for w in e.width_choices() if (e.name, w) not in self.options]
        if fits is None:
            self._probe(wanted)
            return
        narrowest = {e.name: min(e.width_choices(), key=lambda w: w or 0) for e in entries}
        self._probe([(e, w) for e, w in wanted if w == narrowest[e.name]])
        floor = {e.name: self.book.get(self.config(e, narrowest[e.name])) for e in entries}
        wider = [(e, w) for e, w in wanted if w != narrowest[e.name]]
        self._probe([(e, w) for e, w in wider if fits(_at_best(Option(e, w, floor[e.name]), narrowest[e.name]))])

    def _probe(self, wanted: list[tuple[Entry, int | None]]) -> None:
        todo = [(e, w) for e, w in wanted if self.book.needs_probe(self.config(e, w))]
        if todo:
            cfgs = [self.config(e, w) for e, w in todo]
            speeds = self.measure(cfgs)
            self.probe_id = self.probe_id or new_probe_id()  # this session's looks: corrected together
            self.book.put_probe(zip(cfgs, speeds, strict=True), self.probe_id)
            for (e, w), speed in zip(todo, speeds, strict=True):
                log.info(
                    f"{self.where()} {e.name}{f' width {w}' if w else ''}: {speed.train_ips:,.0f} training img/s, "
                    f"{speed.predict_ips:,.0f} predicted img/s ({speed.precision} on {speed.device})"
                )
        for e, w in wanted:
            self.options[(e.name, w)] = Option(e, w, self.book.get(self.config(e, w)))

    def speed(self, cfg: TrainConfig) -> Throughput:
        """The kept speed of a setup, measured now when there is none (a run bought from an entry
        this session does not offer)."""
        if self.book.get(cfg) is None:
            self.book.put_probe([(cfg, self.measure([cfg])[0])])
        return self.book.get(cfg)

    def option(self, entry: Entry, width: int | None) -> Option:
        self.prepare([entry])
        return self.options[(entry.name, width)]

    def refresh(self) -> None:
        """The options with the kept speeds as they are now (after a unit corrected some)."""
        for key, o in self.options.items():
            self.options[key] = Option(o.entry, o.width, self.book.get(self.config(o.entry, o.width)) or o.speed)

    def candidates(self, entries: list[Entry], fits: Callable[[Option], bool] | None = None) -> list[Option]:
        """The options of these entries that have not failed (measured first where needed; with
        `fits`, only those that could fit: see `prepare`)."""
        self.prepare(entries, fits)
        names = {e.name for e in entries}
        return [o for key, o in self.options.items() if key[0] in names and key not in self.failed]

    def measured(self) -> list[Option]:
        """The options known so far that have not failed (nothing is timed anew)."""
        return [o for key, o in self.options.items() if key not in self.failed]

    def fail(self, entry: str, width: int | None) -> None:
        self.failed.add((entry, width))


def measure_on(executor: Any, train: Any) -> Callable[[list[TrainConfig]], list[Throughput]]:
    """Configs' speeds measured on `executor` (where their units train) on the sample rows of `train`."""

    def measure(cfgs: list[TrainConfig]) -> list[Throughput]:
        x, y = sample(train.images, train.labels)
        return executor.measure(cfgs, x, y, train.num_classes)

    return measure


def _at_best(option: Option, narrow: int | None) -> Option:
    """A wider width with its speed at best: the narrow width's over the width ratio (on 2-core
    CPUs `fast` slows 2.2x from width 8 to 16 and 1.8x from 24 to 32: never less than linearly)."""
    ratio = (narrow or 1) / (option.width or 1)
    speed = replace(
        option.speed, train_ips=option.speed.train_ips * ratio, predict_ips=option.speed.predict_ips * ratio
    )
    return Option(option.entry, option.width, speed)

"""Speeds measured once, on the executor that trains the units, and kept for later sessions.

Each model setup (the config fields that change speed) is timed on a few real steps where its
units will train (this process, or a Ray worker with a unit's resources) and the result is kept
in `oof/autopilot/speeds.json` per machine: a later session on the same machine reuses it instead
of timing again. A finished unit's own training speed corrects the kept one when the two differ
by more than `DRIFT` (the machine got busier or quieter), so estimates follow the machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import CorruptArtifact, present, read_json, utc_now
from fmnist_kaggle.storage.schemas import AUTOPILOT_SPEEDS
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.estimate import Throughput

log = logging.getLogger(__name__)
DRIFT = 0.2  # a unit's own speed this far from the kept one replaces it
SAMPLE_ROWS = 2048  # rows a speed is measured on


class SpeedBook:
    """The kept speeds of one workspace, for one machine (or cluster) key."""

    def __init__(self, path: Path, machine: str, writable: bool = True) -> None:
        self.path, self.machine, self.writable = path, machine, writable
        self.data = self._read()
        self.dirty = False

    def _read(self) -> dict[str, Any]:
        if not present(self.path):
            return {"schema": 1, "machines": {}}
        try:
            return read_json(self.path, "autopilot speeds", AUTOPILOT_SPEEDS)
        except CorruptArtifact as exc:
            log.warning(f"{exc}; speeds are measured again")
            return {"schema": 1, "machines": {}}

    def get(self, cfg: TrainConfig) -> Throughput | None:
        rec = self.data["machines"].get(self.machine, {}).get(cfg.speed_key())
        if rec is None:
            return None
        return Throughput(
            float(rec["train_ips"]),
            float(rec["predict_ips"]),
            rec.get("device", "cpu"),
            rec.get("precision", "float32"),
        )

    def put(self, cfg: TrainConfig, speed: Throughput, source: str) -> None:
        entry = {
            **speed.to_dict(),
            "model": cfg.model,
            "model_kwargs": cfg.model_kwargs,
            "source": source,
            "at": utc_now(),
        }
        self.data["machines"].setdefault(self.machine, {})[cfg.speed_key()] = entry
        self.dirty = True
        self.save()

    def save(self) -> None:
        """Written once the session has its folder (a refused session writes nothing)."""
        if self.dirty and self.writable and self.path.parent.is_dir():
            atomic.write_json(self.path, self.data)
            self.dirty = False

    def observe(self, cfg: TrainConfig, unit_train_ips: float) -> bool:
        """A finished unit's training speed: kept instead when it differs by more than DRIFT."""
        kept = self.get(cfg)
        if kept is None or unit_train_ips <= 0 or abs(unit_train_ips / kept.train_ips - 1) <= DRIFT:
            return False
        log.info(
            f"{cfg.model} {cfg.model_kwargs}: units train at {unit_train_ips:,.0f} img/s, "
            f"{kept.train_ips:,.0f} was kept; using theirs"
        )
        self.put(cfg, Throughput(round(unit_train_ips, 1), kept.predict_ips, kept.device, kept.precision), "a unit")
        return True


def sample(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAMPLE_ROWS evenly drawn rows (fixed seed): what every speed is measured on."""
    rows = np.sort(np.random.default_rng(0).permutation(len(images))[:SAMPLE_ROWS])
    return images[rows], labels[rows]

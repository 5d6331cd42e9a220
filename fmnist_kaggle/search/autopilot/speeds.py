"""Speeds measured on the executor that trains the units, kept for later sessions, corrected by units.

Each model setup (the config fields that change speed: `TrainConfig.speed_key`) is timed on a few
real steps where its units will train (this process, or a Ray worker with a unit's resources),
every setup of a probe interleaved with the others, so a busy moment slows them alike. Kept in
`oof/autopilot/speeds.json` per machine, each speed with its source and age:
- a probe's speed (`source: probe`) is one look; a later session looks once more and keeps the
  faster of the two (load on a shared machine only ever slows a look);
- a finished unit's own training speed replaces a kept one when they differ by more than DRIFT
  (`source: unit`, trusted from then on), and the speeds probed with it are corrected by the same
  factor (they shared the probe's noise);
- a unit's fixed cost (setup, checkpoints, writes: its seconds besides training and predicting)
  is kept with its speed, for the time model.
A kept speed that is not a plausible number (not finite, or outside SANE_IPS) is discarded with a
warning and measured again.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterable
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
SANE_IPS = (0.5, 1e7)  # images per second a kept speed may claim
SANE_FIXED_S = (0.0, 3600.0)  # seconds a unit's fixed cost may claim
SPEEDS = ("train_ips", "predict_ips", "refresh_ips")  # one machine's speeds: a unit's drift scales them alike
LOOKS = 2  # probes of a speed no unit has confirmed, across sessions, before it is trusted as it is


def _sane(rec: Any) -> bool:
    if not isinstance(rec, dict):
        return False
    numbers = [rec.get("train_ips"), rec.get("predict_ips")] + ([rec["refresh_ips"]] if rec.get("refresh_ips") else [])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        return False
    fixed = rec.get("fixed_s", 1.0)
    fixed_ok = isinstance(fixed, (int, float)) and math.isfinite(fixed) and SANE_FIXED_S[0] <= fixed <= SANE_FIXED_S[1]
    return all(SANE_IPS[0] <= v <= SANE_IPS[1] for v in numbers) and fixed_ok


class SpeedBook:
    """The kept speeds of one workspace, for one machine (or cluster) key."""

    def __init__(self, path: Path, machine: str, writable: bool = True) -> None:
        self.path, self.machine, self.writable = path, machine, writable
        self.opened = utc_now()  # speeds probed before this came from an earlier session
        self.data = self._read()
        self.dirty = False

    def _read(self) -> dict[str, Any]:
        if not present(self.path):
            return {"schema": 1, "machines": {}}
        try:
            data = read_json(self.path, "autopilot speeds", AUTOPILOT_SPEEDS)
        except CorruptArtifact as exc:
            log.warning(f"{exc}; speeds are measured again")
            return {"schema": 1, "machines": {}}
        for machine, recs in data["machines"].items():
            bad = [key for key, rec in recs.items() if not _sane(rec)]
            for key in bad:
                del recs[key]
            if bad:
                log.warning(f"{self.path}: {len(bad)} kept speed(s) of {machine} are not plausible; measured again")
        return data

    @property
    def kept(self) -> dict[str, dict[str, Any]]:
        return self.data["machines"].setdefault(self.machine, {})

    def get(self, cfg: TrainConfig) -> Throughput | None:
        rec = self.kept.get(cfg.speed_key())
        if rec is None:
            return None
        fixed = float(rec.get("fixed_s", Throughput.__dataclass_fields__["fixed_s"].default))
        device, precision = rec.get("device", "cpu"), rec.get("precision", "float32")
        refresh = float(rec.get("refresh_ips", 0.0))
        return Throughput(float(rec["train_ips"]), float(rec["predict_ips"]), device, precision, fixed, refresh)

    def needs_probe(self, cfg: TrainConfig) -> bool:
        """Not kept; or probed only, too few times, the last in an earlier session (one look under
        load must not rule later sessions)."""
        rec = self.kept.get(cfg.speed_key())
        if rec is None:
            return True
        looked_before = str(rec.get("at", "")) < self.opened
        return rec.get("source") == "probe" and int(rec.get("looks", 1)) < LOOKS and looked_before

    def put_probe(self, measured: Iterable[tuple[TrainConfig, Throughput]], probe: str | None = None) -> None:
        """One interleaved probe's speeds (they share its id, or `probe`: the looks one session
        takes in stages are siblings, corrected together); a speed probed before keeps the faster
        of its looks."""
        probe = probe or new_probe_id()
        for cfg, speed in measured:
            new = {**speed.to_dict(), "source": "probe", "probe": probe, "looks": 1}
            old = self.kept.get(cfg.speed_key())
            if old is not None and old.get("source") == "probe":
                new.update(
                    train_ips=max(speed.train_ips, old["train_ips"]),
                    predict_ips=max(speed.predict_ips, old["predict_ips"]),
                    refresh_ips=max(speed.refresh_ips, old.get("refresh_ips", 0.0)),
                    looks=int(old.get("looks", 1)) + 1,
                )
            self._put(cfg, new)

    def _put(self, cfg: TrainConfig, rec: dict[str, Any]) -> None:
        self.kept[cfg.speed_key()] = {**rec, "model": cfg.model, "model_kwargs": cfg.model_kwargs, "at": utc_now()}
        self.dirty = True
        self.save()

    def save(self) -> None:
        """Written once the session has its folder (a refused session writes nothing)."""
        if self.dirty and self.writable and self.path.parent.is_dir():
            atomic.write_json(self.path, self.data)
            self.dirty = False

    def observe(self, cfg: TrainConfig, unit_train_ips: float, unit_fixed_s: float | None = None) -> float | None:
        """A unit's own training speed (and fixed cost): when the speed differs from the kept one by
        more than DRIFT it is kept instead, and the speeds probed with it are scaled by the same
        factor. Returns that factor (None: nothing corrected)."""
        key = cfg.speed_key()
        rec = self.kept.get(key)
        if rec is None or unit_train_ips <= 0:
            return None
        if unit_fixed_s is not None and SANE_FIXED_S[0] <= unit_fixed_s <= SANE_FIXED_S[1]:
            self._put(cfg, {**rec, "fixed_s": round(unit_fixed_s, 2)})
            rec = self.kept[key]
        factor = unit_train_ips / rec["train_ips"]
        if abs(factor - 1) <= DRIFT:
            return None
        log.info(
            f"{cfg.model} {cfg.model_kwargs}: units train at {unit_train_ips:,.0f} img/s, "
            f"{rec['train_ips']:,.0f} was kept; using theirs (and x{factor:.2f} for the speeds probed with it)"
        )
        for other_key, other in self.kept.items():
            if other_key != key and other.get("source") == "probe" and other.get("probe") == rec.get("probe"):
                scaled = {k: round(other[k] * factor, 1) for k in SPEEDS if k in other}
                self.kept[other_key] = {**other, **scaled, "source": "probe, corrected by a unit", "at": utc_now()}
        scaled = {k: round(rec[k] * factor, 1) for k in SPEEDS[1:] if k in rec}
        self._put(cfg, {**rec, **scaled, "train_ips": round(unit_train_ips, 1), "source": "unit"})
        return factor


def new_probe_id() -> str:
    return f"{utc_now()} {secrets.token_hex(4)}"  # unique: two probes in one second are not siblings


def sample(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAMPLE_ROWS evenly drawn rows (fixed seed): what every speed is measured on."""
    rows = np.sort(np.random.default_rng(0).permutation(len(images))[:SAMPLE_ROWS])
    return images[rows], labels[rows]

"""A unit's epoch checkpoint: written atomically after every epoch (tensors and plain containers
only), tagged with the unit it belongs to (run identity, fold, seed), loaded with weights_only=True
so a planted pickle cannot run code, and discarded (with a warning) when foreign or unusable."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Protocol

import torch

from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import present, read_file, torch_load


class Stepper(Protocol):
    """What a checkpoint saves and restores of the training loop's stepper (`fit.Stepper`)."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    cfg: Any
    device: torch.device
    ema: Any
    lookahead: Any


log = logging.getLogger(__name__)


def save_checkpoint(path: Path, s: Stepper, state: dict[str, Any], tag: dict[str, Any] | None = None) -> None:
    ck = {
        "model": s.model.state_dict(),
        "opt": s.opt.state_dict(),
        "scaler": s.scaler.state_dict(),
        "state": state,
        "tag": tag,
    }
    if s.ema is not None:
        ck["ema"] = s.ema.module.state_dict()
    if s.lookahead is not None:
        ck["lookahead"] = s.lookahead.state_dict()
    buffer = io.BytesIO()  # serialized in memory: a full disk is then an OSError the write names
    torch.save(ck, buffer)
    atomic.write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, s: Stepper, tag: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The saved training state, or None when there is none, it belongs to another unit (its tag:
    run identity, fold, seed) or it is unusable (then it is removed, with a warning)."""
    if not present(path):
        return None
    try:
        ck = torch_load(read_file(path, "checkpoint"), path, "checkpoint", map_location=s.device)
        if ck.get("tag") != tag:
            raise ValueError("it belongs to another run, fold or seed (its tag differs)")
        state = ck["state"]
        epoch = int(state["epoch"])
        if not 0 < epoch <= s.cfg.epochs or len(state["history"]) != epoch:
            raise ValueError(
                f"epoch {epoch} with {len(state['history'])} epochs of history, for a {s.cfg.epochs}-epoch training"
            )
        s.model.load_state_dict(ck["model"])
        s.opt.load_state_dict(ck["opt"])
        s.scaler.load_state_dict(ck["scaler"])
        if s.ema is not None:
            s.ema.module.load_state_dict(ck["ema"])
        if s.lookahead is not None:
            s.lookahead.load_state_dict(ck["lookahead"])
        return state
    except Exception as exc:  # truncated, foreign, or not weights-only: restart this seed
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        log.warning(f"{path}: unusable checkpoint ({type(exc).__name__}: {first}); discarded, this seed restarts")
        path.unlink(missing_ok=True)
        return None

"""Name -> constructor table, in the manner of timm's registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from fmnist_kaggle.errors import FkaggleError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: add a model factory `fn(num_classes=10, in_chans=1, **kwargs) -> nn.Module` to the
    registry under its function name (`--model NAME`, `fold_train(model=...)`, `create_model`)."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """The registered model names (any `timm:<name>` works too)."""
    return sorted(_MODELS)


def report_classes(name: str) -> int:
    """The output width a registered model's report used (its `num_classes` default)."""
    return inspect.signature(_MODELS[name]).parameters["num_classes"].default


def create_model(name: str, num_classes: int = 10, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model, `timm:<name>` through timm (see models.timm_backbone), or
    `module:factory`, your own factory in an importable module (a file in this folder too)."""
    if name.startswith("timm:"):
        from fmnist_kaggle.models.timm_backbone import create_timm_model

        return create_timm_model(name[len("timm:") :], num_classes=num_classes, in_chans=in_chans, **kwargs)
    if ":" in name and name not in _MODELS:
        _MODELS[name] = _import_factory(name)
    if name not in _MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise FkaggleError(f"unknown model {name!r}{hint}; `fkaggle models` lists them (or use timm:<name>)")
    try:
        return _MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise FkaggleError(f"model {name}: {exc}") from None


def _import_factory(name: str) -> Callable[..., nn.Module]:
    """`module:factory`: the factory from an importable module (this folder is searched first)."""
    import importlib
    import sys

    module, _, attr = name.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise FkaggleError(f"--model {name}: cannot import {attr!r} from {module!r} ({exc})") from None
    if not callable(factory):
        raise FkaggleError(f"--model {name}: {attr} is not a function or class")
    return factory


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


TRAIN_BYTES_PER_PARAM = 16  # fp32 weights, gradients and two optimizer moments
MEMORY_SHARE = 0.5  # of this machine's memory a model may take to train


def check_model_size(name: str, num_classes: int = 10, in_chans: int = 1, **kwargs) -> int:
    """The model's parameter count, found without allocating it (built on torch's meta device);
    one line naming the settings when training it would need more than MEMORY_SHARE of this
    machine's memory (a width of 100,000 asks for terabytes)."""
    if "pretrained" in kwargs:  # a weights file is read as the model is built: the real build checks it
        return 0
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except FkaggleError:
        raise
    except Exception:  # noqa: BLE001  (a model that cannot be built on meta is checked by its real build)
        return 0
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    need, have = params * TRAIN_BYTES_PER_PARAM, _memory_bytes()
    if have and need > MEMORY_SHARE * have:
        settings = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "its defaults"
        raise FkaggleError(
            f"model {name} with {settings}: {params:,} parameters need about {need / 2**30:,.0f} GiB to train, "
            f"more than this machine's {have / 2**30:.0f} GiB allow; choose a smaller size"
        )
    return params


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0

"""Name -> constructor table, in the manner of timm's registry."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch.nn as nn

from fmnist_kaggle.errors import FkaggleError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """The registered model names (any `timm:<name>` works too)."""
    return sorted(_MODELS)


def report_classes(name: str) -> int:
    """The output width a registered model's report used (its `num_classes` default)."""
    return inspect.signature(_MODELS[name]).parameters["num_classes"].default


def create_model(name: str, num_classes: int = 10, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model, or `timm:<name>` through timm (see models.timm_backbone)."""
    if name.startswith("timm:"):
        from fmnist_kaggle.models.timm_backbone import create_timm_model

        return create_timm_model(name[len("timm:") :], num_classes=num_classes, in_chans=in_chans, **kwargs)
    if name not in _MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise FkaggleError(f"unknown model {name!r}{hint}; `fkaggle models` lists them (or use timm:<name>)")
    try:
        return _MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise FkaggleError(f"model {name}: {exc}") from None


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

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
    if ":" in name and name not in _MODELS:  # never imported here: a record may name any module
        raise FkaggleError(
            f"model {name!r} is your own factory, and fkaggle never imports code a file names: name it "
            f"yourself to rebuild it (--model {name} on the command line, model={name!r} or "
            "fk.register_model in Python)"
        )
    if name not in _MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise FkaggleError(f"unknown model {name!r}{hint}; `fkaggle models` lists them (or use timm:<name>)")
    try:
        return _MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise FkaggleError(f"model {name}: {exc}") from None


def import_model(name: str) -> str:
    """`module:factory` that the user named (--model, `model=`): the factory imported from an
    importable module (this folder is searched first) and registered under that name. The only
    place fkaggle imports a user's code; nothing read from a file reaches it (Hugging Face's
    `trust_remote_code`, made explicit by naming the model). Other names pass through."""
    import difflib
    import importlib
    import sys

    if ":" not in name or name.startswith("timm:") or name in _MODELS:
        return name
    module, _, attr = name.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise FkaggleError(f"--model {name}: cannot import module {module!r} ({exc})") from None
    factory = getattr(mod, attr, None)
    if factory is None:
        public = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        close = difflib.get_close_matches(attr, public, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(f'{module}:{c}' for c in close)}?" if close else ""
        raise FkaggleError(f"--model {name}: module {module!r} has no {attr!r}{hint}")
    if not callable(factory):
        raise FkaggleError(f"--model {name}: {attr} is not a function or class")
    _MODELS[name] = factory
    return name


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
    except Exception as exc:  # noqa: BLE001  (a model that cannot be built on meta is checked by its real build)
        if "overflow" in str(exc).lower():  # a size no machine builds (a width of 2**63 - 1)
            settings = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "its defaults"
            raise FkaggleError(
                f"model {name} with {settings}: too large for any machine; choose a smaller size"
            ) from None
        return 0
    if not isinstance(model, nn.Module):  # a user's factory that returns something else: `check_built` says so
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


def is_users(name: str) -> bool:
    """A model of the user's own (`module:factory`, or registered from outside this package)."""
    factory = _MODELS.get(name)
    if ":" in name and not name.startswith("timm:"):
        return True
    return factory is not None and not (getattr(factory, "__module__", None) or "").startswith("fmnist_kaggle.")


def check_built(model: object, name: str, num_classes: int, forward: bool = True) -> None:
    """A user's model, checked before anything trains: an `nn.Module` whose forward pass on two
    28x28 images gives finite (2, num_classes) logits (`forward`); else one line naming the model
    and what was wrong."""
    if not isinstance(model, nn.Module):
        raise FkaggleError(f"model {name}: its factory returned {type(model).__name__}, not a torch.nn.Module")
    if not forward:
        return
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.rand(2, 1, 28, 28))
    except Exception as exc:  # noqa: BLE001  (the user's code: any failure is one line)
        raise FkaggleError(f"model {name}: a forward pass on two 28x28 images failed: {_first_line(exc)}") from None
    finally:
        model.train(was)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (2, num_classes):
        got = f"shape {shape}" if shape is not None else type(out).__name__
        raise FkaggleError(f"model {name}: two images gave {got}, expected logits of shape (2, {num_classes})")
    if not torch.isfinite(out).all():
        raise FkaggleError(f"model {name}: two images gave logits that are not finite (NaN or inf)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]

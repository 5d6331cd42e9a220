"""Any timm model as `timm:<name>`, adapted to 1-channel 28x28 images.

- `in_chans=1` goes to timm, which also folds 3-channel pretrained stems into one channel.
- `input_size`: 28 keeps native resolution; larger sizes pad (`resize="pad"`, as report 004
  zero-pads to 32) or interpolate (`resize="interpolate"`) for ImageNet-style stems.
- `pretrained`: a LOCAL weights file (no hub access at run time), loaded by timm's own
  pretrained path (`pretrained_cfg_overlay=dict(file=...)`), which adapts the stem and
  drops a classifier of the wrong size.
- `freeze_backbone`: train only the classifier, BatchNorm frozen too (report 004's transfer setting).
- `channels`: "fold" (default) gives timm one input channel; "zeros" keeps the backbone's 3-channel
  stem untouched and feeds it the grey image plus two zero channels, as report 004 did
  (28x28 zero-padded to 32x32, grey channel + 2 zero channels, frozen ImageNet backbone).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage.files import regular_file


class InputAdapter(nn.Module):
    """Pads or resizes 28x28 batches to the backbone's input size; with zero_channels, appends
    that many all-zero channels to the grey one (a 3-channel stem used as it was trained)."""

    def __init__(self, backbone: nn.Module, input_size: int, resize: str, zero_channels: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_size = input_size
        self.resize = resize
        self.zero_channels = zero_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.zero_channels:
            x = torch.cat([x, x.new_zeros(x.shape[0], self.zero_channels, *x.shape[2:])], dim=1)
        if x.shape[-1] != self.input_size:
            if self.resize == "pad":
                p = self.input_size - x.shape[-1]
                x = F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2))
            else:
                x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.backbone(x)


class FrozenBackbone(nn.Module):
    """Only the classifier trains; the backbone stays in eval mode (BN statistics frozen)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        head = {id(p) for p in model.get_classifier().parameters()}
        for p in model.parameters():
            p.requires_grad = id(p) in head

    def train(self, mode: bool = True) -> "FrozenBackbone":
        super().train(mode)
        self.model.eval()
        self.model.get_classifier().train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create_timm_model(
    name: str,
    num_classes: int = 10,
    in_chans: int = 1,
    input_size: int = 28,
    resize: str = "pad",
    pretrained: str | Path | None = None,
    freeze_backbone: bool = False,
    channels: str = "fold",
    **kwargs,
) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join('timm:' + c for c in close)}" if close else ""
        raise FkaggleError(f"timm has no model {name!r}{hint} (`fkaggle models --timm PATTERN` lists them)")
    if channels not in ("fold", "zeros"):
        raise FkaggleError(
            f"channels must be 'fold' (one-channel stem) or 'zeros' (grey + 2 zero channels), not {channels!r}"
        )
    zero_channels = 2 if channels == "zeros" else 0
    in_chans += zero_channels
    if resize not in ("pad", "interpolate"):
        raise FkaggleError(f"resize must be 'pad' or 'interpolate', not {resize!r}")
    if input_size < 28:
        raise FkaggleError(f"input_size {input_size} is smaller than the 28x28 images")
    extra = {}
    if pretrained:
        path = regular_file(pretrained, "pretrained weights file")  # not a FIFO, device or folder
        extra = {
            "pretrained": True,
            "pretrained_cfg_overlay": {"file": str(path), "num_classes": _file_num_classes(path)},
        }
    try:
        model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **extra, **kwargs)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise FkaggleError(f"timm:{name}: {str(exc).splitlines()[0]}") from None
    if freeze_backbone:
        model = FrozenBackbone(model)
    return InputAdapter(model, input_size, resize, zero_channels) if input_size != 28 or zero_channels else model


def _file_num_classes(path: Path) -> int:
    """Classifier size stored in a weights file, so timm knows whether to drop it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # torch.load raises many types for a non-weights file; weights_only never runs code
    except Exception as exc:  # noqa: BLE001
        raise FkaggleError(f"not a readable weights file ({type(exc).__name__})", path) from None
    if not isinstance(state, dict):
        raise FkaggleError(f"not a weights file (holds a {type(state).__name__}, expected a state dict)", path)
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    biases = [v for k, v in state.items() if k.endswith("bias") and v.ndim == 1]
    return int(biases[-1].shape[0]) if biases else 1000


def timm_models(pattern: str = "*") -> list[dict[str, object]]:
    """timm's model names matching `pattern` (shell-style, e.g. 'resnet*'; a bare word matches
    anywhere in the name: 'resnet' is '*resnet*'): every one trains from scratch offline; `weights`
    says whether timm knows pretrained weights for it, which need a local file here
    (`--pretrained FILE`: no hub is reached)."""
    import timm

    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"

    known = set(timm.list_models(pattern, pretrained=True))
    bases = {n.split(".")[0] for n in known}
    return [{"model": f"timm:{n}", "weights": n in bases} for n in timm.list_models(pattern)]

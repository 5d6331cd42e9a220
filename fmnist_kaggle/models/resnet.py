"""A ResNet-9-style network sized for 28x28 inputs (the `cpu`, `fast` and `strong` recipes).

Myrtle/airbench shape: a stem, then three stages of conv -> max-pool, the first and last with
a two-conv residual branch; global max-pool and a linear head. `width` scales every stage, so
one definition serves a 2-core CPU (width 16) and a GPU (64+). airbench's options, each off by
default (so models saved before them load unchanged): `stem="whiten"` (a frozen patch-whitening
first layer computed from the training rows, no batch norm after it), `dirac` (identity init of
the stage convs), `pool_first` (max-pool before batch norm and activation: a quarter of the
work, the same function while the BN scale stays positive) and `bn_momentum`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models.layers import PatchWhitening, act_layer, conv_bn_act
from fmnist_kaggle.models.registry import register_model

STEMS = ("conv", "whiten")


def _down(cin: int, cout: int, act: str, pool_first: bool) -> nn.Sequential:
    if pool_first:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding="same"), nn.MaxPool2d(2), nn.BatchNorm2d(cout), act_layer(act)
        )
    return nn.Sequential(*conv_bn_act(cin, cout, act=act), nn.MaxPool2d(2))


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, residual: bool, act: str, pool_first: bool = False) -> None:
        super().__init__()
        self.down = _down(cin, cout, act, pool_first)
        self.res = (
            nn.Sequential(*conv_bn_act(cout, cout, act=act), *conv_bn_act(cout, cout, act=act)) if residual else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.res(x) if self.res is not None else x


class ResNet28(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        width: int = 32,
        act: str = "relu",
        dropout: float = 0.0,
        stem: str = "conv",
        dirac: bool = False,
        pool_first: bool = False,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise FkaggleError(f"fmnist_resnet: stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if not 0 < bn_momentum <= 1:
            raise FkaggleError(f"fmnist_resnet: bn_momentum must be in (0, 1], got {bn_momentum!r}")
        w = width
        if stem == "whiten":
            whiten = PatchWhitening(in_chans)
            self.stem, stem_out = nn.Sequential(whiten, act_layer(act)), whiten.out_chans
        else:
            self.stem, stem_out = nn.Sequential(*conv_bn_act(in_chans, w, act=act)), w
        self.stages = nn.Sequential(
            _Stage(stem_out, 2 * w, True, act, pool_first),
            _Stage(2 * w, 4 * w, False, act, pool_first),
            _Stage(4 * w, 8 * w, True, act, pool_first),
        )
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * w, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = bn_momentum
        for m in self.stages.modules() if dirac else ():
            if isinstance(m, nn.Conv2d):
                with torch.no_grad():  # the first min(cin, cout) filters pass their input through
                    nn.init.dirac_(m.weight[: min(m.in_channels, m.out_channels)])

    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from the training rows' model inputs (the whitening stem)."""
        for m in self.modules():
            if isinstance(m, PatchWhitening):
                m.init_from_data(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scaled logits (Myrtle's ResNet-9 trick): max-pooled features are large, and
        # unscaled logits make high-LR SGD diverge in the first steps.
        return self.head(self.stages(self.stem(x))) * 0.125


@register_model
def fmnist_resnet(
    num_classes: int = 10,
    in_chans: int = 1,
    width: int = 32,
    act: str = "relu",
    dropout: float = 0.0,
    stem: str = "conv",
    dirac: bool = False,
    pool_first: bool = False,
    bn_momentum: float = 0.1,
) -> nn.Module:
    """ResNet-9-style net for 28x28 (width 32: ~1.2M params); airbench options: stem="whiten",
    dirac, pool_first, bn_momentum."""
    return ResNet28(num_classes, in_chans, width, act, dropout, stem, dirac, pool_first, bn_momentum)

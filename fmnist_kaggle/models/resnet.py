"""A ResNet-9-style network sized for 28x28 inputs (the `cpu` and `strong` recipes).

Myrtle/airbench shape: conv stem, then three stages of conv -> max-pool, the first and
last with a two-conv residual branch; global max-pool and a linear head. `width`
scales every stage, so one definition serves a 2-core CPU (width 16) and a GPU (64+).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fmnist_kaggle.models.layers import conv_bn_act
from fmnist_kaggle.models.registry import register_model


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, residual: bool, act: str) -> None:
        super().__init__()
        self.down = nn.Sequential(*conv_bn_act(cin, cout, act=act), nn.MaxPool2d(2))
        self.res = nn.Sequential(*conv_bn_act(cout, cout, act=act), *conv_bn_act(cout, cout, act=act)) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.res(x) if self.res is not None else x


class ResNet28(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 32, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(*conv_bn_act(in_chans, w, act=act))
        self.stages = nn.Sequential(_Stage(w, 2 * w, True, act), _Stage(2 * w, 4 * w, False, act), _Stage(4 * w, 8 * w, True, act))
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scaled logits (Myrtle's ResNet-9 trick): max-pooled features are large, and
        # unscaled logits make high-LR SGD diverge in the first steps.
        return self.head(self.stages(self.stem(x))) * 0.125


@register_model
def fmnist_resnet(num_classes: int = 10, in_chans: int = 1, width: int = 32, act: str = "relu", dropout: float = 0.0) -> nn.Module:
    """ResNet-9-style net for 28x28 (width 32: ~1.2M params)."""
    return ResNet28(num_classes, in_chans, width, act, dropout)

"""Small building blocks shared by the custom networks."""

from __future__ import annotations

import torch.nn as nn

from fmnist_kaggle.errors import FkaggleError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def act_layer(name: str) -> nn.Module:
    """Activation by name: the reports compare relu, tanh and sigmoid."""
    if name not in ACTIVATIONS:
        raise FkaggleError(f"unknown activation {name!r} (choose from {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


def conv_bn_act(cin: int, cout: int, k: int = 3, pad: int | str = "same", act: str = "relu", bn: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(act_layer(act))
    return layers

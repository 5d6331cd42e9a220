"""Small building blocks shared by the custom networks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def conv_bn_act(
    cin: int, cout: int, k: int = 3, pad: int | str = "same", act: str = "relu", bn: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(act_layer(act))
    return layers


class PatchWhitening(nn.Module):
    """A frozen first convolution whose filters are the eigenvectors of the training images'
    k x k patch covariance, each scaled by 1/sqrt(eigenvalue) and used with both signs (airbench):
    decorrelated inputs from step one. Its weight is a buffer (never trained, saved with the
    model); its bias is trained for the first `bias_train_fraction` of the steps, then frozen
    (the optimizer's groups read that fraction). Call `init_from_data` with the fold's training
    images (model inputs) before training; a model loaded from a file gets its weight from there."""

    bias_train_fraction = 0.3
    eps = 5e-4

    def __init__(self, in_chans: int = 1, k: int = 3) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("weight", torch.zeros(2 * in_chans * k * k, in_chans, k, k))
        self.bias = nn.Parameter(torch.zeros(2 * in_chans * k * k))

    @property
    def out_chans(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """x: float model inputs (N, C, H, W), training rows only (never held-out or test rows)."""
        c, k = x.shape[1], self.k
        patches = F.unfold(x.double(), k).transpose(1, 2).reshape(-1, c * k * k)  # every k x k patch
        cov = patches.T @ patches / len(patches)  # uncentred: the mean patch is a direction too
        values, vectors = torch.linalg.eigh(cov)
        filters = (vectors.T / torch.sqrt(values.clamp_min(0) + self.eps)[:, None]).flip(0)  # largest first
        filters = filters.reshape(-1, c, k, k)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.k // 2)

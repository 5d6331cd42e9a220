"""Augmentation presets, two ways.

- `BatchAugment`: whole-batch tensor ops on the device that holds the images (GPU or
  CPU): no worker processes, no per-sample Python. The default ("fast path").
- `albumentations_pipeline`: the same presets (and any custom pipeline from config) as
  per-sample albumentations transforms, for a DataLoader.

Presets (their operations: `training.recipes.AUGMENT_PRESETS`, the one table): none; jitter
(brightness/contrast +-0.2, report 000); translate (pad 2 + random 28x28 crop: shifts of up to
2 px, background-filled, no flip); cropflip (translate + horizontal flip, report 003); strong
(cropflip + random erasing); altflip (translate + airbench's alternating flip: each image is
flipped at random in its first epoch and the other way in the next, so every two epochs see
both views); altflip-cutout (altflip + one 10x10 cutout square per image, airbench96).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.training.recipes import AUGMENT_PRESETS

PAD = 2
JITTER = 0.2
ERASE_P = 0.5
ERASE_SCALE = (0.02, 0.25)
ERASE_RATIO = (0.3, 3.3)
CUTOUT = 10  # airbench96's 12 px square on 32x32 images, scaled to 28x28


def _u(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def jitter(x: torch.Tensor, gen: torch.Generator, strength: float = JITTER) -> torch.Tensor:
    """torchvision ColorJitter(brightness=s, contrast=s) on grayscale, per image: factors in
    [1-s, 1+s], applied in a random order (saturation is a no-op on one channel)."""
    n = x.shape[0]
    b = _u(n, 1 - strength, 1 + strength, gen, x.device).view(n, 1, 1, 1)
    c = _u(n, 1 - strength, 1 + strength, gen, x.device).view(n, 1, 1, 1)
    contrast_first = (torch.rand(n, generator=gen, device=x.device) < 0.5).view(n, 1, 1, 1)

    def contrast(t: torch.Tensor) -> torch.Tensor:
        mean = t.mean(dim=(1, 2, 3), keepdim=True)
        return ((t - mean) * c + mean).clamp(0, 1)

    b_then_c = contrast((x * b).clamp(0, 1))
    c_then_b = (contrast(x) * b).clamp(0, 1)
    return torch.where(contrast_first, c_then_b, b_then_c)


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = PAD, flips: bool | torch.Tensor = True) -> torch.Tensor:
    """Zero-pad by `pad`, take a random crop of the original size, flip half horizontally (`flips`
    True), or the images a boolean mask names (`flips` a tensor: the alternating flip)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]  # (n, w)
    if isinstance(flips, torch.Tensor) or flips:
        flip = flips if isinstance(flips, torch.Tensor) else torch.rand(n, generator=gen, device=x.device) < 0.5
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def random_erase(x: torch.Tensor, gen: torch.Generator, p: float = ERASE_P) -> torch.Tensor:
    """Zero one random rectangle (2-25% of the area, aspect 0.3-3.3) in a fraction p of images."""
    n, _, h, w = x.shape
    area = _u(n, *ERASE_SCALE, gen, x.device) * h * w
    log_r = _u(n, float(np.log(ERASE_RATIO[0])), float(np.log(ERASE_RATIO[1])), gen, x.device)
    ratio = torch.exp(log_r)
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen, device=x.device) * (h - eh + 1)).long()
    x0 = (torch.rand(n, generator=gen, device=x.device) * (w - ew + 1)).long()
    apply = torch.rand(n, generator=gen, device=x.device) < p
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])  # (n, h)
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])  # (n, w)
    mask = (in_y[:, :, None] & in_x[:, None, :] & apply[:, None, None])[:, None]
    return x.masked_fill(mask, 0.0)


def cutout(x: torch.Tensor, gen: torch.Generator, size: int = CUTOUT) -> torch.Tensor:
    """Zero one `size` x `size` square per image, placed at random wholly inside it (airbench96)."""
    n, _, h, w = x.shape
    y0 = torch.randint(0, h - size + 1, (n,), generator=gen, device=x.device)
    x0 = torch.randint(0, w - size + 1, (n,), generator=gen, device=x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + size)[:, None])
    in_x = (xs >= x0[:, None]) & (xs < (x0 + size)[:, None])
    return x.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0.0)


def alternating_flips(first: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flip: the images `first` flips in even epochs, the others in odd ones."""
    return first ^ bool(epoch % 2)


class BatchAugment:
    """Batch-level preset on float images in [0, 1], shape (N, 1, 28, 28). An alternating-flip
    preset is given each batch's flip mask (`flip`, from `alternating_flips`)."""

    def __init__(self, preset: str) -> None:
        if preset not in AUGMENT_PRESETS:
            raise FkaggleError(f"no tensor implementation of augment preset {preset!r}")
        self.preset, self.ops = preset, AUGMENT_PRESETS[preset]

    @property
    def alternating(self) -> bool:
        return "altflip" in self.ops

    def __call__(self, x: torch.Tensor, gen: torch.Generator, flip: torch.Tensor | None = None) -> torch.Tensor:
        if "jitter" in self.ops:
            x = jitter(x, gen)
        if "translate" in self.ops:
            mirror = flip if self.alternating else "flip" in self.ops
            x = crop_flip(x, gen, flips=mirror if mirror is not None else False)
        if "erase" in self.ops:
            x = random_erase(x, gen)
        if "cutout" in self.ops:
            x = cutout(x, gen)
        return x


def albumentations_pipeline(preset: str, custom: list[dict[str, Any]] | None = None) -> Any:
    """The preset (or a custom list of {name: ..., **params}) as an albumentations Compose."""
    import albumentations as A

    if preset == "custom":
        steps = []
        for spec in custom or []:
            spec = dict(spec)
            name = spec.pop("name", None) or spec.pop("transform", None)
            if not name or not hasattr(A, name):
                raise FkaggleError(f"unknown albumentations transform {name!r} in augment_pipeline")
            try:
                steps.append(getattr(A, name)(**spec))
            except Exception as exc:
                raise FkaggleError(f"albumentations {name}: {exc}") from None
        return A.Compose(steps)
    steps = []
    if preset == "jitter":
        # albumentations' ColorJitter is a port of torchvision's (report 000 used torchvision)
        steps.append(A.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=0.0, hue=0.0, p=1.0))
    ops = AUGMENT_PRESETS.get(preset, ())
    if "altflip" in ops:
        raise FkaggleError(
            f"augment preset {preset!r} (alternating flip) is a tensor-path preset: augment_backend auto"
        )
    if "translate" in ops:
        steps += [A.PadIfNeeded(28 + 2 * PAD, 28 + 2 * PAD, border_mode=0, fill=0), A.RandomCrop(28, 28)]
    if "flip" in ops:
        steps.append(A.HorizontalFlip(p=0.5))
    if "erase" in ops:
        steps.append(
            A.CoarseDropout(
                num_holes_range=(1, 1), hole_height_range=(0.14, 0.5), hole_width_range=(0.14, 0.5), fill=0, p=ERASE_P
            )
        )
    return A.Compose(steps)


class AlbumentationsDataset(torch.utils.data.Dataset):
    """Per-sample albumentations on uint8 HxW images -> float tensor (1, 28, 28) in [0, 1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, pipeline: Any) -> None:
        self.images, self.labels, self.pipeline = images, labels, pipeline

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.pipeline(image=self.images[i][:, :, None])["image"]
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0), int(self.labels[i])

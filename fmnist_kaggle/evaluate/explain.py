"""`fkaggle explain RUN`: what a fold model's first layers see (report 000's activation maps).

The images are fold K's validation rows, which fold K's model never trained on, a few
per class; the maps are the outputs of the model's first convolutions, read with
forward hooks, so any registry or timm model works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import activation_maps
from fmnist_kaggle.runs.store import load_fold_model, predicted_from, run_images
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.inference import eval_batches


def pick_rows(labels: np.ndarray, fold_of: np.ndarray, fold: int, per_class: int) -> np.ndarray:
    """The first `per_class` validation rows of each class in `fold`, class by class."""
    held_out = fold_of == fold
    return np.concatenate([np.flatnonzero(held_out & (labels == c))[:per_class] for c in np.unique(labels)])


@torch.no_grad()
def feature_maps(model: torch.nn.Module, x: torch.Tensor, layers: int) -> list[tuple[str, np.ndarray]]:
    """Outputs of the first `layers` Conv2d modules for the batch x: [(module name, (N,C,H,W))]."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][:layers]
    if not convs:
        raise FkaggleError(f"{type(model).__name__} has no convolution layers to draw")
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach().float().cpu()))
        for name, m in convs
    ]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return [(name, seen[name].numpy()) for name, _ in convs]


def explain(
    ref: str,
    comp: Competition | None,
    fold: int = 0,
    per_class: int = 1,
    layers: int = 2,
    channels: int = 8,
    workdir: str | Path = ".",
) -> dict[str, Any]:
    """Draw the feature maps of fold `fold`'s first `layers` convolutions for `per_class` held-out images of each class
    (`comp` None: the images from where the run recorded its data came from)."""
    ws = Workspace(workdir)
    rd = ws.find_run(ref)
    manifest = rd.read_manifest()
    if predicted_from(manifest):
        raise FkaggleError(f"{rd.name} is a prediction of {predicted_from(manifest)}: explain that run", rd.path)
    folds = manifest["data"]["folds"]
    if not 0 <= fold < folds:
        raise FkaggleError(f"--fold {fold}: run {rd.name} has folds 0..{folds - 1}")
    if per_class < 1 or layers < 1 or channels < 1:
        raise FkaggleError("--images, --layers and --channels must be at least 1")
    train = run_images(manifest, comp)
    rows = pick_rows(train.labels, rd.array("folds", manifest), fold, per_class)
    model = load_fold_model(rd, manifest, fold, manifest["seeds"][0])
    cfg = build_config(**{**manifest["config"], "device": "cpu"})
    x = torch.cat(list(eval_batches(torch.from_numpy(train.images[rows]), cfg, torch.device("cpu"))))
    maps = feature_maps(model, x, layers)
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    title = (
        f"{rd.name}, fold {fold}: feature maps of its first {len(maps)} convolution "
        f"layer(s) (modules {', '.join(n for n, _ in maps)})"
    )
    png = activation_maps(
        train.images[rows],
        train.labels[rows],
        pred,
        maps,
        manifest["data"]["class_names"],
        channels,
        rd.explain_png(fold),
        title,
    )
    return {
        "run": rd.name,
        "fold": fold,
        "title": title,
        "rows": rows.tolist(),
        "layers": [{"name": n, "channels": int(m.shape[1]), "size": list(m.shape[2:])} for n, m in maps],
        "png": str(png),
    }

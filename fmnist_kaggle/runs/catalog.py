"""What can be trained, as it is trained: the registry's models at their default width, the
recipes' models with the recipes' keywords, and the speed this workspace's runs measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import count_params, create_model, list_models, report_classes
from fmnist_kaggle.models.registry import is_users
from fmnist_kaggle.runs.store import status
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.recipes import get_recipe, recipe_names


def _key(model: str, kwargs: dict[str, Any]) -> str:
    return json.dumps([model, kwargs], sort_keys=True)


def measured_speeds(workdir: str | Path = ".") -> dict[str, dict[str, Any]]:
    """Training images/s per (model, keywords), the median over the folds this workspace trained."""
    ws, seen = Workspace(workdir), {}
    for name in ws.run_names():
        try:
            m = status(ws.run(name))
        except (FkaggleError, KeyError, TypeError):
            continue  # `runs` says what is wrong with it; speeds come from readable runs
        cfg = m.get("config") or {}
        speeds = [f["images_per_s"] for f in m.get("fold_metrics", []) if f.get("images_per_s")]
        if speeds:
            entry = seen.setdefault(
                _key(cfg.get("model"), cfg.get("model_kwargs") or {}), {"speeds": [], "devices": set()}
            )
            entry["speeds"] += speeds
            entry["devices"].add(str(cfg.get("device")))
    return {
        k: {
            "images_per_s": round(float(np.median(v["speeds"])), 1),
            "folds": len(v["speeds"]),
            "device": ",".join(sorted(v["devices"])),
        }
        for k, v in seen.items()
    }


def model_rows(
    classes: int | None = None, workdir: str | Path = ".", measure: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Every registered model (at its report's output width unless `classes`) and every recipe's
    model as the recipe builds it, with the images/s measured here where a run trained it; with
    `measure`, each recipe's training and prediction timed now against this machine's peak."""
    speeds = measured_speeds(workdir)

    def row(model: str, kwargs: dict[str, Any], k: int) -> dict[str, Any]:
        measured = speeds.get(_key(model, kwargs), {})
        return {
            "model": model,
            "model_kwargs": kwargs,
            "params": count_params(create_model(model, num_classes=k, **kwargs)),
            "classes": k,
            "images_per_s": measured.get("images_per_s"),
            "measured_on": measured.get("device"),
        }

    own = {
        name for name in list_models() if is_users(name)
    }  # a user's factory named in this process: not the catalog's
    models = [row(name, {}, classes or report_classes(name)) for name in list_models() if name not in own]
    recipes = [
        {"recipe": name, **row(r["model"], r.get("model_kwargs", {}), classes or 10)}
        for name, r in ((n, get_recipe(n).settings) for n in recipe_names())
    ]
    out: dict[str, Any] = {"models": models, "recipes": recipes}
    if measure:
        out["engine"] = engine_rows(classes or 10)
    return out


def engine_rows(classes: int = 10, recipes: tuple[str, ...] = ("cpu", "fast")) -> dict[str, Any]:
    """Each recipe's FLOPs per image, training and prediction images/s here (its batch, precision and
    test-time views, a few seconds of real steps on stand-in images), and the GFLOP/s that makes,
    as a share of this machine's matmul peak in that precision, timed in the same process
    (predictions are fp32, as every unit makes them)."""
    import torch

    from fmnist_kaggle.training import engine
    from fmnist_kaggle.training.estimate import measure_throughput

    peaks = {"float32": engine.matmul_peak()}
    images = np.random.default_rng(0).integers(0, 256, (2048, 28, 28), dtype=np.uint8)
    labels = np.arange(len(images)) % classes
    rows = []
    for name in recipes:
        cfg = build_config(recipe=name)
        model = create_model(cfg.model, num_classes=classes, **cfg.model_kwargs).to(memory_format=torch.channels_last)
        sample = torch.zeros(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        f_train, f_fwd = engine.flops_per_image(model, sample, True), engine.flops_per_image(model, sample, False)
        speed = measure_throughput(cfg, images, labels, classes, seconds=2.0, max_steps=20)
        if speed.precision not in peaks:  # training in bf16: measured against the bf16 matmul
            peaks[speed.precision] = engine.matmul_peak(getattr(torch, speed.precision))
        train_g, predict_g = speed.train_ips * f_train / 1e9, speed.predict_ips * f_fwd / 1e9
        rows.append(
            {
                "recipe": name,
                "model": cfg.model,
                "mflop_per_image": round(f_fwd / 1e6, 1),
                "device": speed.device,
                "train_img_s": speed.train_ips,
                "train_gflop_s": round(train_g, 1),
                "train_precision": speed.precision,
                "train_pct_of_peak": round(100 * train_g / peaks[speed.precision]),
                "predict_img_s": speed.predict_ips,
                "predict_gflop_s": round(predict_g, 1),
                "predict_pct_of_peak": round(100 * predict_g / peaks["float32"]),
            }
        )
    return {"peak_gflop_s": {k: round(v, 1) for k, v in peaks.items()}, "peak": "torch.mm of 2048 x 2048", "rows": rows}

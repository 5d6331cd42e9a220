"""What can be trained, as it is trained: the registry's models at their default width, the
recipes' models with the recipes' keywords, and the speed this workspace's runs measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import count_params, create_model, list_models, report_classes
from fmnist_kaggle.runs.store import status
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import RECIPES


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


def model_rows(classes: int | None = None, workdir: str | Path = ".") -> dict[str, list[dict[str, Any]]]:
    """Every registered model (at its report's output width unless `classes`) and every recipe's
    model as the recipe builds it, with the images/s measured here where a run trained it."""
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

    models = [row(name, {}, classes or report_classes(name)) for name in list_models()]
    recipes = [
        {"recipe": name, **row(r["model"], r.get("model_kwargs", {}), classes or 10)} for name, r in RECIPES.items()
    ]
    return {"models": models, "recipes": recipes}

"""`fkaggle predict`: a finished run's fold (and seed) models applied to another test file,
recorded as a run that blends like any other (`blend NAME --test FILE`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.data.images import from_arrays, load_images
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.store import DERIVED, Run, data_options, load_fold_model, load_run
from fmnist_kaggle.storage.artifacts import utc_now, write_array
from fmnist_kaggle.storage.layout import RunDir, Workspace
from fmnist_kaggle.training.config import build_config

log = logging.getLogger(__name__)


def predict_run(
    ref: str,
    test_path: str | Path,
    name: str | None = None,
    workdir: str | Path = ".",
    format: str = "auto",
    device: str = "auto",
) -> dict[str, Any]:
    """Apply a run's saved fold (and seed) models to another test file. The result is a run
    `oof/NAME/` holding the source's OOF logits (same data, folds, labels) and the new
    fold-averaged test logits, with the new test file's fingerprint: `blend NAME --test FILE`
    (alone or with other runs predicted on that file) makes its submission."""
    src = load_run(ref, workdir)
    ws = Workspace(workdir)
    out = ws.run(name or f"{src.name}-on-{Path(test_path).name.split('.')[0]}")
    if out.path.exists():
        raise FkaggleError("exists; choose another --name", out.path)
    if src.predicted_from:
        raise FkaggleError(
            f"{src.name} is itself a prediction of {src.predicted_from}: predict from that run", src.dir.path
        )
    data = src.manifest["data"]
    test = load_images(test_path, format, label_values=tuple(data["label_values"]))
    return _write_prediction(out, src, test, run_logits(src, test.images, device))


def run_logits(src: Run, images: np.ndarray, device: str = "auto") -> np.ndarray:
    """The run's models on uint8 (N, 28, 28) images: each finished fold's seeds averaged, then
    the folds (with the run's own test-time views): what its test logits are on its test file."""
    import torch

    from fmnist_kaggle.training.device import resolve_device
    from fmnist_kaggle.training.inference import predict

    cfg = build_config(**{**src.manifest["config"], "device": device})
    dev = resolve_device(device)
    x = torch.from_numpy(np.ascontiguousarray(images))
    folds = []
    for f in src.partial["folds"] if src.partial else range(src.manifest["data"]["folds"]):
        per_seed = [
            predict(load_fold_model(src.dir, src.manifest, f, seed).to(dev), x, cfg, dev)
            for seed in src.manifest["seeds"]
        ]
        log.debug(f"fold {f}: {len(per_seed)} seed model(s) predicted {len(images)} rows")
        folds.append(np.mean(per_seed, axis=0))
    return np.mean(folds, axis=0).astype(np.float32)


def predict_arrays(
    ref: str | Run, images: Any, workdir: str | Path = ".", device: str = "auto"
) -> tuple[np.ndarray, tuple]:
    """New images as arrays (uint8 0..255 or floats 0..1; (N, 28, 28), (N, 784) or (N, 28, 28, 1))
    -> (class probabilities (N, K), the class values as written), from the run's models (several
    runs: their probabilities averaged). Bad arrays are one `DataError`."""
    runs = [r if isinstance(r, Run) else load_run(r, workdir) for r in (ref if isinstance(ref, list) else [ref])]
    values = tuple(runs[0].manifest["data"]["label_values"])
    if any(tuple(r.manifest["data"]["label_values"]) != values for r in runs):
        raise FkaggleError(f"runs {', '.join(r.name for r in runs)} were trained on different classes")
    x = from_arrays(images).images
    proba = np.mean([metrics.softmax(run_logits(r, x, device)) for r in runs], axis=0)
    return proba.astype(np.float32), values


def _write_prediction(out: RunDir, src: "Run", test: Any, test_logits: np.ndarray) -> dict[str, Any]:
    files = {
        path.name: write_array(path, array)
        for path, array in (
            (out.folds_npy, src.fold_of),
            (out.labels_npy, src.labels),
            (out.oof_logits, src.oof_logits),
            (out.test_logits, test_logits),
        )
    }
    fingerprint = test.fingerprint()
    m = {k: v for k, v in src.manifest.items() if k not in DERIVED and k != "files"}
    m.update(
        run=out.name,
        created=utc_now(),
        files=files,
        cv=src.manifest["cv"],
        identity={**src.manifest["identity"], "test_fingerprint": fingerprint},
        data={
            **src.manifest["data"],
            "test_path": str(test.path),
            "test_rows": len(test),
            "test_fingerprint": fingerprint,
        },
        predicted_from={"run": src.name, "test_path": str(test.path), "test_fingerprint": fingerprint},
    )
    if test.labels is not None:
        files[out.test_labels_npy.name] = write_array(out.test_labels_npy, test.labels)
        m["test_metrics"] = {
            "acc": metrics.accuracy(test_logits, test.labels),
            "logloss": metrics.log_loss(test_logits, test.labels),
        }
    out.write_manifest(m)  # last: the folder is a run once its manifest names its verified files
    return m


def blend_hint(manifest: dict[str, Any], test_path: str | Path) -> str:
    """The command that makes a submission of a predicted run, runnable as printed: the new test
    file's ids under the competition's header, the source run's data options where it had no
    default config."""
    import shlex

    return "fkaggle blend " + shlex.join([manifest["run"], *data_options(manifest, test_path)])

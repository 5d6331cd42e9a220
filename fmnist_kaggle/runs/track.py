"""What of a run goes to the MLflow store (`fmnist_kaggle.tracking`): read from the run's folder
(every seed summary verified), so whatever command calls it, the store ends up matching the disk."""

from __future__ import annotations

from typing import Any

from fmnist_kaggle import tracking
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.store import predicted_from, read_seed
from fmnist_kaggle.storage import csvfile
from fmnist_kaggle.storage.layout import RunDir


def track_run(rd: RunDir, manifest: dict[str, Any] | None = None, ended: bool = False) -> None:
    """Sync a run into the store: params, tags, each finished (fold, seed) with its epochs, and
    once assembled its CV, test accuracy and files. No-op when tracking is off."""
    if not tracking.active():
        return
    manifest = manifest or rd.read_manifest()
    if predicted_from(manifest):
        return
    identity, data = manifest["identity"], manifest["data"]
    units = []
    for fold in range(data["folds"]):
        fd = rd.fold(fold)
        for seed in manifest["seeds"]:
            if not fd.seed_summary(seed).exists():
                continue
            try:
                summary = read_seed(fd, seed, identity)
            except FkaggleError:
                continue  # corrupt or foreign: the driver retrains it, the store gets the new one
            units.append(tracking.UnitLog(fold, seed, csvfile.read_csv_rows(fd.seed_history(seed)), summary))
    tags = {
        "fkaggle.model": manifest["model"],
        "fkaggle.recipe": manifest.get("recipe") or "",
        "fkaggle.data_fingerprint": identity["data_fingerprint"],
        "fkaggle.folds_fingerprint": identity["folds_fingerprint"],
        "fkaggle.executor": _executors(units),
        "fkaggle.workspace_run": str(rd.path.resolve()),
    }
    tracking.sync_run(
        data.get("competition") or "fkaggle",
        rd.name,
        tracking.fingerprint([identity, manifest["created"]]),
        tracking.flatten(manifest["config"]),
        tags,
        units,
        _results(rd, manifest),
        [rd.manifest_path, rd.config_toml, rd.curves_png, rd.history],
        len(manifest["seeds"]),
        ended,
    )


def _results(rd: RunDir, manifest: dict[str, Any]) -> list[tuple[str, float, int]] | None:
    if not rd.assembled(manifest) or not manifest.get("cv"):
        return None
    cv = manifest["cv"]
    out = [("cv_acc", cv["acc"], 0), ("cv_logloss", cv["logloss"], 0)]
    out += [
        (name, f[key], f["fold"])
        for f in cv["per_fold"]
        for name, key in (("fold_acc", "acc"), ("fold_logloss", "logloss"))
    ]
    test = manifest.get("test_metrics") or {}
    return out + [(f"test_{k}", v, 0) for k, v in test.items()]


def _executors(units: list[tracking.UnitLog]) -> str:
    return ",".join(sorted({u.summary.get("executor", "local") for u in units}))

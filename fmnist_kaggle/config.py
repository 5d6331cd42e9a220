"""Training configuration: defaults < recipe < TOML file (`--config`) < command-line flags."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fmnist_kaggle.errors import FkaggleError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "onecycle")
LOSSES = ("softmax", "sigmoid")
AUGMENTS = ("none", "jitter", "cropflip", "strong", "custom")
# Settings that change how fast a run goes, not what it computes: a resumed or sharded
# run may differ in these (e.g. folds spread over a GPU box and a laptop).
NON_SEMANTIC = {"device", "num_workers", "compile", "eval_batch_size", "channels_last", "amp", "progress"}


@dataclass
class TrainConfig:
    model: str = "seed000_bncnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # dropout, width, act, input_size, pretrained...
    folds: int = 5
    fold_seed: int = 42
    seeds: list[int] = field(default_factory=lambda: [0])
    subset: int = 0  # train on a stratified subset of this many rows (0 = all)
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1024
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0  # for cosine/constant; onecycle warms up for 25% of steps
    label_smoothing: float = 0.0
    loss: str = "softmax"
    augment: str = "none"
    augment_pipeline: list[dict[str, Any]] = field(default_factory=list)  # albumentations, for augment="custom"
    augment_backend: str = "auto"  # auto: batched tensor ops; "albumentations": per-sample pipeline
    tta: bool = False  # average logits with the horizontally flipped image
    patience: int = 0  # early-stopping patience in epochs (0: train all epochs, keep the best)
    normalize: bool = False  # (x - 0.286) / 0.353 instead of 0..1 inputs
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU), off, bf16, fp16
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    num_workers: int = 0

    def validate(self) -> "TrainConfig":
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}"),
            (self.augment in AUGMENTS, f"augment must be one of {AUGMENTS}"),
            (self.augment != "custom" or bool(self.augment_pipeline), "augment='custom' needs augment_pipeline"),
            (self.augment_backend in ("auto", "tensor", "albumentations"), "augment_backend must be auto, tensor or albumentations"),
            (self.amp in ("auto", "off", "bf16", "fp16"), "amp must be auto, off, bf16 or fp16"),
            (self.folds >= 2, "folds must be at least 2"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be positive"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (len(self.seeds) >= 1, "seeds must name at least one seed"),
        ]
        for ok, msg in checks:
            if not ok:
                raise FkaggleError(f"invalid training config: {msg}")
        return self

    def warnings(self) -> list[str]:
        """Legal but usually harmful settings, worth a line in the log."""
        out = []
        flips = self.augment in ("cropflip", "strong") or any("Flip" in str(s.get("name", "")) for s in self.augment_pipeline)
        if self.tta and not flips:
            out.append("warning: hflip TTA on a model trained without flips usually hurts (Fashion-MNIST shoes all face left); use --augment cropflip/strong or --no-tta")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def semantic(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in NON_SEMANTIC}


RECIPES: dict[str, dict[str, Any]] = {
    # 2 CPU cores: 5 folds in under 20 minutes (measured numbers in the README).
    "cpu": dict(
        model="fmnist_resnet", model_kwargs={"width": 16}, epochs=4, batch_size=256, optimizer="sgd", lr=0.2,
        momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
        augment="none", tta=False,  # no flips in training, so no flip TTA (it cost 0.45% here)
    ),
    # One GPU: wider residual net, crop+flip+erasing, label smoothing, one-cycle, hflip TTA.
    "strong": dict(
        model="fmnist_resnet", model_kwargs={"width": 64}, epochs=24, batch_size=512, optimizer="sgd", lr=0.4,
        momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
        augment="strong", tta=True,
    ),
    # The report systems, as their authors trained them (single split -> our k folds).
    "report000": dict(model="seed000_bncnn", epochs=20, batch_size=64, optimizer="adam", lr=1e-3, schedule="constant", augment="jitter"),
    "report001": dict(model="lenet5", epochs=25, batch_size=100, optimizer="adam", lr=1e-3, schedule="constant"),
    "report002": dict(model="seed002_vggish", epochs=400, batch_size=1024, optimizer="adam", lr=1e-4, schedule="constant"),
    "report003": dict(model="cnn2", epochs=10, batch_size=64, optimizer="adam", lr=3.593e-4, weight_decay=3.593e-4, schedule="constant", augment="cropflip"),
    "report004": dict(model="keras_model4", epochs=50, batch_size=128, optimizer="adam", lr=1e-3, schedule="constant"),
}


def parse_value(text: str) -> Any:
    """'0.3' -> 0.3, 'true' -> True, 'relu' -> 'relu' (TOML scalar rules, bare words as strings)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_toml(path: str | Path) -> dict[str, Any]:
    from fmnist_kaggle.tomlfile import read_table

    return read_table(path, "train", {f.name for f in fields(TrainConfig)} | {"recipe"}, "config file")


def build_config(recipe: str | None = None, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Merge recipe, TOML file and explicit overrides (None means 'not given')."""
    file_values = load_toml(config_file) if config_file else {}
    recipe = recipe or file_values.pop("recipe", None)
    file_values.pop("recipe", None)
    merged: dict[str, Any] = {}
    if recipe:
        if recipe not in RECIPES:
            raise FkaggleError(f"unknown recipe {recipe!r} (choose from {', '.join(RECIPES)})")
        merged.update(copy.deepcopy(RECIPES[recipe]))
    merged.update(file_values)
    given = {k: v for k, v in overrides.items() if v is not None}
    kwargs_given = given.pop("model_kwargs", None) or {}
    if "model" in given and given["model"] != merged.get("model"):
        merged["model_kwargs"] = {}  # the recipe's knobs belong to the recipe's model
    merged.update(given)
    merged["model_kwargs"] = {**merged.get("model_kwargs", {}), **kwargs_given}
    return TrainConfig(**merged).validate()


def to_toml(cfg: TrainConfig) -> str:
    import tomli_w

    return tomli_w.dumps({"train": cfg.to_dict()})

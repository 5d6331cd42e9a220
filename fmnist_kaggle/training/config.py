"""Training configuration: defaults < recipe < TOML file (`--config`) < command-line flags.

`TrainConfig` is the one source: each field's metadata holds its help text, choices, check,
whether it changes results (`semantic`) and whether it changes speed (`speed`: stored speeds
are kept per value of these). The CLI builds its options from these fields, so a new setting
is one line here. Recipes live in their registry (`training.recipes`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage.tomlfile import read_table
from fmnist_kaggle.training.recipes import AUGMENT_PRESETS, augment_flips, get_recipe, recipe_names

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "onecycle")
LOSSES = ("softmax", "sigmoid")
AUGMENTS = (*AUGMENT_PRESETS, "custom")
AUGMENT_BACKENDS = ("auto", "tensor", "albumentations")
AMP_MODES = ("auto", "off", "bf16", "fp16")
RESIZE_MODES = ("ramp", "step")

_POSITIVE = (lambda v: v > 0, "must be positive")
_NONNEG = (lambda v: v >= 0, "must be >= 0")
_SHARE = (lambda v: 0 < v <= 1, "must be in (0, 1]")
_SIDE = (lambda v: v == 0 or 8 <= v <= 28, "must be 0 (off) or 8..28")


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    check: tuple | None = None,
    semantic: bool = True,
    speed: bool = False,
    cli: bool = True,
    since: int = 0,
) -> Any:
    """A config field with its documentation. semantic=False: it changes speed, not results,
    so a resumed or sharded run may differ in it (folds spread over a GPU box and a laptop).
    speed=True: it changes how fast a step or a prediction runs, so a measured speed holds for
    one value of it (`speed_key`). since > 0: added after runs were recorded; at its default it
    stays out of run identities and speed keys, so those runs keep resuming and blending."""
    meta = {
        "help": help,
        "choices": choices,
        "check": check,
        "semantic": semantic,
        "speed": speed,
        "cli": cli,
        "since": since,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigIdentity:
    """What identifies a config (its dataclass fields): the values that change results (`semantic`,
    hashed into run identities) and those that change speed (`speed_key`, keying stored speeds)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def semantic(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.to_dict().items()
            if k in SEMANTIC and not (FIELDS[k].metadata["since"] and v == default_of(k))
        }

    def semantic_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.semantic(), sort_keys=True, default=str).encode()).hexdigest()

    def speed_key(self) -> str:
        """What identifies this config's speed: the values of the fields that change it (`speed`),
        those added since SPEED_KEY_SINCE left out at their defaults (older keys stay valid)."""
        values = [
            getattr(self, name)
            for name in SPEED
            if not (FIELDS[name].metadata["since"] >= SPEED_KEY_SINCE and getattr(self, name) == default_of(name))
        ]
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainConfig(ConfigIdentity):
    model: str = setting("seed000_bncnn", "registry name or timm:<name> (see `fkaggle models`)", speed=True)
    model_kwargs: dict[str, Any] = setting(
        {}, "model keywords: dropout, width, act, input_size, pretrained...", cli=False, speed=True
    )
    recipe: str | None = setting(
        None, "preset bundle the config started from (cpu, fast, strong, report000..report004)", semantic=False
    )
    folds: int = setting(5, "number of stratified folds", check=(lambda v: v >= 2, "must be at least 2"))
    fold_seed: int = setting(42, "seed of the fold assignment (same seed, same folds: blendable runs)", check=_NONNEG)
    seeds: list[int] = setting(
        [0],
        "comma-separated seeds; each fold is trained once per seed and averaged",
        check=(
            lambda v: len(v) >= 1 and len(set(v)) == len(v) and min(v) >= 0,
            "must name one or more different seeds, each >= 0",
        ),
    )
    subset: int = setting(0, "train on a stratified subset of N rows (0 = all; quick experiments)", check=_NONNEG)
    epochs: int = setting(10, "training epochs", check=_POSITIVE)
    max_steps: int = setting(
        0,
        "optimizer steps per (fold, seed), the schedule sized to them: the last epoch stops part-way "
        "(a fractional number of epochs; the autopilot's sizing); 0: every step of every epoch",
        check=_NONNEG,
        since=5,
    )
    batch_size: int = setting(128, "training batch size", check=_POSITIVE, speed=True)
    eval_batch_size: int = setting(
        0,
        "images a prediction pass takes, test-time views counted; 0: automatic (CPU: the largest batch whose "
        "activations fit the last-level cache, measured per model; GPU: 1024)",
        check=_NONNEG,
        semantic=False,
        speed=True,
    )
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "peak learning rate", check=_POSITIVE)
    momentum: float = setting(0.9, "SGD momentum", check=_NONNEG)
    nesterov: bool = setting(True, "Nesterov momentum for SGD")
    weight_decay: float = setting(0.0, "weight decay", check=_NONNEG)
    schedule: str = setting(
        "onecycle", "learning-rate schedule (onecycle warms up for 25%% of steps)", choices=SCHEDULES
    )
    warmup_epochs: float = setting(0.0, "linear warm-up epochs for cosine/constant", check=_NONNEG)
    label_smoothing: float = setting(0.0, "label smoothing", check=(lambda v: 0 <= v < 1, "must be in [0, 1)"))
    loss: str = setting("softmax", "softmax cross-entropy or one-vs-all sigmoid (report 003)", choices=LOSSES)
    augment: str = setting(
        "none",
        "augmentation preset: jitter, translate (random shifts of up to 2 px), "
        "cropflip (translate + horizontal flip), strong (cropflip + erasing), altflip (translate + "
        "alternating flip), altflip-cutout (altflip + a 10 px cutout square); custom: "
        "augment_pipeline from --config",
        choices=AUGMENTS,
        speed=True,
    )
    augment_pipeline: list[dict[str, Any]] = setting(
        [], "albumentations steps [{name, **params}] for augment='custom'", cli=False, speed=True
    )
    augment_backend: str = setting(
        "auto", "auto: batched tensor ops; albumentations: per-sample pipeline", choices=AUGMENT_BACKENDS, speed=True
    )
    pseudo_label: str = setting(
        "",
        "teacher run(s), comma-separated, of the same data and folds: fold k also "
        "trains on test rows labelled by the teachers' fold-k models",
    )
    pseudo_threshold: float = setting(
        0.9,
        "pseudo-label only test rows whose teacher probability reaches this",
        check=(lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    )
    pseudo_weight: float = setting(1.0, "loss weight of pseudo-labelled rows", check=_POSITIVE)
    distill_from: str = setting(
        "", "teacher run of the same data and folds: fold k also learns its fold-k model's soft predictions", since=7
    )
    distill_weight: float = setting(0.5, "share of the loss given to the teacher's soft targets", check=_SHARE, since=7)
    distill_temperature: float = setting(2.0, "softmax temperature of the distillation loss", check=_POSITIVE, since=7)
    init_from: str = setting(
        "",
        "run of the same data, folds and model to continue: fold k starts from its fold-k model, and this "
        "run's schedule starts anew",
        since=7,
    )
    # not a speed setting: speeds count full-size images, and estimates charge each step its pixels
    resize_from: int = setting(0, "progressive resizing: training starts at N x N px (0: off)", check=_SIDE, since=7)
    resize_until: float = setting(0.5, "share of the steps after which it trains at full size", check=_SHARE, since=7)
    resize_mode: str = setting(
        "ramp",
        "ramp: the side grows in 4 px steps; step: a first stage at --resize-from",
        choices=RESIZE_MODES,
        since=7,
    )
    tta: bool = setting(False, "average logits with the horizontally flipped image", speed=True)
    tta_shift: int = setting(
        0,
        "test-time shift views of N pixels (up, down, left, right; of each flip view too), logits averaged; 0 = off",
        check=_NONNEG,
        speed=True,
    )
    ema: float = setting(
        0.0,
        "EMA decay of the weights (timm ModelEmaV3, with warm-up), used for validation, "
        "OOF and test predictions; 0 = off",
        check=(lambda v: 0 <= v < 1, "must be in [0, 1)"),
        speed=True,
    )
    lookahead: float = setting(
        0.0,
        "lookahead decay per step (airbench): every 5 steps the weights are averaged "
        "into a slow copy that is written back into the net; the decay falls with "
        "the learning rate (x lr_factor^3); 0 = off",
        check=(lambda v: 0 <= v < 1, "must be in [0, 1)"),
        speed=True,
        since=4,
    )
    bn_freeze_scale: bool = setting(False, "keep batch-norm scales at their initial 1 (not trained)", since=4)
    bn_bias_lr: float = setting(
        1.0,
        "learning-rate multiplier of batch-norm biases and the whitening stem's "
        "bias; their weight decay is divided by it (the same decay per step)",
        check=_POSITIVE,
        since=4,
    )
    mixup: float = setting(
        0.0, "mixup alpha (timm Mixup, per sample, with --label-smoothing); 0 = off", check=_NONNEG, speed=True
    )
    cutmix: float = setting(
        0.0,
        "cutmix alpha (timm Mixup, per sample; with --mixup too, each sample picks one at p=0.5); 0 = off",
        check=_NONNEG,
        speed=True,
    )
    patience: int = setting(
        0, "early-stopping patience in epochs (needs --select-epoch; 0: train all epochs)", check=_NONNEG
    )
    eval_every: int = setting(
        1,
        "validate every N epochs and after the last (the learning curves; with --select-epoch, the epochs "
        "considered); 0: after the last only (a validation pass saved per epoch)",
        check=_NONNEG,
        since=3,
    )
    select_epoch: bool = setting(
        False,
        "keep the epoch with the lowest validation loss instead of the last: chosen on the rows it scores, so "
        "its CV is optimistic (marked so wherever it is shown); default: the sized schedule's last epoch",
        since=5,
    )
    normalize: bool = setting(False, "standardize inputs, (x - 0.286) / 0.353, instead of 0..1")
    amp: str = setting(
        "auto",
        "mixed precision: auto (CUDA: bf16, else fp16; CPU: bf16 where the CPU "
        "has it natively, else fp32), off, bf16, fp16 (CUDA)",
        choices=AMP_MODES,
        semantic=False,
        speed=True,
    )
    channels_last: bool = setting(True, "channels_last memory format", semantic=False, speed=True)
    compile: bool = setting(False, "torch.compile the model", semantic=False, speed=True)
    device: str = setting("auto", "auto, cpu, cuda, cuda:1 ...", semantic=False, speed=True)
    num_workers: int = setting(
        0, "DataLoader workers (albumentations backend only)", check=_NONNEG, semantic=False, speed=True
    )

    def validate(self) -> "TrainConfig":
        """Each field's type, choices, finiteness and check, then the combinations; raises one line."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        _check_combinations(self)
        return self

    def teachers(self) -> list[str]:
        return [t.strip() for t in self.pseudo_label.split(",") if t.strip()]

    def warnings(self) -> list[str]:
        """Legal but usually harmful settings, worth a line in the log."""
        if self.tta and not augment_flips(self.augment, self.augment_pipeline):
            return [
                "warning: hflip TTA on a model trained without flips usually hurts (Fashion-MNIST "
                "shoes all face left); use --augment cropflip/strong or --no-tta"
            ]
        return []

    def steps_per_epoch(self, train_rows: int) -> int:
        """Optimizer steps of one epoch over `train_rows` rows: the ragged last batch is dropped
        (batch norm on tiny batches), and a batch larger than the rows takes them all."""
        return max(1, train_rows // max(1, min(self.batch_size, train_rows)))

    def total_steps(self, train_rows: int) -> int:
        """Optimizer steps of one (fold, seed): every epoch's, or max_steps when that is fewer."""
        every = self.steps_per_epoch(train_rows) * self.epochs
        return min(every, self.max_steps) if self.max_steps else every


def _check_field(f: Field, value: Any) -> None:
    wrong = _wrong_type(f.name, value)
    if wrong:
        raise FkaggleError(f"invalid training config: {f.name} must be {wrong}, got {value!r}")
    choices, check = f.metadata["choices"], f.metadata["check"]
    if choices and value not in choices:
        raise FkaggleError(f"invalid training config: {f.name} must be one of {', '.join(choices)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FkaggleError(f"invalid training config: {f.name} must be a finite number, got {value!r}")
    try:
        ok = not check or check[0](value)
    except TypeError:
        ok = False
    if not ok:
        raise FkaggleError(f"invalid training config: {f.name} {check[1]}, got {value!r}")


def per_sample_pipeline(cfg: TrainConfig) -> bool:
    """Whether batches come through albumentations, a sample at a time (a custom pipeline or the
    backend asked for), rather than the tensor path, which alone carries row weights and targets."""
    return cfg.augment == "custom" or cfg.augment_backend == "albumentations"


def _check_combinations(cfg: TrainConfig) -> None:
    """Settings legal alone but not together."""
    if (cfg.mixup or cfg.cutmix) and cfg.batch_size % 2:
        raise FkaggleError(
            "invalid training config: mixup/cutmix pair each sample with another, so "
            f"batch_size must be even, got {cfg.batch_size}"
        )
    if cfg.pseudo_label and per_sample_pipeline(cfg):
        raise FkaggleError(
            "invalid training config: pseudo-labels train on the tensor path (augment "
            "presets, augment_backend auto/tensor)"
        )
    if cfg.distill_from and (cfg.pseudo_label or cfg.mixup or cfg.cutmix or per_sample_pipeline(cfg)):
        raise FkaggleError(
            "invalid training config: distillation (distill_from) learns one teacher's targets for the fold's own "
            "rows on the tensor path: not with pseudo-labels, mixup/cutmix or a per-sample augmentation pipeline"
        )
    if cfg.augment == "custom" and not cfg.augment_pipeline:
        raise FkaggleError("invalid training config: augment='custom' needs augment_pipeline")
    if cfg.model_kwargs.get("freeze_backbone") and not cfg.model_kwargs.get("pretrained"):
        raise FkaggleError(
            "--freeze-backbone trains only the classifier on the backbone's features: without --pretrained FILE "
            "they are random and the run scores near chance"
        )
    if cfg.patience and not cfg.select_epoch:
        raise FkaggleError(
            "invalid training config: early stopping (patience) chooses an epoch on the validation rows: "
            "it needs --select-epoch (whose CV is then marked optimistic)"
        )
    if cfg.patience and cfg.eval_every != 1:
        raise FkaggleError(
            "invalid training config: early stopping (patience) needs a validation every epoch (eval_every = 1)"
        )
    if cfg.recipe is not None and cfg.recipe not in recipe_names():
        raise FkaggleError(f"unknown recipe {cfg.recipe!r} (choose from {', '.join(recipe_names())})")


def selects_epoch(config: dict[str, Any]) -> bool:
    """Whether a run's recorded config chose its epoch on the rows it scores (optimistic CV): set by
    --select-epoch, and what every run validating more than once did before the option existed."""
    if "select_epoch" in config:
        return bool(config["select_epoch"])
    return config.get("eval_every", 1) != 0 and config.get("epochs", 1) > 1


def _wrong_type(name: str, value: Any) -> str | None:
    """What a field's value must be when it is not (a TOML file can hold anything): None when fine.
    Whole-number fields refuse 2.5 and 2.0 alike, and no number field takes a bool or a string."""
    default = default_of(name)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if number and isinstance(value, int) else "a whole number"
    if isinstance(default, float):
        return None if number else "a number"
    if isinstance(default, str) or (default is None and name == "recipe"):
        return None if isinstance(value, str) or (default is None and value is None) else "text"
    if name == "seeds":
        return (
            None
            if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            else "a list of whole numbers"
        )
    if isinstance(default, list):
        return None if isinstance(value, list) else "a list"
    if isinstance(default, dict):
        return None if isinstance(value, dict) else "a table"
    return None


FIELDS: dict[str, Field] = {f.name: f for f in fields(TrainConfig)}
SEMANTIC = {name for name, f in FIELDS.items() if f.metadata["semantic"]}
SPEED = tuple(name for name, f in FIELDS.items() if f.metadata["speed"])
SPEED_KEY_SINCE = 6  # speed settings added from then on are left out of speed keys at their defaults


def default_of(name: str) -> Any:
    f = FIELDS[name]
    return f.default_factory() if f.default is MISSING else f.default


def parse_value(text: str) -> Any:
    """'0.3' -> 0.3, 'true' -> True, 'relu' -> 'relu' (TOML scalar rules, bare words as strings)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """['dropout=0.3', 'act=tanh'] -> {'dropout': 0.3, 'act': 'tanh'}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FkaggleError(f"{option} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    return read_table(path, "train", FIELDS, "config file")


def build_config(recipe: str | None = None, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Merge recipe, TOML file and explicit overrides (None means 'not given')."""
    file_values = load_toml(config_file) if config_file else {}
    recipe = recipe or file_values.get("recipe")
    merged: dict[str, Any] = {}
    if recipe:
        merged.update(get_recipe(recipe).values())
    merged.update(file_values)
    merged["recipe"] = recipe
    given = {k: v for k, v in overrides.items() if v is not None}
    kwargs_given = given.pop("model_kwargs", None) or {}
    if "model" in given and given["model"] != merged.get("model"):
        merged["model_kwargs"] = {}  # the recipe's knobs belong to the recipe's model
    merged.update(given)
    merged["model_kwargs"] = {**merged.get("model_kwargs", {}), **kwargs_given}
    try:
        return TrainConfig(**merged).validate()
    except TypeError as exc:  # a wrongly typed value from a TOML file
        raise FkaggleError(f"invalid training config: {exc}") from None


def to_toml(cfg: TrainConfig, leave_out: tuple[str, ...] = ()) -> str:
    return tomli_w.dumps({"train": {k: v for k, v in cfg.to_dict().items() if v is not None and k not in leave_out}})

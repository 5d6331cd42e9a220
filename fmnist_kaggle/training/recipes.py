"""The recipe registry (timm style): each recipe is registered once, with its settings, the hardware
it was made for and why; `fold-train --recipe`, `fkaggle models`, the driver's warnings and the
autopilot's portfolio (`train = { recipe = "fast" }`) all read it here. Adding a recipe is one
`register_recipe` call in this file.

The augmentation presets are the other named bundles of training settings: `AUGMENT_PRESETS` is
their one table (each preset's operations, in order), read by the config's choices and by both
augmentation backends (`training.augment`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from fmnist_kaggle.errors import FkaggleError

HARDWARE = ("cpu", "gpu", "report")  # made for 2 CPU cores, for one GPU, as a report's authors trained it

# Each augmentation preset's operations, in the order they apply.
AUGMENT_PRESETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "jitter": ("jitter",),  # brightness/contrast +-0.2 (report 000)
    "translate": ("translate",),  # shifts of up to 2 px, background-filled
    "cropflip": ("translate", "flip"),  # + a horizontal flip of half the images (report 003)
    "strong": ("translate", "flip", "erase"),  # + random erasing
    "altflip": ("translate", "altflip"),  # translate + airbench's alternating flip
    "altflip-cutout": ("translate", "altflip", "cutout"),  # + one cutout square (airbench96)
}


def augment_flips(preset: str, pipeline: list[dict[str, Any]] = ()) -> bool:  # type: ignore[assignment]
    """Whether training sees mirrored images (flip test-time views help only then)."""
    ops = AUGMENT_PRESETS.get(preset, ())
    return bool({"flip", "altflip"} & set(ops)) or any("Flip" in str(s.get("name", "")) for s in pipeline)


@dataclass(frozen=True)
class Recipe:
    """A named bundle of training settings (any `TrainConfig` field) and what it is for."""

    name: str
    hardware: str
    why: str
    settings: dict[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        """A copy of the settings, safe to merge into."""
        return copy.deepcopy(self.settings)


_RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, hardware: str, why: str, **settings: Any) -> Recipe:
    """Add a recipe to the registry (names are unique)."""
    if name in _RECIPES:
        raise ValueError(f"recipe {name!r} is registered twice")
    if hardware not in HARDWARE:
        raise ValueError(f"recipe {name!r}: hardware must be one of {HARDWARE}, got {hardware!r}")
    _RECIPES[name] = Recipe(name, hardware, why, copy.deepcopy(settings))  # shared bases stay unshared
    return _RECIPES[name]


def get_recipe(name: str) -> Recipe:
    if name not in _RECIPES:
        raise FkaggleError(f"unknown recipe {name!r} (choose from {', '.join(_RECIPES)})")
    return _RECIPES[name]


def recipe_names(hardware: str | None = None) -> tuple[str, ...]:
    """Every recipe's name (or those made for `hardware`), in registration order."""
    return tuple(n for n, r in _RECIPES.items() if hardware is None or r.hardware == hardware)


_SGD = dict(optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle")
_FAST = dict(  # `fast` and `fast-aug` share everything but their length and augmentation
    model="fmnist_resnet",
    model_kwargs={"width": 16, "stem": "whiten", "bn_momentum": 0.4},
    batch_size=256,
    **_SGD,
    label_smoothing=0.1,
    bn_freeze_scale=True,
    bn_bias_lr=64.0,
)

register_recipe(
    "cpu",
    "cpu",
    "2 CPU cores: 5 folds in ~15 min with bf16. 8 epochs: the best CV found within 20 min (official test 4 "
    "epochs: 93.95%; 8: 94.58%; 10: 94.62% at lower CV; cropflip or 3 folds x 12: less; docs/results.md). "
    "No flips in training, so no flip TTA (it cost 0.45% here)",
    model="fmnist_resnet",
    model_kwargs={"width": 16},
    epochs=8,
    batch_size=256,
    **_SGD,
    label_smoothing=0.1,
    augment="none",
    tta=False,
)
register_recipe(
    "fast",
    "cpu",
    "`cpu` plus what of airbench's lessons helped on 2 CPU cores (docs/results.md ablation, one fold at 3 "
    "epochs): a frozen patch-whitening stem fit on the fold's training rows, frozen BN scales, 64x BN-bias "
    "learning rate, BN momentum 0.4. Dirac init, lookahead, label smoothing 0.2, pool-before-BN and +-2 px "
    "translations with shift TTA did not help at this budget",
    **_FAST,
    epochs=8,
    augment="none",
    tta=False,
)
register_recipe(
    "fast-aug",
    "cpu",
    "`fast` with augmentation that pays as runs grow longer: +-2 px translations and a horizontal flip of "
    "half the images, and flip test-time views (docs/results.md: on fold 0, width 16, held-out accuracy "
    "94.17% at 8 epochs, 94.93% at 16, 95.10% at 32, where plain `fast` peaks near 94.2% at 4)",
    **_FAST,
    epochs=16,
    augment="cropflip",
    tta=True,
)
register_recipe(
    "strong",
    "gpu",
    "One GPU: wider residual net, crop+flip+erasing, label smoothing, one-cycle, hflip TTA",
    model="fmnist_resnet",
    model_kwargs={"width": 64},
    epochs=24,
    batch_size=512,
    **{**_SGD, "lr": 0.4},
    label_smoothing=0.1,
    augment="strong",
    tta=True,
)
register_recipe(
    "gpu96",
    "gpu",
    "airbench96's lessons scaled to 28x28 for one GPU: twice the `strong` width, translations with the "
    "alternating flip and a 10 px cutout, flip test-time views, longer one-cycle runs (not yet measured on a "
    "GPU: bench/gpu.sh measures it where one is lent)",
    model="fmnist_resnet",
    model_kwargs={"width": 128},
    epochs=60,
    batch_size=512,
    **{**_SGD, "lr": 0.4},
    label_smoothing=0.1,
    augment="altflip-cutout",
    tta=True,
)
# The report systems, as their authors trained them (single split -> our k folds).
_ADAM = dict(optimizer="adam", lr=1e-3, schedule="constant")
register_recipe(
    "report000", "report", "report 000", model="seed000_bncnn", epochs=20, batch_size=64, **_ADAM, augment="jitter"
)
register_recipe("report001", "report", "report 001", model="lenet5", epochs=25, batch_size=100, **_ADAM)
register_recipe(
    "report002", "report", "report 002", model="seed002_vggish", epochs=400, batch_size=1024, **{**_ADAM, "lr": 1e-4}
)
register_recipe(
    "report003",
    "report",
    "report 003",
    model="cnn2",
    epochs=10,
    batch_size=64,
    **{**_ADAM, "lr": 3.593e-4},
    weight_decay=3.593e-4,
    augment="cropflip",
)
register_recipe("report004", "report", "report 004", model="keras_model4", epochs=50, batch_size=128, **_ADAM)

"""Blend methods: one module per method in this folder, named as `--method` names it.

An unfitted method defines `FITTED = False` and `combine(oofs, tests, space) -> (oof, test,
details)` on the runs' logits, returning log-probabilities. A fitted one defines `FITTED = True`,
`make(seed, temperature)` returning a scikit-learn-style estimator on X = (N, runs, K) logits
(fit / predict_log_proba), and `describe(fitted, run_names)`; `evaluate.blend` scores it nested.
Listing the methods imports none of them (scikit-learn and SciPy load when one is used).
"""

from __future__ import annotations

from types import ModuleType

from fmnist_kaggle import registry


def blender_names() -> tuple[str, ...]:
    return registry.names(__name__)


def load_blender(name: str) -> ModuleType:
    return registry.load(__name__, name, "blend method")

"""Blend the OOF/test logits of several runs, with an honest CV estimate.

Every method returns log-probabilities for the OOF rows and the test rows. Methods that
fit something on OOF predictions (weights, a selection, a level-2 model, a temperature)
are scored nested: fitted on k-1 folds, scored on the held-out fold, with the runs' own
fold assignment. The final fit uses all OOF rows and is applied to the test logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs import Run

METHODS = ("mean", "geomean", "rank", "weighted", "hillclimb", "stack")
FITTED = ("weighted", "hillclimb", "stack")


def check_compatible(runs: list[Run]) -> None:
    """Refuse runs trained on different data or folds: their OOF rows would leak."""
    if not runs:
        raise FkaggleError("no runs to blend")
    ref = runs[0].manifest["data"]
    for run in runs[1:]:
        d = run.manifest["data"]
        for key, what in (("data_fingerprint", "training data"), ("folds_fingerprint", "fold assignment"), ("test_fingerprint", "test data"), ("label_values", "classes")):
            if d.get(key) != ref.get(key):
                raise FkaggleError(
                    f"run {run.name} has a different {what} than {runs[0].name}; blending them would leak validation rows "
                    f"into the CV estimate (retrain with the same data, --folds and --fold-seed)"
                )


@dataclass
class BlendResult:
    method: str
    oof: np.ndarray  # log-probabilities (N_train, K)
    test: np.ndarray  # log-probabilities (N_test, K)
    cv_acc: float
    cv_logloss: float
    insample_acc: float | None = None  # fitted methods: the optimistic in-sample score, for contrast
    insample_logloss: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _logprobs(logits: np.ndarray) -> np.ndarray:
    return metrics.log_softmax(np.asarray(logits, dtype=np.float64))


def _mix(logps: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Arithmetic pool: weighted mean of probabilities."""
    p = sum(wi * np.exp(lp) for wi, lp in zip(w, logps))
    return np.log(np.clip(p, 1e-15, None))


def _pool(logps: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Log-linear (geometric) pool: softmax of the weighted sum of log-probabilities.

    Unlike a mean of probabilities it lets runs' different systematic errors cancel,
    and its log-loss is convex in the weights, so the fitted weights are well defined.
    """
    return metrics.log_softmax(sum(wi * lp for wi, lp in zip(w, logps)))


def _nll(logp: np.ndarray, y: np.ndarray) -> float:
    return float(-np.clip(logp[np.arange(len(y)), y], np.log(1e-15), 0).mean())


# ----------------------------------------------------------------------------- unfitted


def blend_mean(oofs: list[np.ndarray], tests: list[np.ndarray], space: str = "prob") -> tuple[np.ndarray, np.ndarray]:
    if space == "logit":
        return _logprobs(np.mean(oofs, axis=0)), _logprobs(np.mean(tests, axis=0))
    w = np.full(len(oofs), 1 / len(oofs))
    return _mix([_logprobs(o) for o in oofs], w), _mix([_logprobs(t) for t in tests], w)


def blend_geomean(oofs: list[np.ndarray], tests: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _logprobs(np.mean([_logprobs(o) for o in oofs], axis=0)), _logprobs(np.mean([_logprobs(t) for t in tests], axis=0))


def _rank(p: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(p, axis=0) / len(p)


def blend_rank(oofs: list[np.ndarray], tests: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Average per-class ranks (rows ranked within each class column), normalized per row.

    Good for AUC-like metrics; its 'probabilities' are not calibrated, so its log-loss is poor.
    """

    def go(arrs: list[np.ndarray]) -> np.ndarray:
        r = np.mean([_rank(metrics.softmax(a)) for a in arrs], axis=0)
        return np.log(np.clip(r / r.sum(axis=1, keepdims=True), 1e-15, None))

    return go(oofs), go(tests)


# ----------------------------------------------------------------------------- fitted


def fit_weights(logps: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Simplex weights minimizing the OOF log-loss of the log-linear pool (softmax-parametrized)."""
    from scipy.optimize import minimize

    lp = np.stack(logps)  # (R, N, K)
    rows = np.arange(len(y))
    true_lp = lp[:, rows, y]  # (R, N)

    def f(z: np.ndarray) -> tuple[float, np.ndarray]:
        w = np.exp(z - z.max())
        w /= w.sum()
        pooled = np.tensordot(w, lp, axes=1)  # (N, K)
        logp = metrics.log_softmax(pooled)
        p = np.exp(logp)
        loss = -logp[rows, y].mean()
        grad_w = (-true_lp + np.einsum("nk,rnk->rn", p, lp)).mean(axis=1)
        return float(loss), w * (grad_w - (w * grad_w).sum())

    res = minimize(f, np.zeros(len(logps)), jac=True, method="L-BFGS-B")
    w = np.exp(res.x - res.x.max())
    return w / w.sum()


def fit_hillclimb(logps: list[np.ndarray], y: np.ndarray, iters: int = 40, bags: int = 10, bag_frac: float = 0.6, seed: int = 0) -> np.ndarray:
    """Caruana ensemble selection: greedily add (with replacement) the run that most lowers
    the OOF log-loss of the (log-linear) average, keep the best prefix of that path.

    Bagged over random subsets of runs when there are enough of them (>= 6) to make
    subsets meaningful. Returns selection counts normalized to weights.
    """
    rng = np.random.default_rng(seed)
    r = len(logps)
    counts = np.zeros(r)
    for _ in range(bags if r >= 6 else 1):
        pool = rng.choice(r, size=max(2, int(round(bag_frac * r))), replace=False) if r >= 6 else np.arange(r)
        total = np.zeros_like(logps[0])
        path: list[int] = []
        best_loss, best_len = np.inf, 0
        for step in range(1, iters + 1):
            losses = [_nll(metrics.log_softmax((total + logps[m]) / step), y) for m in pool]
            m = int(pool[int(np.argmin(losses))])
            path.append(m)
            total = total + logps[m]
            if min(losses) < best_loss - 1e-12:
                best_loss, best_len = min(losses), step
            elif step - best_len >= 8:  # the path has stopped improving
                break
        for m in path[:best_len]:
            counts[m] += 1 / best_len
    return counts / counts.sum()


class _Stacker:
    """Level-2 logistic regression on the runs' log-probabilities, optional temperature."""

    def __init__(self, C: float = 1.0, temperature: bool = False) -> None:
        self.C, self.temperature, self.T = C, temperature, 1.0

    def _features(self, logps: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(logps, axis=1)

    def fit(self, logps: list[np.ndarray], y: np.ndarray) -> "_Stacker":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # log-probabilities span ~[-30, 0]: standardize so lbfgs converges
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000)).fit(self._features(logps), y)
        if self.temperature:
            self.T = fit_temperature(self.model.decision_function(self._features(logps)), y)
        return self

    def predict(self, logps: list[np.ndarray]) -> np.ndarray:
        z = self.model.decision_function(self._features(logps))
        return metrics.log_softmax(z / self.T)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Scalar T minimizing the log-loss of softmax(logits / T): undoes over/under-confidence
    (label smoothing makes a model under-confident), which log-loss weights would punish."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    return float(minimize_scalar(lambda t: _nll(metrics.log_softmax(z / t), y), bounds=(0.05, 20), method="bounded").x)


def _nested(fit_predict: Callable[[list[np.ndarray], np.ndarray, list[np.ndarray]], np.ndarray], logps: list[np.ndarray], y: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """OOF predictions of a fitted blender: fit on k-1 folds, predict the held-out fold."""
    out = np.zeros_like(logps[0])
    for f in np.unique(fold_of):
        tr, va = fold_of != f, fold_of == f
        out[va] = fit_predict([lp[tr] for lp in logps], y[tr], [lp[va] for lp in logps])
    return out


def blend(runs: list[Run], labels: np.ndarray, method: str = "mean", space: str = "prob", temperature: bool = False, seed: int = 0) -> BlendResult:
    """Blend finished runs; `labels` are the training labels (0..K-1) the OOF rows belong to."""
    if method not in METHODS:
        raise FkaggleError(f"unknown blend method {method!r} (choose from {', '.join(METHODS)})")
    check_compatible(runs)
    oofs = [r.oof_logits for r in runs]
    tests = [r.test_logits for r in runs]
    fold_of = runs[0].fold_of
    details: dict[str, Any] = {"runs": [r.name for r in runs]}
    if method in ("mean", "geomean", "rank"):
        oof, test = {"mean": lambda: blend_mean(oofs, tests, space), "geomean": lambda: blend_geomean(oofs, tests), "rank": lambda: blend_rank(oofs, tests)}[method]()
        details["space"] = space if method == "mean" else ("log-prob" if method == "geomean" else "rank")
        return BlendResult(method, oof, test, metrics.accuracy(oof, labels), _nll(oof, labels), details=details)

    lo = [_logprobs(o) for o in oofs]
    lt = [_logprobs(t) for t in tests]
    if method == "stack":

        def fit_predict(a: list[np.ndarray], y: np.ndarray, b: list[np.ndarray]) -> np.ndarray:
            return _Stacker(temperature=temperature).fit(a, y).predict(b)

        final = _Stacker(temperature=temperature).fit(lo, labels)
        test, insample = final.predict(lt), final.predict(lo)
        details.update(level2="StandardScaler + LogisticRegression(C=1.0)", temperature=final.T)
        inputs = lo
    else:
        # each run is temperature-calibrated, then pooled log-linearly; all fitted inside the nesting
        fit_mix = fit_weights if method == "weighted" else (lambda a, y: fit_hillclimb(a, y, seed=seed))

        def fit(a: list[np.ndarray], y: np.ndarray) -> tuple[list[float], np.ndarray, float]:
            temps = [fit_temperature(z, y) for z in a]
            calibrated = [_logprobs(z / t) for z, t in zip(a, temps)]
            w = fit_mix(calibrated, y)
            # weights on the simplex fix the pool's scale; one temperature restores it
            return temps, w, fit_temperature(_pool(calibrated, w), y)

        def apply(b: list[np.ndarray], temps: list[float], w: np.ndarray, t_pool: float) -> np.ndarray:
            return _logprobs(_pool([_logprobs(z / t) for z, t in zip(b, temps)], w) / t_pool)

        def fit_predict(a: list[np.ndarray], y: np.ndarray, b: list[np.ndarray]) -> np.ndarray:
            return apply(b, *fit(a, y))

        temps, w, t_pool = fit(oofs, labels)
        test, insample = apply(tests, temps, w, t_pool), apply(oofs, temps, w, t_pool)
        details["weights"] = {r.name: round(float(wi), 4) for r, wi in zip(runs, w)}
        details["temperatures"] = {r.name: round(t, 4) for r, t in zip(runs, temps)}
        details["pool_temperature"] = round(t_pool, 4)
        inputs = oofs  # calibration is part of the fit, so nesting starts from raw logits
    nested = _nested(fit_predict, inputs, labels, fold_of)
    return BlendResult(
        method, nested, test, metrics.accuracy(nested, labels), _nll(nested, labels),
        insample_acc=metrics.accuracy(insample, labels), insample_logloss=_nll(insample, labels), details=details,
    )  # fmt: skip


def single_run(run: Run, labels: np.ndarray) -> BlendResult:
    """A run on its own, in the same shape as a blend (for `fkaggle blend RUN`)."""
    oof, test = _logprobs(run.oof_logits), _logprobs(run.test_logits)
    return BlendResult("single", oof, test, metrics.accuracy(oof, labels), _nll(oof, labels), details={"runs": [run.name]})

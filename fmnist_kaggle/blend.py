"""Blend the OOF/test logits of several runs, with an honest CV estimate.

Every method returns log-probabilities for the OOF rows and the test rows. Methods that
fit something on OOF predictions (weights, a selection, a level-2 model, a temperature)
are scored nested: fitted on k-1 folds, scored on the held-out fold, with the runs' own
fold assignment. The final fit uses all OOF rows and is applied to the test logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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


# ----------------------------------------------------------------------------- unfitted


def blend_mean(oofs: list[np.ndarray], tests: list[np.ndarray], space: str = "prob") -> tuple[np.ndarray, np.ndarray]:
    if space == "logit":
        return _logprobs(np.mean(oofs, axis=0)), _logprobs(np.mean(tests, axis=0))
    w = np.full(len(oofs), 1 / len(oofs))
    return _mix([_logprobs(o) for o in oofs], w), _mix([_logprobs(t) for t in tests], w)


def blend_geomean(oofs: list[np.ndarray], tests: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _logprobs(np.mean([_logprobs(o) for o in oofs], axis=0)), _logprobs(np.mean([_logprobs(t) for t in tests], axis=0))


def _rank(p: np.ndarray) -> np.ndarray:
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
    pools = [rng.choice(r, size=max(2, int(round(bag_frac * r))), replace=False) if r >= 6 else np.arange(r) for _ in range(bags if r >= 6 else 1)]
    counts = np.zeros(r)
    for path, best_len in _climb(np.stack(logps), y, pools, iters):
        for m in path[:best_len]:
            counts[m] += 1 / best_len
    return counts / counts.sum()


def _climb(lp: np.ndarray, y: np.ndarray, pools: list[np.ndarray], iters: int) -> list[tuple[list[int], int]]:
    """All bags' selection paths, stepped together.

    At step s the pooled candidate (total_b + lp_r) / s of bag b and run r has the
    log-sum-exp a_b + a_r + log sum_k exp(total_b/s - a_b) exp(lp_r/s - a_r) (a: per-row
    maxima), so one batched (bags x K) @ (K x runs) product per row scores every candidate
    of every bag: one exp per run and per bag instead of one per candidate. In float32 (the
    terms are small and torch sums pairwise): the selections of scoring each candidate with
    metrics.log_loss in float64 (tested), ~10x faster."""
    import torch

    L = torch.from_numpy(np.ascontiguousarray(lp, dtype=np.float32))  # (R, N, K)
    rows, yt = torch.arange(L.shape[1]), torch.from_numpy(np.asarray(y, dtype=np.int64))
    L_true = L[:, rows, yt]  # (R, N)
    L_max = L.amax(2)
    below_max, true_gap = L - L_max[..., None], L_max - L_true  # the runs' side, scaled by 1/s each step
    in_pool = torch.zeros((len(pools), len(L)), dtype=torch.bool)
    for b, pool in enumerate(pools):
        in_pool[b, torch.from_numpy(np.asarray(pool))] = True
    total = torch.zeros((len(pools), *L.shape[1:]))
    total_true = torch.zeros((len(pools), L.shape[1]))
    paths: list[list[int]] = [[] for _ in pools]
    best = [(np.inf, 0) for _ in pools]
    active = list(range(len(pools)))
    lo, hi = -np.log1p(-1e-15), -np.log(1e-15)  # metrics.log_loss's clip, on -log p
    for step in range(1, iters + 1):
        if not active:
            break
        bag = total[active] / step
        a_bag = bag.amax(2)  # per-row maxima keep the exps in range
        mix = torch.einsum("bnk,rnk->brn", torch.exp(bag - a_bag[..., None]), torch.exp(below_max / step))
        # -log p(true) = (a_bag - true_bag) + (a_run - true_run) + log(mix): small terms, float32 is enough
        nll = mix.log_().add_((a_bag - total_true[active] / step)[:, None, :]).add_((true_gap / step)[None])
        losses = nll.clamp_(lo, hi).mean(2).double()  # (B, R); torch sums float32 pairwise
        losses[~in_pool[active]] = np.inf
        for j, b in enumerate(list(active)):
            row = losses[j]
            if not torch.isfinite(row[in_pool[b]]).all():  # exps underflowed together: score directly
                row = torch.tensor([metrics.log_loss((total[b].double().numpy() + lp[m]) / step, y) if in_pool[b, m] else np.inf for m in range(len(L))])
            m = int(torch.argmin(row))
            paths[b].append(m)
            total[b] += L[m]
            total_true[b] += L_true[m]
            if float(row[m]) < best[b][0] - 1e-12:
                best[b] = (float(row[m]), step)
            elif step - best[b][1] >= 8:  # the path has stopped improving
                active.remove(b)
    return [(p, n) for p, (_, n) in zip(paths, best)]


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Scalar T minimizing the log-loss of softmax(logits / T): undoes over/under-confidence
    (label smoothing makes a model under-confident), which log-loss weights would punish.

    The log-loss is convex in beta = 1/T (its second derivative is the mean variance of the
    logits under the predicted distribution), so a damped Newton iteration on beta converges
    in a few passes over the rows; T is kept in [0.05, 20]. Logits are shifted to a row
    maximum of 0 (the loss is shift-invariant), so exp(beta * z) needs no log-sum-exp. One run
    per call: fitting a stack of runs at once was 3x slower (it leaves the cache)."""
    import torch

    z = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    z = z - z.amax(1, keepdim=True)
    zy = z[torch.arange(len(y)), torch.from_numpy(np.asarray(y, dtype=np.int64))]

    def stats(beta: float) -> tuple[float, float, float]:  # loss and its first two derivatives in beta
        e = torch.exp(z * beta)
        s, ez = e.sum(1), e.mul_(z).sum(1)
        ez2 = e.mul_(z).sum(1).div_(s)
        ez.div_(s)
        mean = lambda t: float(t.mean(dtype=torch.float64))  # noqa: E731
        return mean(s.log_() - beta * zy), mean(ez - zy), mean(ez2 - ez**2)

    beta, (f, g, h) = 1.0, stats(1.0)
    for _ in range(100):
        new = float(np.clip(beta - g / h if h > 1e-12 else beta, 1 / 20, 1 / 0.05))
        f2, g2, h2 = stats(new)
        while f2 > f and abs(new - beta) > 1e-12:  # damped: never accept a worse beta
            new = (new + beta) / 2
            f2, g2, h2 = stats(new)
        done = abs(new - beta) <= 1e-6 * beta
        beta, f, g, h = new, f2, g2, h2
        if done:
            break
    return 1 / beta


class PoolBlender(ClassifierMixin, BaseEstimator):
    """Each run temperature-calibrated, pooled log-linearly with fitted simplex weights
    (`weighted`: L-BFGS on the log-loss; `hillclimb`: Caruana selection), then one pool
    temperature, since weights on the simplex fix the pool's scale. X: (N, runs, K) logits."""

    def __init__(self, method: str = "weighted", seed: int = 0) -> None:
        self.method = method
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PoolBlender":
        runs = list(np.swapaxes(X, 0, 1))
        self.temperatures_ = [fit_temperature(z, y) for z in runs]
        calibrated = [_logprobs(z / t) for z, t in zip(runs, self.temperatures_)]
        self.weights_ = fit_weights(calibrated, y) if self.method == "weighted" else fit_hillclimb(calibrated, y, seed=self.seed)
        self.pool_temperature_ = fit_temperature(_pool(calibrated, self.weights_), y)
        self.classes_ = np.arange(X.shape[2])
        return self

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        calibrated = [_logprobs(z / t) for z, t in zip(np.swapaxes(X, 0, 1), self.temperatures_)]
        return _logprobs(_pool(calibrated, self.weights_) / self.pool_temperature_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_log_proba(X).argmax(1)


class StackBlender(ClassifierMixin, BaseEstimator):
    """Level-2 logistic regression on the runs' log-probabilities, optional temperature. X: (N, runs, K) logits."""

    def __init__(self, C: float = 1.0, temperature: bool = False) -> None:
        self.C = C
        self.temperature = temperature

    @staticmethod
    def _features(X: np.ndarray) -> np.ndarray:
        return _logprobs(X.reshape(-1, X.shape[2])).reshape(len(X), -1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "StackBlender":
        # log-probabilities span ~[-30, 0]: standardize so lbfgs converges
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000)).fit(self._features(X), y)
        self.temperature_ = fit_temperature(self.model_.decision_function(self._features(X)), y) if self.temperature else 1.0
        self.classes_ = self.model_.classes_
        return self

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        return _logprobs(self.model_.decision_function(self._features(X)) / self.temperature_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_log_proba(X).argmax(1)


def blend(runs: list[Run], labels: np.ndarray, method: str = "mean", space: str = "prob", temperature: bool = False, seed: int = 0) -> BlendResult:
    """Blend finished runs; `labels` are the training labels (0..K-1) the OOF rows belong to."""
    if method not in METHODS:
        raise FkaggleError(f"unknown blend method {method!r} (choose from {', '.join(METHODS)})")
    check_compatible(runs)
    oofs = [r.oof_logits for r in runs]
    tests = [r.test_logits for r in runs]
    details: dict[str, Any] = {"runs": [r.name for r in runs]}
    if method in ("mean", "geomean", "rank"):
        oof, test = {"mean": lambda: blend_mean(oofs, tests, space), "geomean": lambda: blend_geomean(oofs, tests), "rank": lambda: blend_rank(oofs, tests)}[method]()
        details["space"] = space if method == "mean" else ("log-prob" if method == "geomean" else "rank")
        return BlendResult(method, oof, test, metrics.accuracy(oof, labels), metrics.log_loss(oof, labels), details=details)

    X, X_test = np.stack(oofs, axis=1).astype(np.float64), np.stack(tests, axis=1).astype(np.float64)
    est = StackBlender(temperature=temperature) if method == "stack" else PoolBlender(method, seed)
    final = clone(est).fit(X, labels)
    test, insample = final.predict_log_proba(X_test), final.predict_log_proba(X)
    if method == "stack":
        details.update(level2="StandardScaler + LogisticRegression(C=1.0)", temperature=final.temperature_)
    else:
        details["weights"] = {r.name: round(float(wi), 4) for r, wi in zip(runs, final.weights_)}
        details["temperatures"] = {r.name: round(t, 4) for r, t in zip(runs, final.temperatures_)}
        details["pool_temperature"] = round(final.pool_temperature_, 4)
    # honest CV: each fold scored by a blender fitted on the other folds (the runs' own folds)
    nested = cross_val_predict(est, X, labels, cv=PredefinedSplit(runs[0].fold_of), method="predict_log_proba")
    details["nested_per_fold"] = metrics.per_fold(nested, labels, runs[0].fold_of)
    result = BlendResult(
        method, nested, test, metrics.accuracy(nested, labels), metrics.log_loss(nested, labels),
        insample_acc=metrics.accuracy(insample, labels), insample_logloss=metrics.log_loss(insample, labels), details=details,
    )  # fmt: skip
    warning = overfit_warning(result)
    if warning:
        details["warning"] = warning
    return result


def overfit_warning(r: BlendResult, acc_gap: float = 0.01, logloss_ratio: float = 1.25) -> str | None:
    """A fitted blend whose nested CV is far below its in-sample score learned the OOF rows,
    not the runs: say so with the per-fold spread, so the nested number is the one trusted."""
    if r.insample_acc is None or (r.insample_acc - r.cv_acc < acc_gap and r.cv_logloss < logloss_ratio * r.insample_logloss):
        return None
    accs = [f["acc"] for f in r.details["nested_per_fold"]]
    return (
        f"{r.method} overfits the OOF rows: nested CV accuracy {r.cv_acc:.4f} (log-loss {r.cv_logloss:.4f}) against "
        f"{r.insample_acc:.4f} ({r.insample_logloss:.4f}) in-sample; per fold {min(accs):.4f}..{max(accs):.4f} (std {np.std(accs):.4f}). "
        f"Expect the nested number on the leaderboard; a simpler method (mean, weighted) or stronger runs may do better."
    )


def single_run(run: Run, labels: np.ndarray) -> BlendResult:
    """A run on its own, in the same shape as a blend (for `fkaggle blend RUN`)."""
    oof, test = _logprobs(run.oof_logits), _logprobs(run.test_logits)
    return BlendResult("single", oof, test, metrics.accuracy(oof, labels), metrics.log_loss(oof, labels), details={"runs": [run.name]})

"""What the blenders share: log-probabilities, the two pools, and the fitted pieces (weights
on the simplex, temperature)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from fmnist_kaggle import metrics


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

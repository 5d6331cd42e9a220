"""PNG figures people would rather look at than read. All writes are atomic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.storage import atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    target: str | Path,
    per_class: int = 8,
    seed: int = 0,
) -> Path:
    """A row of random examples per class: the first look every report starts with."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    k = len(class_names)
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.9, k * 0.95))
    axes = np.atleast_2d(axes)
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(images[pick[j]], cmap="gray_r", vmin=0, vmax=255)
        axes[c, 0].set_title(class_names[c], fontsize=7, loc="left")
    fig.tight_layout()
    atomic.save_figure(target, fig)
    return Path(target)


def learning_curves(history: Sequence[dict], target: str | Path, title: str = "") -> Path:
    """Train/val loss and accuracy per epoch, and accuracy against loss (report 004's panels),
    one colour per fold (history rows as in history.csv)."""
    fig = learning_figure(history, title)
    atomic.save_figure(target, fig)
    return Path(target)


def learning_figure(history: Sequence[dict], title: str = "") -> Any:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc, ax_both) = plt.subplots(1, 3, figsize=(14, 3.8))
    folds = sorted({(int(r["fold"]), int(r["seed"])) for r in history})
    for fold, seed in folds:
        rows = [r for r in history if int(r["fold"]) == fold and int(r["seed"]) == seed]
        ep = [int(r["epoch"]) for r in rows]
        tag = f"f{fold}" + (f"s{seed}" if len({s for _, s in folds}) > 1 else "")
        col = {
            k: [float(r[k]) if r[k] not in (None, "") else np.nan for r in rows]
            for k in ("train_loss", "val_loss", "train_acc", "val_acc")
        }  # NaN: not validated that epoch
        line = ax_loss.plot(ep, col["train_loss"], "o--", ms=3, alpha=0.7)[
            0
        ]  # markers: a 1-epoch run still shows its point
        c = line.get_color()
        ax_loss.plot(ep, col["val_loss"], "o-", ms=3, color=c, label=tag)
        ax_acc.plot(ep, col["train_acc"], "o--", ms=3, color=c, alpha=0.7)
        ax_acc.plot(ep, col["val_acc"], "o-", ms=3, color=c, label=tag)
        ax_both.plot(col["train_loss"], col["train_acc"], "o--", ms=3, color=c, alpha=0.7)
        ax_both.plot(col["val_loss"], col["val_acc"], "o-", ms=3, color=c, label=tag)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (dashed: train, solid: val)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (dashed: train, solid: val)")
    ax_both.set(xlabel="loss", ylabel="accuracy", title="accuracy against loss")
    last = max((int(r["epoch"]) for r in history), default=1)
    for ax in (ax_loss, ax_acc):  # epochs are whole numbers, and a 1-epoch run gets a sane axis
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax_loss.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], target: str | Path, title: str = "") -> Path:
    """Heatmap with counts, rows = true class, columns = predicted class."""
    plt = _plt()
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.65 * k, 0.8 + 0.6 * k))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > thresh else "black",
            )
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    atomic.save_figure(target, fig)
    return Path(target)


def sweep_scores(rows: Sequence[dict], params: Sequence[str], target: str | Path, metric: str = "cv_acc") -> Path:
    """Score against each swept parameter (categorical x axis, one panel per parameter)."""
    plt = _plt()
    params = list(params) or ["trial"]
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.2), squeeze=False)
    for ax, p in zip(axes[0], params):
        xs = [str(r.get(p, "")) for r in rows]
        cats = sorted(set(xs), key=lambda s: (_num(s) is None, _num(s) if _num(s) is not None else s))
        pos = {c: i for i, c in enumerate(cats)}
        ys = [float(r[metric]) for r in rows]
        ax.scatter([pos[x] for x in xs], ys, alpha=0.8, label="one trial")
        for i, c in enumerate(cats):
            vals = [y for x, y in zip(xs, ys) if x == c]
            ax.hlines(
                max(vals), pos[c] - 0.25, pos[c] + 0.25, color="C1", label="best at this value" if i == 0 else None
            )
        ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=8)
        ax.set(xlabel=p, ylabel=metric.replace("cv_acc", "CV accuracy (OOF)"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic.save_figure(target, fig)
    return Path(target)


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def reproduction_chart(sections: Sequence[dict], title: str, target: str | Path) -> Path:
    """One panel per report table: our CV accuracy (fold spread as error bars) and test
    accuracy beside the report's published number, per row. Points, not bars: the axis is
    zoomed to the values, and a bar cut off at its base would exaggerate the differences."""
    plt = _plt()
    fig, axes = plt.subplots(
        len(sections),
        1,
        figsize=(max(9.0, 0.55 * max((len(s["rows"]) for s in sections), default=1) + 4), 3.4 * len(sections)),
        squeeze=False,
    )
    for ax, s in zip(axes[:, 0], sections):
        rows = s["rows"]
        x = np.arange(len(rows))
        labels = [" ".join([r["model"]] + [f"{k}={v}" for k, v in r["params"].items()]) for r in rows]
        ax.errorbar(
            x - 0.15,
            [r["cv_acc"] for r in rows],
            yerr=[r["cv_acc_std"] for r in rows],
            fmt="o",
            capsize=2,
            label="ours: CV (± fold std)",
        )
        tested = [(i, r["test_acc"]) for i, r in enumerate(rows) if r["test_acc"] is not None]
        if tested:
            ax.plot([i for i, _ in tested], [v for _, v in tested], "s", label="ours: test")
        published = [(i, r["report_value"]) for i, r in enumerate(rows) if r["report_value"] is not None]
        if published:
            ax.plot(
                [i + 0.15 for i, _ in published],
                [v for _, v in published],
                "D",
                color="0.45",
                label=f"report: {s['metric']}",
            )
        values = [v for r in rows for v in (r["cv_acc"], r["test_acc"], r["report_value"]) if v is not None]
        ax.set_ylim(max(0.0, min(values, default=0.5) - 0.03), min(1.0, max(values, default=1.0) + 0.02))
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        ax.set(ylabel="accuracy", title=f"{s['name']}: {s.get('trained', s['title'])}"[:120])
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic.save_figure(target, fig)
    return Path(target)


def activation_maps(
    images: np.ndarray,
    labels: np.ndarray,
    pred: np.ndarray,
    maps: Sequence[tuple[str, np.ndarray]],
    class_names: Sequence[str],
    channels: int,
    target: str | Path,
    title: str = "",
) -> Path:
    """One row per image: the image, then `channels` evenly spaced feature maps of each layer
    (report 000's 'Activation 1, 10, 19, 28' of block 1)."""
    plt = _plt()
    picks = [np.unique(np.linspace(0, m.shape[1] - 1, min(channels, m.shape[1])).round().astype(int)) for _, m in maps]
    ncols = 1 + sum(len(p) for p in picks)
    fig, axes = plt.subplots(
        len(images), ncols, figsize=(0.85 * ncols, 0.95 * len(images) + 0.8), squeeze=False, layout="constrained"
    )
    for i, img in enumerate(images):
        ax = axes[i, 0]
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=255)
        wrong = pred[i] != labels[i]
        ax.set_title(
            class_names[labels[i]] + (f"\n(pred {class_names[pred[i]]})" if wrong else ""),
            fontsize=6,
            color="red" if wrong else "black",
        )
        col = 1
        for j, ((name, m), pick) in enumerate(zip(maps, picks)):
            for c in pick:
                a = axes[i, col]
                a.imshow(m[i, c], cmap="viridis")
                if i == 0:  # the model's own module name, for hooks and papers alike
                    a.set_title(f"conv {j + 1} ({name})\nch {c + 1}", fontsize=6)
                col += 1
        for a in axes[i]:
            a.set_xticks([])
            a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    atomic.save_figure(target, fig)
    return Path(target)


def prediction_grid(
    images: np.ndarray,
    labels: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str],
    target: str | Path,
    title: str = "",
    cols: int = 8,
) -> Path:
    """Report 001's sample predictions: each image with its true and predicted class and the
    predicted probability; mistakes framed and titled in red."""
    plt = _plt()
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.55 * rows + 0.6), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[: len(images)]):
        wrong = pred[i] != labels[i]
        ax.axis("on")
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"true {class_names[labels[i]][:11]}\npred {class_names[pred[i]][:11]} {confidence[i]:.2f}",
            fontsize=6,
            color="red" if wrong else "black",
        )
        for spine in ax.spines.values():
            spine.set(edgecolor="red" if wrong else "0.8", linewidth=2.5 if wrong else 0.5)
    if title:
        fig.suptitle(title, fontsize=9)
    atomic.save_figure(target, fig)
    return Path(target)


def drift_figures(
    importance: np.ndarray,
    test_like: np.ndarray,
    p_test: Sequence[float],
    auc: float,
    importance_png: str | Path,
    test_like_png: str | Path,
    ids: Sequence[object] | None = None,
    id_column: str | None = None,
) -> None:
    """Adversarial validation: where train and test differ (pixel importances), and the
    training images the classifier takes most for test rows (titled with their ids)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.8), layout="constrained")
    im = ax.imshow(importance, cmap="magma")
    noise = "\n(no shift detected: this pattern is noise)" if auc < 0.6 else ""
    ax.set(title=f"train vs test: pixel importance (AUC {auc:.3f}){noise}", xticks=[], yticks=[])
    ax.title.set_fontsize(9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    atomic.save_figure(importance_png, fig)
    cols = 8
    fig, axes = plt.subplots(
        max(1, -(-len(test_like) // cols)),
        cols,
        figsize=(1.3 * cols, 1.5 * max(1, -(-len(test_like) // cols)) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, img, p) in enumerate(zip(axes.ravel(), test_like, p_test)):
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title((f"{id_column or 'row'} {ids[i]}\n" if ids is not None else "") + f"P(test) {p:.2f}", fontsize=7)
    what = f"by {id_column}" if id_column else "1-based training rows"
    fig.suptitle(f"training images most like the test set ({what})", fontsize=9)
    atomic.save_figure(test_like_png, fig)


def autopilot_chart(
    runs: Sequence[dict], blends: Sequence[dict], limits_min: Sequence[float], title: str, target: str | Path
) -> Path:
    """`fkaggle auto`: each finished run's CV accuracy at the minute of its session it finished (and
    its official test accuracy where known), the blends at the minute they were scored, the chosen
    submission starred, and each session's time limit: every point lies inside its session's."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    for i, r in enumerate(runs):
        ax.scatter(r["minute"], r["cv_acc"], s=48, color=f"C{i % 10}", label=f"{r['label']} (CV)", zorder=3)
        if r.get("test_acc") is not None:
            ax.scatter(r["minute"], r["test_acc"], s=48, facecolors="none", edgecolors=f"C{i % 10}", zorder=3)
    for j, b in enumerate(blends):
        ax.scatter(b["minute"], b["cv_acc"], marker="D", s=34, color="0.45", zorder=2)
        ax.annotate(
            b["method"],
            (b["minute"], b["cv_acc"]),
            xytext=(6, -9 + 8 * (j % 3)),
            textcoords="offset points",
            fontsize=7,
            color="0.3",
        )
    for c in [*runs, *blends]:
        if c.get("chosen"):
            ax.scatter(
                c["minute"],
                c["cv_acc"],
                marker="*",
                s=260,
                color="gold",
                edgecolors="k",
                zorder=4,
                label=f"chosen: {c['label']}",
            )
    for k, limit in enumerate(sorted(set(limits_min))):
        ax.axvline(limit, color="C3", ls="--", lw=1, alpha=1 - 0.3 * k, label=f"time limit ({limit:g} min)")
    if any(r.get("test_acc") is not None for r in runs):
        ax.scatter([], [], facecolors="none", edgecolors="0.3", label="official/local test accuracy (hollow)")
    if blends:
        ax.scatter([], [], marker="D", color="0.45", label="blends of the finished runs (CV; fitted methods nested)")
    values = [v for c in [*runs, *blends] for v in (c["cv_acc"], c.get("test_acc")) if v is not None]
    mid = (max(values) + min(values)) / 2 if values else 0.5
    half = max((max(values) - min(values)) / 2 if values else 0.0, 0.01) * 1.25  # a 2% window at least
    ax.set(
        xlabel="minutes since its session started",
        ylabel="accuracy",
        title=title,
        xlim=(0, max(limits_min) * 1.08),
        ylim=(mid - half, mid + half),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    atomic.save_figure(target, fig)
    return Path(target)


def cv_against_public(points: Sequence[dict]) -> bytes:
    """Each scored submission's CV accuracy against its public leaderboard score, with the
    identity line: points below it are where CV promised more than the leaderboard gave (PNG bytes)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    xs, ys = [p["cv_acc"] for p in points], [p["public_score"] for p in points]
    lo, hi = min(xs + ys) - 0.005, max(xs + ys) + 0.005
    ax.plot([lo, hi], [lo, hi], color="0.6", ls="--", lw=1, label="CV = public score")
    ax.scatter(xs, ys, s=36, zorder=3)
    for p in points[:20]:  # more labels than that is noise
        ax.annotate(
            p["file"][:24], (p["cv_acc"], p["public_score"]), xytext=(4, 3), textcoords="offset points", fontsize=7
        )
    ax.set(
        xlabel="CV accuracy (nested for fitted blends)",
        ylabel="public leaderboard score",
        xlim=(lo, hi),
        ylim=(lo, hi),
        title="CV against the public leaderboard",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return atomic.figure_png(fig)


def correlation_heatmap(names: Sequence[str], matrix: np.ndarray) -> bytes:
    """Pearson correlation of runs' OOF probabilities (lower: more diverse, more worth blending) (PNG bytes)."""
    plt = _plt()
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * k, 1.2 + 0.5 * k))
    im = ax.imshow(matrix, cmap="viridis", vmin=min(0.9, float(np.min(matrix))), vmax=1.0)
    ax.set_xticks(range(k), [n[:18] for n in names], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), [n[:18] for n in names], fontsize=7)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if matrix[i, j] < (1 + np.min(matrix)) / 2 else "black",
                )
    ax.set_title("OOF probability correlation (lower = more diverse)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return atomic.figure_png(fig)

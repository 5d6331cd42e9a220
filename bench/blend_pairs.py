"""Does diversity pay in a blend? Pairs of fold-0 models (bench/frontier.py --logits DIR) blended by
the mean of their probabilities: held-out and official-test accuracy of each alone and of the
pair, the gain over the better one, and the correlation of their held-out probabilities. A pair
of the same family with another seed is the yardstick another family must beat.

    python bench/blend_pairs.py DIR A B [C D ...]   # pairs (A, B), (C, D), ... by logits file stem
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fmnist_kaggle.data.competition import official_competition
from fmnist_kaggle.data.folds import make_folds


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("stems", nargs="+", help="logits file stems, two by two")
    args = ap.parse_args()
    comp = official_competition()
    fold_of = make_folds(comp.train_set.labels, 5, 42)
    y_val, y_test = comp.train_set.labels[fold_of == 0], comp.test_set.labels
    rows = []
    for a, b in zip(args.stems[::2], args.stems[1::2], strict=True):
        za, zb = (np.load(Path(args.dir) / f"{s}.npz") for s in (a, b))
        pa, pb = softmax(za["val"]), softmax(zb["val"])
        ta, tb = softmax(za["test"]), softmax(zb["test"])
        acc = lambda p, y: float((p.argmax(1) == y).mean())  # noqa: E731
        row = {
            "pair": f"{a} + {b}",
            "val": [acc(pa, y_val), acc(pb, y_val), acc((pa + pb) / 2, y_val)],
            "test": [acc(ta, y_test), acc(tb, y_test), acc((ta + tb) / 2, y_test)],
            "corr": float(np.corrcoef(pa.ravel(), pb.ravel())[0, 1]),
        }
        row["val_gain"] = row["val"][2] - max(row["val"][:2])
        row["test_gain"] = row["test"][2] - max(row["test"][:2])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| pair | held-out A / B / blend | gain | official test A / B / blend | gain | correlation |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        v, t = r["val"], r["test"]
        print(
            f"| {r['pair']} | {v[0]:.4f} / {v[1]:.4f} / {v[2]:.4f} | {r['val_gain']:+.4f} "
            f"| {t[0]:.4f} / {t[1]:.4f} / {t[2]:.4f} | {r['test_gain']:+.4f} | {r['corr']:.4f} |"
        )


if __name__ == "__main__":
    main()

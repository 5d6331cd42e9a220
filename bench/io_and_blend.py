"""CSV load time (first parse and cached) for the 60,000-row Kaggle CSV, and blending 10 runs.

python bench/io_and_blend.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fkaggle-io-"))
    os.environ["FKAGGLE_CACHE"] = str(tmp / "cache")
    import pandas as pd

    from fmnist_kaggle.data.competition import resolve_competition
    from fmnist_kaggle.data.images import load_images

    train = resolve_competition().train_set
    df = pd.DataFrame(train.images.reshape(len(train), -1), columns=[f"pixel{i}" for i in range(1, 785)])
    df.insert(0, "label", train.labels)
    csv = tmp / "fashion-mnist_train.csv"
    df.to_csv(csv, index=False)
    print(f"CSV: {len(df)} rows, {csv.stat().st_size / 1e6:.0f} MB")
    t = time.perf_counter()
    first = load_images(csv)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    again = load_images(csv)
    t_cached = time.perf_counter() - t
    assert again.fingerprint() == first.fingerprint() == train.fingerprint()
    print(f"{'load':<14} {'seconds':>8}\n{'first (parse)':<14} {t_first:>8.2f}\n{'cached':<14} {t_cached:>8.2f}")

    from fmnist_kaggle.data.folds import make_folds
    from fmnist_kaggle.evaluate.blend import METHODS, blend
    from fmnist_kaggle.runs.store import Run

    y = train.labels
    fold_of = make_folds(y, 5, 42)
    rng = np.random.default_rng(0)
    runs = []
    for r in range(10):
        confuse = rng.normal(0, 0.8, (10, 10))

        def z(lab: np.ndarray, confuse: np.ndarray = confuse) -> np.ndarray:
            return (3.0 * np.eye(10)[lab] + confuse[lab] + rng.normal(0, 1.3, (len(lab), 10))).astype(np.float32)

        identity = {"data_fingerprint": "d", "folds_fingerprint": "f", "test_fingerprint": "t"}
        man = {"run": f"r{r}", "identity": identity, "data": {**identity, "label_values": list(range(10))}}
        runs.append(Run(f"r{r}", None, man, z(y), z(np.arange(10000) % 10), fold_of, y))
    print("\nblending 10 runs of OOF (60000 x 10) + test (10000 x 10); fitted methods nested over 5 folds")
    print(f"{'method':<10} {'seconds':>8} {'CV acc':>7} {'logloss':>8}")
    for m in METHODS:
        t = time.perf_counter()
        res = blend(runs, y, m)
        print(f"{m:<10} {time.perf_counter() - t:>8.2f} {res.cv_acc:>7.4f} {res.cv_logloss:>8.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Shared fixtures: small slices of the REAL Fashion-MNIST written in every supported format, and a
synthetic competition for behaviour that does not depend on real images.

The real data is required in CI (`CI` set): a missing dataset fails there instead of skipping."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FMNIST_DIR = Path(os.environ.get("FKAGGLE_DATA", "/usr/share/datasets/fashion-mnist"))
REPO = Path(__file__).resolve().parents[1]
_IDX = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _have_fmnist() -> bool:
    return all((FMNIST_DIR / f).exists() for f in _IDX)


def missing(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where every dependency must be present."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must provide it (make data / make install)")
    pytest.skip(reason)


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = np.frombuffer(data[4 : 4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="session")
def fmnist() -> dict[str, np.ndarray]:
    if not _have_fmnist():
        missing(f"real Fashion-MNIST not found in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)")
    return {
        "x_train": _read_idx(FMNIST_DIR / _IDX[0]),
        "y_train": _read_idx(FMNIST_DIR / _IDX[1]).astype(np.int64),
        "x_test": _read_idx(FMNIST_DIR / _IDX[2]),
        "y_test": _read_idx(FMNIST_DIR / _IDX[3]).astype(np.int64),
    }


@pytest.fixture(scope="session")
def small(fmnist) -> dict[str, np.ndarray]:
    """A class-balanced slice of the real data: 400 train rows (40 per class), 100 test rows."""
    rng = np.random.default_rng(0)
    tr = np.sort(np.concatenate([rng.choice(np.flatnonzero(fmnist["y_train"] == c), 40, replace=False) for c in range(10)]))
    te = np.arange(100)
    return {"x_train": fmnist["x_train"][tr], "y_train": fmnist["y_train"][tr], "x_test": fmnist["x_test"][te], "y_test": fmnist["y_test"][te]}


def synthetic_images(n_per_class: int, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Easy, realistic-looking data: class c is a bright bar at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per_class)
    x = rng.integers(0, 60, (len(y), 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):
        r = 2 + 2 * c
        x[i, r : r + 4, 4:24] = rng.integers(180, 256, (4, 20))
    order = rng.permutation(len(y))
    return x[order], y[order].astype(np.int64)


@pytest.fixture()
def synth(tmp_path):
    """A synthetic competition (CSV pair, 200 train / 50 test rows, 10 classes) as a Competition."""
    from fmnist_kaggle.data.competition import Competition

    x, y = synthetic_images(20)
    xt, yt = synthetic_images(5, seed=1)
    train = write_csv(tmp_path / "train.csv", x, y)
    test = write_csv(tmp_path / "test.csv", xt, yt)
    return Competition(name="synth", train=train, test=test)


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None = None, ids: np.ndarray | None = None, id_col: str = "id", first_pixel: int = 1, scale: float = 1.0) -> Path:
    import pandas as pd

    flat = x.reshape(len(x), -1) * scale if scale != 1.0 else x.reshape(len(x), -1)
    df = pd.DataFrame(flat, columns=[f"pixel{i + first_pixel}" for i in range(784)])
    if y is not None:
        df.insert(0, "label", y)
    if ids is not None:
        df.insert(0, id_col, ids)
    df.to_csv(path, index=False)
    return path


def save_pickled_dict(path: Path, obj: dict) -> Path:
    """How the 5-class competition ships its data: np.save of a dict (a pickled object array)."""
    np.save(path, obj, allow_pickle=True)
    return path


@pytest.fixture()
def kaggle_csv_pair(tmp_path, small) -> tuple[Path, Path]:
    """Kaggle layout: label,pixel1..pixel784; the test file carries labels too."""
    return write_csv(tmp_path / "fashion-mnist_train.csv", small["x_train"], small["y_train"]), write_csv(tmp_path / "fashion-mnist_test.csv", small["x_test"], small["y_test"])


@pytest.fixture()
def five_class_npy(tmp_path, small) -> dict[str, Path]:
    """5-class variant, labels 1..5, pickled {'features': (N,28,28) floats 0..1, 'target'} + sample submission."""
    keep_tr = small["y_train"] < 5
    keep_te = small["y_test"] < 5
    xtr = small["x_train"][keep_tr].astype(np.float32) / 255.0
    xte = small["x_test"][keep_te].astype(np.float32) / 255.0
    train = save_pickled_dict(tmp_path / "train.npy", {"features": xtr, "target": small["y_train"][keep_tr] + 1})
    test = save_pickled_dict(tmp_path / "test.npy", {"features": xte})
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Id,Category\n" + "".join(f"{i},1\n" for i in range(1, int(keep_te.sum()) + 1)))
    truth = tmp_path / "test_labels.npy"
    np.save(truth, small["y_test"][keep_te] + 1)
    return {"train": train, "test": test, "sample": sample, "truth": truth, "dir": tmp_path}


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`fkaggle ...` as a user runs it: a subprocess with its own exit status and stderr."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fmnist_kaggle.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def stderr_until(args: list[str], cwd: Path, prefix: str, timeout: float = 240) -> list[str]:
    """`fkaggle ARGS`'s stderr lines up to the first that starts with `prefix` (or its end, or the
    timeout); the command is then killed (for runs that would train for hours once they have said so)."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "fmnist_kaggle.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(line.startswith(prefix) for line in lines):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.kill()
        proc.wait()
    return lines


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FKAGGLE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("FKAGGLE_COMPETITION", raising=False)

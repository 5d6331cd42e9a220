"""Shared fixtures: small slices of the REAL Fashion-MNIST written in every supported format, and a
synthetic competition for behaviour that does not depend on real images.

The real data is required in CI (`CI` set): a missing dataset fails there instead of skipping."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

FMNIST_DIR = Path(os.environ.get("FKAGGLE_DATA", "/usr/share/datasets/fashion-mnist"))
REPO = Path(__file__).resolve().parents[1]
_IDX = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


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
    tr = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(fmnist["y_train"] == c), 40, replace=False) for c in range(10)])
    )
    te = np.arange(100)
    return {
        "x_train": fmnist["x_train"][tr],
        "y_train": fmnist["y_train"][tr],
        "x_test": fmnist["x_test"][te],
        "y_test": fmnist["y_test"][te],
    }


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


def write_csv(
    path: Path,
    x: np.ndarray,
    y: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    id_col: str = "id",
    first_pixel: int = 1,
    scale: float = 1.0,
) -> Path:
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
    return write_csv(tmp_path / "fashion-mnist_train.csv", small["x_train"], small["y_train"]), write_csv(
        tmp_path / "fashion-mnist_test.csv", small["x_test"], small["y_test"]
    )


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


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600, input: str = ""
) -> subprocess.CompletedProcess:
    """`fkaggle ...` as a user runs it, in this process: `main(argv)` with the working folder,
    environment, stdin and stdout/stderr (file descriptors included, so C-level writes count)
    redirected for the call; (exit status, stdout, stderr) as a subprocess would give them. An
    exception that escapes `main` fails the test (a subprocess would only have exited non-zero).
    `timeout` is pytest-timeout's job here; it stays for the call sites' sake."""
    with cli_process(cwd, env, input) as streams:
        code = _main_status([str(a) for a in args])
    return subprocess.CompletedProcess(["fkaggle", *args], code, streams.out, streams.err)


def _main_status(argv: list[str]) -> int:
    from fmnist_kaggle.cli.main import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


# A fresh interpreter's warning filters (no -W, no PYTHONWARNINGS): what a user's process shows.
_FRESH_WARNING_FILTERS = [
    ("default", None, DeprecationWarning, "__main__"),
    ("ignore", None, DeprecationWarning, None),
    ("ignore", None, PendingDeprecationWarning, None),
    ("ignore", None, ImportWarning, None),
    ("ignore", None, ResourceWarning, None),
]


class _Streams:
    out = ""
    err = ""


@contextlib.contextmanager
def cli_process(cwd: Path | None, env: dict | None, input: str = "") -> Iterator[_Streams]:
    """What a new `fkaggle` process would start with, for the length of one in-process call:
    its folder, environment, standard streams, root logging and warning filters; and the
    module state one command leaves behind (tracking, the package's logger) reset after it."""
    import logging
    import warnings

    from fmnist_kaggle import tracking

    streams = _Streams()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_std = sys.stdin, sys.stdout, sys.stderr
    root, pkg = logging.getLogger(), logging.getLogger("fmnist_kaggle")
    saved_root, saved_pkg = (root.handlers[:], root.level), (pkg.handlers[:], pkg.level, pkg.propagate)
    files = [tempfile.TemporaryFile(mode="w+b") for _ in range(2)]
    saved_fds = [os.dup(1), os.dup(2)]
    threads = None
    try:
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        if cwd is not None:
            os.chdir(cwd)
        sys.stdout.flush(), sys.stderr.flush()
        for fd, f in zip((1, 2), files):
            os.dup2(f.fileno(), fd)
        sys.stdin = io.StringIO(input)
        sys.stdout = io.TextIOWrapper(
            os.fdopen(os.dup(1), "wb"), encoding="utf-8", line_buffering=True, write_through=True
        )
        sys.stderr = io.TextIOWrapper(
            os.fdopen(os.dup(2), "wb"), encoding="utf-8", line_buffering=True, write_through=True
        )
        root.handlers[
            :
        ] = []  # as in a new process: other libraries' warnings reach stderr through logging's last resort
        root.setLevel(logging.WARNING)
        threads = _torch_threads((env or {}).get("OMP_NUM_THREADS"))
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, message, category, module in reversed(_FRESH_WARNING_FILTERS):
                warnings.filterwarnings(action, message or "", category, module or "", append=False)
            warnings.showwarning = _show_warning
            yield streams
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
                stream.close()
        sys.stdin, sys.stdout, sys.stderr = saved_std
        for fd, saved in zip((1, 2), saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        streams.out, streams.err = (_read_back(f) for f in files)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], level = saved_root
        root.setLevel(level)
        pkg.handlers[:], level, pkg.propagate = saved_pkg
        pkg.setLevel(level)
        tracking.disable()
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def _torch_threads(omp_num_threads: str | None) -> int | None:
    """OMP_NUM_THREADS sets torch's thread count when a process starts: applied for the call (as
    a new process would see it), the previous count returned to be put back afterwards."""
    if not omp_num_threads:
        return None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(omp_num_threads))
    return before


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    import warnings

    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _read_back(f) -> str:
    f.seek(0)
    text = f.read().decode("utf-8", errors="replace")
    f.close()
    return text


def run_process(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`fkaggle ...` in a process of its own: for tests where the process boundary is the
    behaviour (what a fresh interpreter imports, signals, thread settings across processes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fmnist_kaggle.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class _Enough(BaseException):
    """Raised from stderr once the awaited line is there: ends the command where it is (not an
    Exception, so neither the CLI's handlers nor logging's swallow it)."""


class _UntilStream(io.TextIOBase):
    def __init__(self, prefix: str) -> None:
        self.prefix, self.text = prefix, ""

    def write(self, s: str) -> int:
        self.text += s
        if any(line.startswith(self.prefix) for line in self.text.split("\n")[:-1]):  # a whole line
            raise _Enough
        return len(s)

    def isatty(self) -> bool:
        return False


def stderr_until(args: list[str], cwd: Path, prefix: str, timeout: float = 240) -> list[str]:
    """`fkaggle ARGS`'s stderr lines up to the first that starts with `prefix` (or its end); the
    command is stopped there (for runs that would train for hours once they have said so)."""
    stream = _UntilStream(prefix)
    with cli_process(cwd, None) as _:
        saved, sys.stderr = sys.stderr, stream
        try:
            _main_status([str(a) for a in args])
        except _Enough:
            pass
        finally:
            sys.stderr = saved
    return [line + "\n" for line in stream.text.splitlines()]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Expensive folders (trained runs, workspaces) made once per session by `build(folder)` and
    copied into each test that asks: `built(key, build, into)` -> `into`. Training is
    deterministic, so a copy holds what building it again would."""
    made: dict[str, Path] = {}

    def get(key: str, build, into: Path) -> Path:
        if key not in made:
            folder = tmp_path_factory.mktemp(f"built-{key}")
            build(folder)
            made[key] = folder
        shutil.copytree(made[key], into, symlinks=True, dirs_exist_ok=True)
        return into

    return get


@pytest.fixture()
def fake_kaggle(tmp_path, monkeypatch):
    """The REAL kaggle client's world for one test: a fake Kaggle on loopback (tests/fake_kaggle.py),
    credentials for it, and the environment that routes the client there."""
    import fake_kaggle as fake

    with fake.serve(tmp_path / "kaggle_home") as state:
        for k, v in state.env.items():
            monkeypatch.setenv(k, v)
        for k in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
            monkeypatch.delenv(k, raising=False)
        yield state


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FKAGGLE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("FKAGGLE_COMPETITION", raising=False)

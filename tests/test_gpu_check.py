"""`make bench-gpu` is ready for the first GPU: on a machine without CUDA it says so in one line
and exits 2, having written nothing (the GPU steps themselves run only where CUDA is)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_without_cuda_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "FKAGGLE_PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    res = subprocess.run(
        ["make", "-s", "--no-print-directory", "bench-gpu"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("bench-gpu: no CUDA device here") and "Traceback" not in res.stderr, res.stderr
    assert res.stdout == "" and not (tmp_path / "out").exists()

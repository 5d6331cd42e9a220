"""Scale-out: one small run on the real Fashion-MNIST, trained by the local executor, the
embedded Ray executor and a two-node Ray cluster on loopback; wall time, Ray overhead per
task and speed-up over local.

    python bench/scale.py [--subset 12000] [--folds 4] [--epochs 2] [--model fmnist_resnet] [--gpu]

Every run goes through `fkaggle fold-train` as a user types it. Overhead per task is the
slot time a task held but did not spend in training and prediction:
(wall x slots - sum of task seconds) / tasks, so it includes Ray's start-up and the import of
torch in fresh workers (for local: loading and folds, outside the units).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from loopback_cluster import loopback_cluster  # noqa: E402


def train_folds(
    workdir: Path, run: str, common: list[str], extra: list[str], env: dict[str, str] | None = None
) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fmnist_kaggle.cli",
            "fold-train",
            *common,
            "--run",
            run,
            "--workdir",
            str(workdir),
            "--no-progress",
            "--json",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{run} failed:\n{res.stderr}")
    seeds = [
        s
        for p in sorted((workdir / "oof" / run).glob("fold_*/metrics.json"))
        for s in json.loads(p.read_text())["seeds"]
    ]
    return {
        "run": run,
        "wall": wall,
        "tasks": len(seeds),
        "task_s": sum(s["unit_seconds"] for s in seeds),
        "nodes": len({s.get("node_id", "local") for s in seeds}),
        "cv": json.loads(res.stdout)["cv"]["acc"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", type=int, default=12000)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--model", default="fmnist_resnet")
    ap.add_argument(
        "--gpu", action="store_true", help="also the embedded executor with --device auto (one GPU per task)"
    )
    args = ap.parse_args()
    common = [
        "--model",
        args.model,
        "--subset",
        str(args.subset),
        "--folds",
        str(args.folds),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "128",
        "--optimizer",
        "adam",
        "--lr",
        "2e-3",
        "--device",
        "cpu",
    ]
    work = Path(tempfile.mkdtemp(prefix="fkaggle-scale-"))
    rows = [(train_folds(work, "local", common, []), 1)]
    rows.append((train_folds(work, "embedded", common, ["--executor", "ray", "--cpus-per-task", "1"]), 2))
    with loopback_cluster(work) as (address, env):
        rows.append((train_folds(work, "cluster", common, ["--executor", "ray", "--address", address], env), 2))
    if args.gpu:
        gpu = [*common[:-1], "auto"]
        rows.append((train_folds(work, "gpu-local", gpu, []), 1))
        rows.append((train_folds(work, "gpu-embedded", gpu, ["--executor", "ray"]), 1))
    base = rows[0][0]["wall"]
    print(
        f"\n{args.model}, {args.subset} rows, {args.folds} folds x {args.epochs} epochs, CPU training unless named gpu"
    )
    print("| executor | slots | nodes | wall s | sum of task s | overhead per task s | speed-up | CV acc |")
    print("|---|---|---|---|---|---|---|---|")
    for r, slots in rows:
        overhead = (r["wall"] * slots - r["task_s"]) / r["tasks"]
        print(
            f"| {r['run']} | {slots} | {r['nodes']} | {r['wall']:.1f} | {r['task_s']:.1f} "
            f"| {overhead:.1f} | {base / r['wall']:.2f}x | {r['cv']:.4f} |"
        )


if __name__ == "__main__":
    main()

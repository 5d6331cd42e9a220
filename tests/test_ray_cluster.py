"""A two-node Ray cluster on loopback started here (`ray start --block` children stopped by
SIGTERM), real Ray and no mocks: units spread over its nodes, resources a task cannot get are
refused, and GPU nodes get one GPU per unit. Every run goes through the CLI a user types, in a
process of its own: Ray reads its auth mode when it is imported, and the driver turns token mode
on before that (a test process that imported Ray already cannot show it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_process
from loopback_cluster import loopback_cluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI_TINY = [
    "--model",
    "lenet5",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--lr",
    "0.002",
    "--optimizer",
    "adam",
    "--schedule",
    "constant",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def _outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def data_args(comp) -> list[str]:
    return ["--train", str(comp.train), "--test", str(comp.test)]


def fold_metrics(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.glob("fold_*/metrics.json"))]


@pytest.fixture()
def cluster(tmp_path):
    with loopback_cluster(tmp_path) as (address, env):
        yield address, env


def test_two_node_loopback_cluster_spreads_folds_and_finishes_the_run(tmp_path, synth, cluster):
    address, env = cluster
    res = run_process(
        "fold-train",
        *data_args(synth),
        *CLI_TINY,
        "--folds",
        "4",
        "--run",
        "c",
        "--executor",
        "ray",
        "--address",
        address,
        "--json",
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["complete"] and "2 node(s), 2 CPU(s)" in res.stderr
    metrics = fold_metrics(tmp_path / "oof/c")
    assert len(metrics) == 4
    assert {m["seeds"][0]["node_ip"] for m in metrics} == {"127.0.0.2", "127.0.0.3"}
    assert len({n for m in metrics for n in m["nodes"]}) == 2

    refused = run_process(
        "fold-train",
        *data_args(synth),
        *CLI_TINY,
        "--folds",
        "2",
        "--run",
        "d",
        "--executor",
        "ray",
        "--address",
        address,
        "--cpus-per-task",
        "4",
        env=env,
    )
    assert (
        refused.returncode == 2
        and "no node of the Ray cluster has that many CPUs (largest: 1)" in refused.stderr.strip().splitlines()[-1]
    )


def test_a_cluster_with_gpus_gets_one_gpu_per_unit_on_cuda(tmp_path, synth):
    """The head declares a GPU (a resource only, no CUDA here): every unit is sent as a GPU task
    that trains on `cuda`, so on this machine each fails in its task, named in one line, and the
    run stays incomplete with nothing marked finished."""
    with loopback_cluster(tmp_path, head_gpus=1) as (address, env):
        res = run_process(
            "fold-train",
            *data_args(synth),
            *CLI_TINY,
            "--folds",
            "2",
            "--run",
            "g",
            "--executor",
            "ray",
            "--address",
            address,
            env=env,
        )
    assert res.returncode == 2 and "1 GPU(s); up to 1 unit(s) at once" in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert (
        "2 (fold, seed) unit(s) failed" in last and last.count("device 'cuda' requested but CUDA is not available") == 2
    )
    assert not list((tmp_path / "oof/g").glob("fold_*/seed_0.json"))

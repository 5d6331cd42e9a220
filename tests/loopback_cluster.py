"""A two-node Ray cluster on loopback, as a user would start one (`ray start ... --block`):
a head on 127.0.0.2 and a worker node on 127.0.0.3, one CPU each, token auth on. Ray
rewrites 127.0.0.1 to the machine's network address, hence the other loopback addresses.
Used by tests/test_ray.py and bench/scale.py."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def loopback_cluster(logdir: Path, cpus: int = 1, head_gpus: int = 0) -> Iterator[tuple[str, dict[str, str]]]:
    """Yields (address, environment of a user holding the cluster's token). On exit every node
    is stopped by SIGTERM to its `ray start` pid, and every process it started must be gone.
    `head_gpus` declares GPUs on the head (a resource only: no CUDA behind it on this machine)."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port = _free_port("127.0.0.2")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    common = ["--num-cpus", str(cpus), "--disable-usage-stats", "--block"]
    logs = {n: (logdir / f"ray-{n}.log").open("w") for n in ("head", "worker")}
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.2",
            "--port",
            str(port),
            "--include-dashboard",
            "false",
            "--num-gpus",
            str(head_gpus),
            *common,
        ],
        env=env,
        stdout=logs["head"],
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [ray_cli, "start", "--address", f"127.0.0.2:{port}", "--node-ip-address", "127.0.0.3", *common],
        env=env,
        stdout=logs["worker"],
        stderr=subprocess.STDOUT,
    )
    nodes = (worker, head)
    try:
        wait = (
            f"import ray, time\nray.init(address='127.0.0.2:{port}', _node_ip_address='127.0.0.2', "
            "logging_level='ERROR')\nwhile len([n for n in ray.nodes() if n['Alive']]) "
            "< 2: time.sleep(0.2)"
        )
        subprocess.run([sys.executable, "-c", wait], env=env, timeout=120, check=True, capture_output=True)
        yield (
            f"127.0.0.2:{port}",
            {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"},
        )  # the driver turns token mode on itself
    finally:
        tree = [
            c for p in nodes for c in psutil.Process(p.pid).children(recursive=True)
        ]  # gcs, raylets, agents, workers
        for p in nodes:
            p.send_signal(signal.SIGTERM)
        for p in nodes:
            p.wait(90)
        for f in logs.values():
            f.close()
        _, alive = psutil.wait_procs(tree, timeout=60)
        drained = [(logdir / f"ray-{n}.log").read_text().count("finished draining; shutting down") for n in logs]
        # `ray start --block` exits 1 after a clean SIGTERM: the log line and the process table are the checks
        if len(tree) < 4 or alive or drained != [1, 1]:
            raise AssertionError(
                f"loopback cluster did not stop cleanly: {len(tree)} processes, still alive {alive}, drained {drained}"
            )

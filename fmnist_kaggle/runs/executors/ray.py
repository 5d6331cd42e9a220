"""`--executor ray`: units as Ray tasks on an embedded instance or any Ray cluster.

Ray is imported only when the executor starts, so refusals before any training cost nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors import PROBE, Unit, UnitFailed, first_line
from fmnist_kaggle.runs.trainset import TrainingData
from fmnist_kaggle.runs.unit import UnitResult, train_unit
from fmnist_kaggle.training.config import TrainConfig

if TYPE_CHECKING:
    from fmnist_kaggle.training.estimate import Throughput

log = logging.getLogger(__name__)
RETRIES = 2  # a crashed worker, a lost node or a transient error: tried this many more times
LOOPBACK_NODE_IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the machine's network address
PACKAGE_DIR = Path(__file__).resolve().parents[2]  # fmnist_kaggle/, shipped to the workers
REACH_TIMEOUT_S = 10.0  # Ray itself retries an unreachable cluster for minutes, deaf to SIGTERM
_HTTP2_HELLO = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
)  # preface + empty SETTINGS frame
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def ray_task(cfg: TrainConfig, data: TrainingData, fold: int, seed: int, threads: int) -> UnitResult:
    """The body of one Ray task: a (fold, seed) training on whichever node Ray chose."""
    import ray
    import torch

    from fmnist_kaggle.models.registry import import_model

    torch.set_num_threads(threads)
    import_model(cfg.model)  # a user's own factory: the driver trains only what its user named
    result = train_unit(cfg, data, fold, seed)
    result.summary.update(
        executor="ray", node_id=ray.get_runtime_context().get_node_id(), node_ip=ray.util.get_node_ip_address()
    )
    return result


def measure_task(
    cfgs: list[TrainConfig], images: np.ndarray, labels: np.ndarray, num_classes: int, threads: int
) -> list[Throughput]:
    """The body of a speed measurement on a worker (the autopilot sizes runs from it)."""
    import torch

    from fmnist_kaggle.training.estimate import measure_throughputs

    torch.set_num_threads(threads)
    return measure_throughputs(cfgs, np.array(images), np.array(labels), num_classes, **PROBE)


class RayExecutor:
    """Units as Ray tasks. Without an address: an embedded Ray instance on this machine,
    on loopback, dashboard off. With one (`auto`, HOST:PORT, or RAY_ADDRESS): that cluster.

    The training data of each run goes into the object store once; a task asks for one GPU
    when the cluster has GPUs (and a fresh worker per GPU task, so its memory is released),
    else `cpus_per_task` CPUs and as many torch threads. Ray starts on the first use, so
    refusals before any training cost nothing.
    """

    trains_here = False  # units train on the cluster, with its devices
    shows_unit_progress = False

    def __init__(self, address: str | None = None, cpus_per_task: int = 1, retries: int = RETRIES) -> None:
        if cpus_per_task < 1:
            raise FkaggleError(f"--cpus-per-task must be at least 1, got {cpus_per_task}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        endpoint = check_address(self.address, "--address" if address else "RAY_ADDRESS")
        if endpoint is not None:  # before any run folder is made: a refusal leaves nothing behind
            _reachable(self.address, *endpoint)
        self._endpoint = endpoint
        self.cpus_per_task = cpus_per_task
        self.retries = retries
        self._ray: Any = None
        self._task: Any = None
        self._gpu_task: Any = None
        self._started_here = False
        self._gpus = 0
        self._capacity = 1
        self._data_refs: dict[int, Any] = {}  # id(TrainingData) -> ObjectRef (kept alive with the data)
        self._pending: dict[Any, Unit] = {}

    # -- starting Ray

    def _start(self) -> Any:
        if self._ray is not None:
            return self._ray
        if self.address is not None:
            _token_auth_if_available()  # before Ray is imported: it reads its auth mode then
        try:
            import ray
        except ImportError:
            raise FkaggleError("--executor ray needs the ray package (pip install ray)") from None
        if ray.is_initialized():  # a notebook that already connected
            self._ray = ray
        else:
            self._init(ray)
        self._task = ray.remote(ray_task)
        self._gpu_task = ray.remote(max_calls=1)(
            ray_task
        )  # a fresh worker per GPU task frees its memory (not settable in .options())
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self._gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
        most_cpus = max((int(n["Resources"].get("CPU", 0)) for n in nodes), default=0)
        if not self._gpus and self.cpus_per_task > most_cpus:
            raise FkaggleError(
                f"--cpus-per-task {self.cpus_per_task}: no node of the Ray cluster has that "
                f"many CPUs (largest: {most_cpus})"
            )
        cpus = int(sum(n["Resources"].get("CPU", 0) for n in nodes))
        self._capacity = max(1, self._gpus or cpus // self.cpus_per_task)
        where = self.address or "embedded instance on loopback"
        log.info(
            f"ray: {where}: {len(nodes)} node(s), {cpus} CPU(s), {self._gpus} GPU(s); "
            f"up to {self._capacity} unit(s) at once"
        )
        return ray

    def _init(self, ray: Any) -> None:
        kw = init_options(self.address, self._endpoint)
        try:
            ray.init(**kw)
        except ConnectionError as exc:
            raise FkaggleError(f"cannot join the Ray cluster at {self.address}: {first_line(exc)}") from None
        except Exception as exc:  # ray.exceptions.AuthenticationError and friends
            if "auth" in type(exc).__name__.lower() or "token" in str(exc).lower():
                raise FkaggleError(
                    f"the Ray cluster at {self.address} refused this driver's token: set RAY_AUTH_MODE=token "
                    "and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
                ) from None
            where = f"the Ray cluster at {self.address}" if self.address else "the embedded Ray instance"
            raise FkaggleError(f"{where} did not start or answer: {type(exc).__name__}: {first_line(exc)}") from None
        self._ray, self._started_here = ray, True

    @property
    def capacity(self) -> int:
        self._start()
        return self._capacity

    # -- units

    def submit(self, unit: Unit) -> None:
        ray = self._start()
        cfg, task, opts = self._placement(unit.cfg)
        key = id(unit.data)
        if key not in self._data_refs:
            self._data_refs[key] = (ray.put(unit.data), unit.data)
        task = task.options(
            **opts,
            max_retries=self.retries,
            retry_exceptions=[OSError, MemoryError, RuntimeError],
            name=f"fkaggle {unit}",
        )
        self._pending[task.remote(cfg, self._data_refs[key][0], unit.fold, unit.seed, self.cpus_per_task)] = unit

    def _placement(self, cfg: TrainConfig) -> tuple[TrainConfig, Any, dict[str, Any]]:
        """The device the unit trains on there, the remote function, and its resources."""
        if self._gpus and cfg.device != "cpu":  # Ray sets CUDA_VISIBLE_DEVICES: the task's GPU is cuda there
            return replace(cfg, device="cuda"), self._gpu_task, {"num_gpus": 1, "num_cpus": self.cpus_per_task}
        if cfg.device.startswith("cuda"):
            raise FkaggleError(
                f"--device {cfg.device}: the Ray cluster has no GPUs (a GPU task would wait "
                "forever); use --device auto or cpu"
            )
        return replace(cfg, device="cpu"), self._task, {"num_cpus": self.cpus_per_task}

    def measure(
        self, cfgs: list[TrainConfig], images: np.ndarray, labels: np.ndarray, num_classes: int
    ) -> list[Throughput]:
        """The configs' speeds measured on one worker, with a unit's resources: where their units train."""
        ray = self._start()
        placed = [self._placement(cfg) for cfg in cfgs]
        task = ray.remote(measure_task).options(**placed[0][2], name=f"fkaggle speed of {len(cfgs)} setup(s)")
        return ray.get(task.remote([p[0] for p in placed], images, labels, num_classes, self.cpus_per_task))

    def describe_machine(self, device: str = "auto") -> str:
        """What speeds measured here are kept under: the cluster, as this driver sees it."""
        self._start()
        where = self.address or "embedded"
        return f"ray {where}: {self._capacity} unit(s) at once, {self._gpus} GPU(s), {self.cpus_per_task} CPU(s) a unit"

    def next_done(self, timeout: float | None = None) -> tuple[Unit, UnitResult | UnitFailed] | None:
        ray = self._ray
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if not ready:
            return None
        ref = ready[0]
        unit = self._pending.pop(ref)
        try:
            return unit, ray.get(ref)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            return unit, UnitFailed(
                f"{unit} failed: {type(cause).__name__}: {first_line(cause)}"
            )  # after its retries, if the error was transient

    def cancel(self) -> list[Unit]:
        """Cancel every task still queued or running (its worker is killed); they will not come back."""
        for ref in self._pending:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker is gone: nothing to cancel
                pass
        cancelled = list(self._pending.values())
        self._pending.clear()
        return cancelled

    def close(self) -> None:
        """Cancel what is still queued or running, and stop the embedded instance (or leave the cluster)."""
        if self._ray is None:
            return
        self.cancel()
        self._data_refs.clear()
        if self._started_here:
            self._ray.shutdown()
        self._ray = None

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def init_options(address: str | None, endpoint: tuple[str, int] | None = None) -> dict[str, Any]:
    """`ray.init` keywords for an embedded instance on loopback (no address) or for joining a cluster."""
    kw: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": True,
        "configure_logging": True,
        "logging_level": logging.WARNING,
    }
    if address is None:
        return {**kw, "address": "local", "_node_ip_address": LOOPBACK_NODE_IP}
    kw["address"] = address
    if endpoint and _is_loopback(endpoint[0]):  # a cluster on this machine's loopback: the driver joins it there
        kw["_node_ip_address"] = endpoint[0]
    # workers run this driver's fmnist_kaggle, whatever (if anything) is installed there, with its
    # OpenMP wait policy (fmnist_kaggle._openmp: set before their torch loads)
    kw["runtime_env"] = {"py_modules": [str(PACKAGE_DIR)]}
    openmp = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    if openmp:
        kw["runtime_env"]["env_vars"] = openmp
    return kw


def make(address: str | None, cpus_per_task: int, progress: bool) -> RayExecutor:
    return RayExecutor(address, cpus_per_task)


def check_address(address: str | None, option: str = "--address") -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT or ray://HOST:PORT address (None for none, `auto`, `local`);
    a malformed one is refused in one line naming where it came from."""
    if address is None or address in ("auto", "local"):
        return None
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not _HOST.fullmatch(host or "") or not port.isdigit() or not 0 < int(port) < 65536:
        raise FkaggleError(
            f"{option} {address!r} is not a Ray address: use HOST:PORT (the head's GCS "
            "port, 6379 by default), ray://HOST:PORT or auto"
        )
    return host.strip("[]"), int(port)


def _reachable(address: str, host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> None:
    """Refuse in one line, within `timeout` seconds, an address where no Ray cluster answers:
    nothing listening, or something that does not speak gRPC (Ray's GCS and client ports do),
    which Ray would otherwise wait on for minutes."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_HELLO)
            frame = sock.recv(9)
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise FkaggleError(
            f"cannot reach the Ray cluster at {address} ({reason} within {timeout:.0f} "
            "s): is `ray start --head` running there, and the port open?"
        ) from None
    if len(frame) < 4 or frame[3] != 0x04:  # an HTTP/2 server's first frame is SETTINGS
        raise FkaggleError(
            f"something answers at {address}, but not a Ray cluster (no gRPC): give "
            "the head's GCS port (6379 unless `ray start --head --port` said otherwise)"
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _token_auth_if_available() -> None:
    """Ray >= 2.59 clusters started with `ray start` expect a token; a driver sends one only
    in token mode. Where the user has a token, use it (an explicit RAY_AUTH_MODE wins)."""
    has_token = (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()
    )
    if has_token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"

"""Where (fold, seed) units train: in this process, or as Ray tasks on an embedded
instance or any Ray cluster.

An executor takes units (`submit`) and hands back each one's result as it finishes
(`next_done`). It never touches a run folder: the driver (`runs.drive`) records every
result through the same code, so a run's artifacts do not show where it was trained.
Ray is imported only when the Ray executor starts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from fmnist_kaggle.config import TrainConfig
from fmnist_kaggle.errors import FkaggleError

log = logging.getLogger(__name__)
EXECUTORS = ("local", "ray")
RETRIES = 2  # a crashed worker, a lost node or a transient error: tried this many more times
LOOPBACK_NODE_IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the machine's network address


@dataclass
class Unit:
    """One (fold, seed) training of one run."""

    run: str
    cfg: TrainConfig
    data: Any  # runs.TrainingData
    fold: int
    seed: int
    checkpoint: Path | None = None  # epoch checkpoint (local executor only: workers share no disk)

    def __str__(self) -> str:
        return f"{self.run} fold {self.fold} seed {self.seed}"


class UnitFailed(FkaggleError):
    """A unit that failed where it ran (after its retries); the driver carries on with the rest."""


class Executor(Protocol):
    capacity: int  # units it trains at once
    shows_unit_progress: bool  # per-epoch bars of its own (the driver then draws none)

    def submit(self, unit: Unit) -> None: ...
    def next_done(self) -> tuple[Unit, Any]: ...  # (unit, runs.UnitResult | UnitFailed), in finishing order
    def close(self) -> None: ...


class LocalExecutor:
    """Train units one at a time in this process, with epoch checkpoints. Errors propagate
    at once: nothing else is running, and the next unit would most likely fail the same way."""

    capacity = 1
    shows_unit_progress = True

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
        self._queue: deque[Unit] = deque()

    def submit(self, unit: Unit) -> None:
        self._queue.append(unit)

    def next_done(self) -> tuple[Unit, Any]:
        from fmnist_kaggle.runs import train_unit

        unit = self._queue.popleft()
        result = train_unit(unit.cfg, unit.data, unit.fold, unit.seed, checkpoint=unit.checkpoint, progress=self.progress, desc=f"[{unit.run} f{unit.fold} s{unit.seed}]")
        result.summary["executor"] = "local"
        return unit, result

    def close(self) -> None:
        self._queue.clear()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def ray_task(cfg: TrainConfig, data: Any, fold: int, seed: int, threads: int) -> Any:
    """The body of one Ray task: a (fold, seed) training on whichever node Ray chose."""
    import ray
    import torch

    from fmnist_kaggle.runs import train_unit

    torch.set_num_threads(threads)
    result = train_unit(cfg, data, fold, seed)
    result.summary.update(executor="ray", node_id=ray.get_runtime_context().get_node_id(), node_ip=ray.util.get_node_ip_address())
    return result


class RayExecutor:
    """Units as Ray tasks. Without an address: an embedded Ray instance on this machine,
    on loopback, dashboard off. With one (`auto`, HOST:PORT, or RAY_ADDRESS): that cluster.

    The training data of each run goes into the object store once; a task asks for one GPU
    when the cluster has GPUs (and a fresh worker per GPU task, so its memory is released),
    else `cpus_per_task` CPUs and as many torch threads. Ray starts on the first use, so
    refusals before any training cost nothing.
    """

    shows_unit_progress = False

    def __init__(self, address: str | None = None, cpus_per_task: int = 1, retries: int = RETRIES) -> None:
        if cpus_per_task < 1:
            raise FkaggleError(f"--cpus-per-task must be at least 1, got {cpus_per_task}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
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
        self._gpu_task = ray.remote(max_calls=1)(ray_task)  # a fresh worker per GPU task frees its memory (not settable in .options())
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self._gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
        most_cpus = max((int(n["Resources"].get("CPU", 0)) for n in nodes), default=0)
        if not self._gpus and self.cpus_per_task > most_cpus:
            raise FkaggleError(f"--cpus-per-task {self.cpus_per_task}: no node of the Ray cluster has that many CPUs (largest: {most_cpus})")
        cpus = int(sum(n["Resources"].get("CPU", 0) for n in nodes))
        self._capacity = max(1, self._gpus or cpus // self.cpus_per_task)
        where = self.address or "embedded instance on loopback"
        log.info(f"ray: {where}: {len(nodes)} node(s), {cpus} CPU(s), {self._gpus} GPU(s); up to {self._capacity} unit(s) at once")
        return ray

    def _init(self, ray: Any) -> None:
        import fmnist_kaggle

        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": True, "logging_level": logging.WARNING}
        if self.address is None:
            kw.update(address="local", _node_ip_address=LOOPBACK_NODE_IP)
        else:
            kw["address"] = self.address
            host = self.address.rsplit(":", 1)[0]
            if _is_loopback(host):  # a cluster on this machine's loopback: the driver joins it there
                kw["_node_ip_address"] = host
            # workers run this driver's fmnist_kaggle, whatever (if anything) is installed there
            kw["runtime_env"] = {"py_modules": [str(Path(fmnist_kaggle.__file__).parent)]}
        try:
            ray.init(**kw)
        except ConnectionError as exc:
            raise FkaggleError(f"cannot join the Ray cluster at {self.address}: {_first_line(exc)}") from None
        except Exception as exc:  # ray.exceptions.AuthenticationError and friends
            if "auth" in type(exc).__name__.lower() or "token" in str(exc).lower():
                raise FkaggleError(f"the Ray cluster at {self.address} refused this driver's token: set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
            raise
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
        task = task.options(**opts, max_retries=self.retries, retry_exceptions=[OSError, MemoryError, RuntimeError], name=f"fkaggle {unit}")
        self._pending[task.remote(cfg, self._data_refs[key][0], unit.fold, unit.seed, self.cpus_per_task)] = unit

    def _placement(self, cfg: TrainConfig) -> tuple[TrainConfig, Any, dict[str, Any]]:
        """The device the unit trains on there, the remote function, and its resources."""
        if self._gpus and cfg.device != "cpu":  # Ray sets CUDA_VISIBLE_DEVICES: the task's GPU is cuda there
            return replace(cfg, device="cuda"), self._gpu_task, {"num_gpus": 1, "num_cpus": self.cpus_per_task}
        if cfg.device.startswith("cuda"):
            raise FkaggleError(f"--device {cfg.device}: the Ray cluster has no GPUs (a GPU task would wait forever); use --device auto or cpu")
        return replace(cfg, device="cpu"), self._task, {"num_cpus": self.cpus_per_task}

    def next_done(self) -> tuple[Unit, Any]:
        ray = self._ray
        [ref], _ = ray.wait(list(self._pending), num_returns=1)
        unit = self._pending.pop(ref)
        try:
            return unit, ray.get(ref)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            return unit, UnitFailed(f"{unit} failed: {type(cause).__name__}: {_first_line(cause)}")  # after its retries, if the error was transient

    def close(self) -> None:
        """Cancel what is still queued or running, and stop the embedded instance (or leave the cluster)."""
        if self._ray is None:
            return
        for ref in self._pending:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker is gone: nothing to cancel
                pass
        self._pending.clear()
        self._data_refs.clear()
        if self._started_here:
            self._ray.shutdown()
        self._ray = None

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(kind: str = "local", address: str | None = None, cpus_per_task: int = 1, progress: bool = True) -> LocalExecutor | RayExecutor:
    """`--executor local|ray [--address ADDR] [--cpus-per-task N]` as an executor."""
    if kind not in EXECUTORS:
        raise FkaggleError(f"unknown executor {kind!r} (choose from {', '.join(EXECUTORS)})")
    if kind == "local":
        if address:
            raise FkaggleError("--address joins a Ray cluster: it needs --executor ray")
        return LocalExecutor(progress)
    return RayExecutor(address, cpus_per_task)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _token_auth_if_available() -> None:
    """Ray >= 2.59 clusters started with `ray start` expect a token; a driver sends one only
    in token mode. Where the user has a token, use it (an explicit RAY_AUTH_MODE wins)."""
    has_token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").is_file()
    if has_token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

"""Where and in which precision training and inference run: the device, and the autocast
dtype (bf16 on CUDA and on CPUs with native bf16, fp16 on older GPUs, else fp32)."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.training.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FkaggleError(f"device {name!r} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FkaggleError(f"unknown device {name!r} (auto, cpu, cuda, cuda:1 ...)") from None


# oneDNN's own names (ONEDNN_MAX_CPU_ISA) for the instruction sets below AVX512_CORE_BF16: held to one
# of them, oneDNN computes bf16 without its dot-product instructions, much slower than fp32.
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


def onednn_isa_cap() -> str:
    """The instruction set oneDNN is held to (`ONEDNN_MAX_CPU_ISA`, or its older `DNNL_` name), or ''."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


@functools.cache
def _cpu_flags_bf16() -> bool:
    try:
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        return False


def cpu_native_bf16() -> bool:
    """The CPU computes bf16 in hardware (AVX512-BF16 or AMX) and oneDNN may use it: there autocast
    to bf16 is much faster than fp32; elsewhere bf16 is emulated and slower, so `auto` keeps fp32.
    An `ONEDNN_MAX_CPU_ISA` below AVX512_CORE_BF16 (an administrator's setting, or `make
    test-avx2`'s stand-in for a CPU without bf16) counts as no bf16."""
    return _cpu_flags_bf16() and onednn_isa_cap() not in _ONEDNN_ISAS_WITHOUT_BF16


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """CUDA: bf16 where the GPU supports it, else fp16 (with a grad scaler). CPU: bf16 when
    asked (`--amp bf16`) or, under `auto`, when the CPU has native bf16; else fp32."""
    if cfg.amp == "off":
        return None
    if device.type == "cpu":
        return torch.bfloat16 if cfg.amp == "bf16" or (cfg.amp == "auto" and cpu_native_bf16()) else None
    if device.type != "cuda":
        return None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def machine_key(device: str) -> str:
    """This process's machine, as speeds measured here are kept under: CPU model, threads torch
    uses, torch version, device (and the GPU's name)."""
    model = platform.processor() or platform.machine()
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else ""
    return (
        f"{model}{_held()} | {torch.get_num_threads()} threads | torch {torch.__version__} | "
        f"{device}{' ' + gpu if gpu else ''}"
    )


def _held() -> str:
    """What this process holds the CPU to ('' when nothing): the same CPU held to fewer instructions
    trains at other speeds, so its speeds are kept apart."""
    cap = onednn_isa_cap()
    held = [f"oneDNN {cap}"] if cap else []
    if os.environ.get("ATEN_CPU_CAPABILITY"):
        held.append(f"ATen {torch.backends.cpu.get_cpu_capability()}")
    return "".join(f" | {h}" for h in held)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

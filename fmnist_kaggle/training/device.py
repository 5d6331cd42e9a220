"""Where and in which precision training and inference run: the device, and the autocast
dtype (bf16 on CUDA and on CPUs with native bf16, fp16 on older GPUs, else fp32)."""

from __future__ import annotations

import contextlib
import functools
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


@functools.cache
def cpu_native_bf16() -> bool:
    """The CPU computes bf16 in hardware (AVX512-BF16 or AMX): there autocast to bf16 is much
    faster than fp32; elsewhere bf16 is emulated and slower, so `auto` keeps fp32."""
    try:
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        return False


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
        f"{model} | {torch.get_num_threads()} threads | torch {torch.__version__} | {device}{' ' + gpu if gpu else ''}"
    )


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

"""How fast this machine runs a model, measured against its own peak, and the settings that decide it.

The cost of every minute the autopilot buys is set here. The figures are ratios that hold on
any machine: a model's FLOPs per image (torch's own counter) times its images per second, as a
share of the machine's matmul peak timed in the same process (`torch.mm` of 2048 x 2048 fp32).

One setting is decided per model and machine rather than fixed: the prediction batch size. A
forward pass is fast while a batch's activations stay in the CPU's last-level cache (measured on
a 2-core AMD EPYC with 32 MB of L3: `fast` predicts 7,400 img/s at 64-256 images a batch, 2,800
at 1,024), so an automatic batch (`eval_batch_size = 0`) is the largest power of two whose
biggest activation fits in the cache. It is computed from the model's own activation sizes
(one image through it), never timed, so the same machine and model always get the same batch
(predictions are reproducible to the bit). Measured and rejected on CPUs (docs/results.md):
`torch.compile` of the training step (no faster in fp32, slower in bf16, and Inductor's frozen
inference graph failed on the whitening stem), a fused SGD (within noise). Batch norm folded into
the convolutions for prediction was within noise on an AMD EPYC, and is kept since it measured
1.15-1.33x faster on an Intel Xeon (Sapphire Rapids) in fp32: 47-55% -> 63% of the matmul peak
(`fold_batchnorm`; `torch.jit.freeze` was slower there, `torch.compile` 59% after 17 s compiling).

The allocator is set here too (`keep_freed_memory`): glibc hands a freed activation of a few MiB
back to the system and the next step faults the same pages in again, zeroed; kept, a `fast`
step was 5-25% faster on both CPUs' fp32 (docs/results.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import time
from pathlib import Path

import torch

# glibc's mallopt(3) parameters: keep freed memory (up to glibc's largest mmap threshold, 32 MiB a
# block on 64-bit) in the heap instead of unmapping or trimming it after every step.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
ALLOCATOR_SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process reuse the memory its freed tensors held (glibc; done once, True if set).
    A choice the user made (any MALLOC_* variable) wins, and other C libraries are left alone.
    The cost: the process keeps its largest working set until it exits."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all([mallopt(option, value) == 1 for option, value in ALLOCATOR_SETTINGS])


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of an eval-mode model with each batch norm folded into the convolution
    before it (torch.fx), which gives the same logits to float rounding; the model itself when it
    has no batch norm or cannot be traced symbolically (a user's model with data-dependent control
    flow: fx raises many kinds of errors then, so any is taken as "cannot")."""
    if model.training or not has_batchnorm(model):
        return model
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)  # a deep copy: the model's own modules are untouched
    except Exception:  # noqa: BLE001 - see the docstring
        return model


CUDA_EVAL_BATCH = 1024  # a GPU is fed whole batches; memory, not cache, is the bound there
# The automatic batch stays within these: 64-256 was best on both CPUs measured (docs/results.md), and a
# VM may report its host's cache (an Intel Xeon under KVM: 300 MiB, so 1,024 a batch: 47% of peak, 68% at 128)
CPU_EVAL_BATCHES = (16, 256)
FALLBACK_CACHE_BYTES = 8 << 20  # when the machine does not say


@functools.cache
def cache_bytes() -> int:
    """The CPU's last-level cache in bytes (sysfs), shared by the cores that predict."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or FALLBACK_CACHE_BYTES


def activation_bytes(model: torch.nn.Module, sample: torch.Tensor) -> int:
    """The biggest output of any layer for one image (bytes): what a batch must fit in cache."""
    biggest = [sample[:1].numel() * sample.element_size()]

    def hook(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            biggest[0] = max(biggest[0], output[:1].numel() * output.element_size())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            model(sample[:1])
    finally:
        for h in handles:
            h.remove()
    return biggest[0]


def auto_eval_batch(model: torch.nn.Module, sample: torch.Tensor, device: torch.device) -> int:
    """The prediction batch for this model here: on a CPU the largest power of two whose biggest
    activation fits in the last-level cache; on a GPU a large fixed batch."""
    if device.type != "cpu":
        return CUDA_EVAL_BATCH
    # the whole cache, not half: on a 32 MiB AMD EPYC half chose 128 a batch, 6% slower than 256 in
    # one sweep (23% held to AVX2; within that host's noise in the next); 256 was best on the Xeon too
    fits = cache_bytes() // max(1, activation_bytes(model, sample))
    low, high = CPU_EVAL_BATCHES
    return max(low, min(high, 1 << max(0, fits.bit_length() - 1)))


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of an n x n matmul here, best of repeated timings for about `seconds`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: threads, allocations
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def flops_per_image(model: torch.nn.Module, sample: torch.Tensor, train: bool) -> float:
    """FLOPs per image of a forward pass (train=False) or of forward + backward (train=True),
    counted by torch's FlopCounterMode on a batch of two (batch-norm needs more than one)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = sample[:2]
    was_training = model.training
    model.train(train)
    try:
        with FlopCounterMode(display=False) as counter:
            if train:
                model(x).float().sum().backward()
            else:
                with torch.no_grad():
                    model(x)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return counter.get_total_flops() / len(x)

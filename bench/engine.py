"""The engine against this machine's own peak, old and new settings side by side, in one run.

For each model: FLOPs per image (torch's FlopCounterMode), training and prediction images/s,
GFLOP/s, and that as a share of two peaks timed in the same process: `torch.mm` of 2048 x 2048
fp32 (the issue's yardstick) and oneDNN's own GEMM (a 1x1 convolution of 512 channels, which
on some CPUs runs well above MKL's matmul). Old = the engine before issue 37 (a host sync every
training step, predictions 1,024 images a batch); new = today's defaults (a look at the loss
every 50 steps, the cache-sized prediction batch). `fkaggle predict`-style prediction of all
60,000 training images by one fold model is timed end to end as well. A `fast` run's steps after
its whitening stem stops training (70% of them) are timed apart, with their own FLOPs, and a whole
run's mean follows. `--glibc-allocator` leaves glibc's allocator as it was before the engine kept
freed memory (run the bench twice, one after the other, to compare). A CPU without bf16 is stood in
for by holding this one to AVX2: `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/engine.py ...` (the header says what holds it).

    python bench/engine.py [--models cpu,fast] [--amp off] [--rows 12288] [--train-variants]
                           [--glibc-allocator] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from dataclasses import replace

import torch

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.training import engine, fit
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.device import onednn_isa_cap
from fmnist_kaggle.training.inference import predict, prediction_batch
from fmnist_kaggle.training.progressive import late_work

# Training settings timed beside today's (--train-variants); each alone from the recipe's.
TRAIN_VARIANTS = (
    ("train, torch.compile (Inductor)", {"compile": True}),
    ("train, contiguous (not channels_last)", {"channels_last": False}),
    ("train, batch 512", {"batch_size": 512}),
    ("train, batch 128", {"batch_size": 128}),
)


class _NoBar:
    disable = True

    def update(self, n: int) -> None:
        pass


def onednn_peak(seconds: float = 1.0) -> float:
    """GFLOP/s of a 1x1 convolution (a GEMM through oneDNN, channels_last) of 64 x 512 x 32 x 32."""
    x = torch.randn(64, 512, 32, 32).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(512, 512, 1, bias=False).to(memory_format=torch.channels_last)
    best, t_end = float("inf"), time.perf_counter() + seconds
    with torch.inference_mode():
        conv(x)
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
    return 2 * 64 * 32 * 32 * 512 * 512 / best / 1e9


WARMED: dict[str, float] = {}  # what the last train_ips spent before its timed steps (compiling, for one)


def train_ips(cfg, x, y, steps: int, sync_every: int, late: bool = False) -> tuple[float, torch.nn.Module]:
    """Training images/s of `steps` steps after 5 untimed ones; `late`: the steps after the
    stem stops training (the last 70% of a `fast` run's), with what it stopped frozen."""
    saved, fit.FINITE_CHECK_STEPS = fit.FINITE_CHECK_STEPS, sync_every
    try:
        t0 = time.perf_counter()
        s, batches = fit.make_stepper(cfg, 10, x, y)
        feed = itertools.chain.from_iterable(batches.epoch_batches(e, e) for e in itertools.count())
        if late:
            s.start_at(s.total_steps)  # past every stop; the schedule's lr is 0 there, the work the same
        fit.train_epoch(s, itertools.islice(feed, 5), "warm-up", _NoBar())
        WARMED["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit.train_epoch(s, itertools.islice(feed, steps), "timed", _NoBar())
        return steps * cfg.batch_size / (time.perf_counter() - t0), s.eval_model
    finally:
        fit.FINITE_CHECK_STEPS = saved


def predict_ips(model, images: torch.Tensor, cfg) -> float:
    predict(model, images[:512], cfg, torch.device("cpu"))
    t0 = time.perf_counter()
    predict(model, images, cfg, torch.device("cpu"))
    return len(images) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cpu,fast", help="recipes (their models and batches)")
    ap.add_argument("--amp", default="off", help="training precision: off (fp32), bf16 or auto")
    ap.add_argument("--rows", type=int, default=12288, help="training rows the speeds are timed on")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps")
    ap.add_argument("--train-variants", action="store_true", help="time the training variants as well")
    ap.add_argument("--json", help="write the table here as well")
    ap.add_argument(
        "--glibc-allocator", action="store_true", help="leave glibc's allocator as it was before issue 50's last round"
    )
    args = ap.parse_args()
    if args.glibc_allocator:
        os.environ["MALLOC_PERTURB_"] = "0"  # glibc's default; a MALLOC_* variable set keeps the allocator as it is
    train = resolve_competition().train_set
    x, y = train.images[: args.rows], train.labels[: args.rows]
    everything = torch.from_numpy(train.images)
    mm, gemm = engine.matmul_peak(), onednn_peak()
    held = {"aten": torch.backends.cpu.get_cpu_capability(), "onednn_max_isa": onednn_isa_cap()}
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"last-level cache {engine.cache_bytes() >> 20} MiB, ATen {held['aten']}, "
        f"oneDNN {held['onednn_max_isa'] or 'not held'} (make test-avx2's variables hold them to AVX2)"
    )
    print(f"peak fp32: torch.mm 2048^2 {mm:.0f} GFLOP/s, oneDNN 1x1-conv GEMM {gemm:.0f} GFLOP/s")
    print(f"allocator: {'freed memory kept' if engine.keep_freed_memory() else 'as glibc (or the user) set it'}")
    rows = []
    header = f"{'recipe':<6} {'what':<46} {'img/s':>7} {'GFLOP/s':>8} {'% mm':>6} {'% gemm':>7}"
    print(header)
    for recipe in args.models.split(","):
        cfg = build_config(recipe=recipe, amp=args.amp)
        probe_model = fit.make_stepper(cfg, 10, x[:512], y[:512])[0].model
        sample = torch.zeros(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        f_train, f_fwd = (
            engine.flops_per_image(probe_model, sample, True),
            engine.flops_per_image(probe_model, sample, False),
        )
        print(f"{recipe}: {f_fwd / 1e6:.1f} MFLOP per image forward, {f_train / 1e6:.1f} forward + backward")
        measured = []
        old_train, model = train_ips(cfg, x, y, args.steps, sync_every=1)
        new_train, _ = train_ips(cfg, x, y, args.steps, sync_every=fit.FINITE_CHECK_STEPS)
        measured += [("train, old: host sync every step", old_train, f_train)]
        measured += [("train, new: a look every 50 steps", new_train, f_train)]
        late_train, late_model = train_ips(cfg, x, y, args.steps, fit.FINITE_CHECK_STEPS, late=True)
        f_late = engine.flops_per_image(late_model, sample, True)
        measured += [("train, after the stem stops (70% of a run)", late_train, f_late)]
        share = late_work(cfg)[0]
        mean = 1 / (share / new_train + (1 - share) / late_train)
        measured += [("train, a whole run's mean", mean, share * f_train + (1 - share) * f_late)]
        for label, change in TRAIN_VARIANTS if args.train_variants else ():
            ips, _ = train_ips(replace(cfg, **change), x, y, args.steps, fit.FINITE_CHECK_STEPS)
            measured.append((f"{label} (set-up + 5 steps {WARMED['seconds']:.0f} s)", ips, f_train))
        auto = prediction_batch(model, everything, cfg, torch.device("cpu"))
        for label, batch in (("predict, old: 1024 a batch", 1024), (f"predict, new: auto ({auto} a batch)", 0)):
            ips = predict_ips(model, everything, replace(cfg, eval_batch_size=batch))
            measured.append((f"{label}, 60k images", ips, f_fwd))
        for b in (32, 64, 128, 256, 512):
            measured.append(
                (
                    f"predict at {b} a batch",
                    predict_ips(model, everything[:12288], replace(cfg, eval_batch_size=b)),
                    f_fwd,
                )
            )
        for label, ips, flops in measured:
            g = ips * flops / 1e9
            rows.append(
                {
                    "recipe": recipe,
                    "what": label,
                    "img_s": round(ips),
                    "gflop_s": round(g, 1),
                    "pct_mm": round(100 * g / mm),
                    "pct_gemm": round(100 * g / gemm),
                }
            )
            print(
                f"{recipe:<6} {label:<46} {ips:>7.0f} {g:>8.1f} {100 * g / mm:>5.0f}% {100 * g / gemm:>6.0f}%",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mm_gflop_s": mm, "gemm_gflop_s": gemm, "amp": args.amp, **held, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()

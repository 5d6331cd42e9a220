"""Training images/s: fkaggle's fast path against a seed-style baseline, measured in one run.

Baseline = what the competition reports do: a torchvision-style Dataset of PIL images,
per-sample transforms (RandomCrop(28, padding=2), RandomHorizontalFlip, ToTensor),
a DataLoader, and a plain fp32 training loop. Fast path = `fmnist_kaggle.training.fit.fit`:
uint8 images resident on the device, batch-level crop/flip with tensor ops, channels_last,
bf16 autocast + fused optimizer on CUDA, bf16 autocast on CPUs with native bf16 (`--amp auto`),
measured beside the fast path in fp32 (`--amp off`). Same model, batch size and augmentation.

    python bench/throughput.py [--device cpu|cuda] [--models seed000_bncnn,timm:resnet18]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.models import create_model
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.device import amp_dtype
from fmnist_kaggle.training.fit import fit


class SeedStyleDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from PIL import Image
        from torchvision import transforms

        self.images, self.labels, self.Image = images, labels, Image
        self.tf = transforms.Compose(
            [transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.tf(self.Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def baseline_images_per_s(
    model_name: str, images: np.ndarray, labels: np.ndarray, device: torch.device, batch: int, workers: int
) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        SeedStyleDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers
    )
    model.train()
    seen, t0 = 0, None
    for step, (x, y) in enumerate(loader):
        if step == 3:  # warm-up steps excluded, as for the fast path's first epoch
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, seen = time.perf_counter(), 0
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def fast_images_per_s(
    model_name: str,
    images: np.ndarray,
    labels: np.ndarray,
    device: torch.device,
    batch: int,
    compile_: bool,
    amp: str = "auto",
) -> float:
    cfg = build_config(
        model=model_name,
        model_kwargs={},
        epochs=2,
        batch_size=batch,
        optimizer="adam",
        lr=1e-3,
        schedule="constant",
        augment="cropflip",
        device=str(device),
        compile=compile_,
        amp=amp,
    )
    n_val = 512
    res = fit(cfg, 10, images[n_val:], labels[n_val:], images[:n_val], labels[:n_val], fold=0, seed=0, progress=False)
    return float(res.history[-1]["images_per_s"])  # epoch 2: no first-call / compile warm-up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="seed000_bncnn,timm:resnet18")
    ap.add_argument("--rows", type=int, default=0, help="training rows (default: 6000 on CPU, 48000 on CUDA)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0, help="baseline DataLoader workers (the reports use 0)")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(torch.get_num_threads())
    train = resolve_competition().train_set
    rows = args.rows or (48000 if device.type == "cuda" else 6000)
    images, labels = train.images[:rows], train.labels[:rows]
    hardware = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({hardware}), {rows} rows, batch {args.batch_size}, augment cropflip")
    auto = amp_dtype(build_config(), device)
    label = (
        "fp32"
        if auto is None
        else str(auto).removeprefix("torch.").replace("bfloat16", "bf16").replace("float16", "fp16")
    )
    print(f"{'model':<16} {'baseline img/s':>15} {'fast fp32':>10} {'fast ' + label:>10} {'ratio':>6}")
    for name in args.models.split(","):
        base = baseline_images_per_s(
            name,
            images[: min(rows, 6000 if device.type == "cpu" else rows)],
            labels,
            device,
            args.batch_size,
            args.workers,
        )
        fp32 = fast_images_per_s(name, images, labels, device, args.batch_size, args.compile, amp="off")
        fast = (
            fast_images_per_s(name, images, labels, device, args.batch_size, args.compile) if auto is not None else fp32
        )
        print(f"{name:<16} {base:>15.0f} {fp32:>10.0f} {fast:>10.0f} {max(fast, fp32) / base:>5.1f}x", flush=True)


if __name__ == "__main__":
    main()

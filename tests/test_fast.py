"""airbench's tricks on 28x28 (the `fast` recipe): a whitening stem fit on each fold's training
rows only, batch-norm parameter groups, lookahead, translate augmentation. Real data slices."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from conftest import run_cli, write_csv
from tqdm.auto import tqdm

from fmnist_kaggle.models.layers import PatchWhitening
from fmnist_kaggle.runs.store import load_run
from fmnist_kaggle.storage.artifacts import read_file, torch_load
from fmnist_kaggle.training.augment import BatchAugment
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.fit import make_stepper, train_epoch
from fmnist_kaggle.training.inference import shift
from fmnist_kaggle.training.optim import Lookahead


def _whitening_of(images: np.ndarray) -> torch.Tensor:
    layer = PatchWhitening()
    layer.init_from_data(torch.from_numpy(images).unsqueeze(1).float() / 255)
    return layer.weight


def test_the_fast_recipe_whitens_each_fold_with_its_training_rows_only_and_keeps_bn_scales_at_one(tmp_path, small):
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    res = run_cli(
        "fold-train",
        "--train",
        str(train),
        "--recipe",
        "fast",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--run",
        "f",
        "-q",
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    run = load_run("f", tmp_path)
    assert run.manifest["config"]["model_kwargs"]["stem"] == "whiten"
    everything = _whitening_of(small["x_train"])
    for fold in (0, 1):
        path = tmp_path / f"oof/f/fold_{fold}/model_seed_0.pt"
        state = torch_load(read_file(path, "model"), path, "model")
        fold_only = _whitening_of(small["x_train"][run.fold_of != fold])
        assert torch.allclose(state["stem.0.weight"], fold_only, atol=1e-5)
        assert not torch.allclose(state["stem.0.weight"], everything, atol=1e-3)  # the held-out rows were not used
        bn_scales = [v for k, v in state.items() if k.endswith(".weight") and v.dim() == 1]
        assert bn_scales and all(torch.equal(v, torch.ones_like(v)) for v in bn_scales)


def test_whitening_decorrelates_the_patches_it_was_fit_on(small):
    x = torch.from_numpy(small["x_train"]).unsqueeze(1).float() / 255
    layer = PatchWhitening()
    layer.init_from_data(x)
    half = layer.weight[: layer.out_chans // 2].double()  # the other half is its negation
    assert torch.equal(layer.weight[layer.out_chans // 2 :], -layer.weight[: layer.out_chans // 2])
    out = F.conv2d(x.double(), half).transpose(0, 1).reshape(len(half), -1)  # every 3x3 patch, no padding
    moments = out @ out.T / out.shape[1]
    off = moments - torch.diag(torch.diag(moments))
    assert off.abs().max() < 1e-6, off.abs().max()  # decorrelated
    assert (torch.diag(moments) <= 1 + 1e-9).all() and torch.diag(moments)[
        :4
    ].min() > 0.9  # unit variance where the data has variance


def test_bn_scales_stay_frozen_biases_move_and_the_whitening_bias_stops_after_its_share_of_steps(small):
    cfg = build_config(recipe="fast", epochs=2, batch_size=40, lookahead=0.9)
    s, batches = make_stepper(cfg, 10, small["x_train"], small["y_train"])
    stem = s.model.stem[0]
    bn = next(m for m in s.model.stages.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert isinstance(stem, PatchWhitening)
    whiten_until = int(PatchWhitening.bias_train_fraction * s.total_steps)
    seen = [(0, stem.bias.detach().clone(), bn.bias.detach().clone())]

    def watched(epoch_batches):
        for b in epoch_batches:
            yield b  # resumed after the step: record what it changed
            seen.append((s.step, stem.bias.detach().clone(), bn.bias.detach().clone()))
            assert torch.equal(bn.weight, torch.ones_like(bn.weight))
            if s.step % Lookahead.every == 0 or s.step == s.total_steps:  # the net holds the slow weights
                assert torch.equal(s.model.state_dict()["head.3.weight"], s.lookahead.slow["head.3.weight"])

    for epoch in range(cfg.epochs):
        train_epoch(s, watched(batches.epoch_batches(epoch, epoch)), "test", tqdm(disable=True))
    assert s.step == s.total_steps == len(seen) - 1 and 0 < whiten_until < s.total_steps
    moved = [not torch.equal(seen[i][1], seen[i - 1][1]) for i in range(1, len(seen))]
    settled = (
        -(-(whiten_until + 1) // Lookahead.every) * Lookahead.every
    )  # lookahead's next sync may still move it once
    assert any(moved[:whiten_until]) and not any(moved[settled:])
    assert not torch.equal(seen[-1][2], seen[0][2])  # BN biases train (at 64x the rate)
    groups = {g["name"]: g for g in s.opt.param_groups}
    assert groups["bn_scale"]["lr"] == 0 and groups["bn_bias"]["weight_decay"] == cfg.weight_decay / 64


def test_translate_shifts_each_image_by_at_most_two_pixels_and_never_flips(small):
    x = torch.from_numpy(small["x_train"][:64]).unsqueeze(1).float() / 255
    out = BatchAugment("translate")(x, torch.Generator().manual_seed(0))
    offsets = []
    for a, b in zip(x, out, strict=True):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(shift(a, dy, dx, 0.0), b)]
        assert found, "an output is not a shift of its input"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # shifts vary from image to image


def test_new_settings_at_their_defaults_leave_run_identities_as_they_were():
    cfg = build_config(recipe="cpu")
    assert not {"lookahead", "bn_freeze_scale", "bn_bias_lr"} & set(cfg.semantic())
    assert {"bn_freeze_scale", "bn_bias_lr"} <= set(build_config(recipe="fast").semantic())
    assert "lookahead" in build_config(recipe="fast", lookahead=0.9).semantic()

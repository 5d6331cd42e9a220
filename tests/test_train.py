"""K-fold training on tiny slices of the real data (CPU, 1-2 epochs)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import run_cli, write_csv

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import create_model
from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.runs.executors.local import LocalExecutor
from fmnist_kaggle.runs.store import load_run, status
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.augment import BatchAugment, crop_flip, jitter, random_erase
from fmnist_kaggle.training.config import build_config

TINY = dict(
    model="lenet5",
    folds=3,
    epochs=1,
    batch_size=64,
    lr=2e-3,
    optimizer="adam",
    schedule="constant",
    eval_batch_size=256,
)


@pytest.fixture()
def comp(tmp_path, small) -> Competition:
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], small["y_test"])
    return Competition(name="tiny", train=train, test=test)


def quiet(*_a, **_k):
    pass


def test_every_training_row_is_predicted_once_by_a_model_that_did_not_see_it(tmp_path, comp):
    cfg = build_config(**TINY)
    m = train_folds(comp, cfg, run="r", workdir=tmp_path, progress=False)
    assert m["complete"] and m["cv"]["acc"] > 0.2  # 1 epoch on 267 rows: well above 10% chance
    run = load_run("r", tmp_path)
    n = len(comp.train_set)
    assert run.oof_logits.shape == (n, 10) and run.oof_logits.dtype == np.float32
    assert not np.isnan(run.oof_logits).any()
    assert sorted(np.unique(run.fold_of)) == [0, 1, 2]
    for f in range(3):
        val = run.fold_of == f
        model = create_model("lenet5", num_classes=10)
        model.load_state_dict(torch.load(run.dir.fold(f).seed_model(0), weights_only=True))
        model.eval()
        x = torch.from_numpy(comp.train_set.images).unsqueeze(1).float() / 255
        with torch.no_grad():
            logits = model(x).numpy()
        # the OOF rows of fold f are exactly fold f's model predicting its held-out rows
        assert np.allclose(run.oof_logits[val], logits[val], atol=1e-4)
        # and that model was trained on the other folds only: its held-out rows score no better than chance-free fit
    assert run.test_logits.shape == (100, 10)
    for name in ("manifest.json", "history.csv", "learning_curves.png", "config.toml", "folds.npy"):
        assert (run.dir.path / name).exists(), name
    man = json.loads(run.dir.manifest_path.read_text())
    assert man["data"]["label_values"] == list(range(10)) and man["versions"]["torch"]
    assert man["fold_status"] == {"0": "done", "1": "done", "2": "done"} and "test_metrics" in man


def test_folds_are_identical_across_runs_and_fingerprinted(tmp_path, comp):
    a = train_folds(comp, build_config(**TINY), run="a", workdir=tmp_path, progress=False)
    b = train_folds(comp, build_config(**{**TINY, "model": "cnn4"}), run="b", workdir=tmp_path, progress=False)
    assert a["data"]["folds_fingerprint"] == b["data"]["folds_fingerprint"]
    assert np.array_equal(np.load(tmp_path / "oof/a/folds.npy"), np.load(tmp_path / "oof/b/folds.npy"))
    c = train_folds(comp, build_config(**{**TINY, "fold_seed": 7}), run="c", workdir=tmp_path, progress=False)
    assert c["data"]["folds_fingerprint"] != a["data"]["folds_fingerprint"]
    # stratified: every fold holds each class in proportion
    fold_of = np.load(tmp_path / "oof/a/folds.npy")
    for f in range(3):
        counts = np.bincount(comp.train_set.labels[fold_of == f], minlength=10)
        assert counts.min() >= 13 and counts.max() <= 14


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(tmp_path, comp, monkeypatch, caplog):
    cfg = build_config(**{**TINY, "epochs": 3, "folds": 2})
    train_folds(comp, cfg, run="ref", workdir=tmp_path / "ref", progress=False)

    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *a, **k):
        if isinstance(obj, dict) and "opt" in obj:  # epoch checkpoints only
            calls["n"] += 1
            if calls["n"] == 5:  # fold 0 done (3 checkpoints), fold 1 has saved epoch 1, dies in epoch 2
                raise KeyboardInterrupt
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        train_folds(comp, cfg, run="r", workdir=tmp_path, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    st = status(Workspace(tmp_path).find_run("r"))
    assert st["fold_status"] == {"0": "done", "1": "partial"}
    fold0_mtime = (tmp_path / "oof/r/fold_0/metrics.json").stat().st_mtime_ns
    caplog.set_level("INFO", "fmnist_kaggle")
    train_folds(comp, cfg, run="r", workdir=tmp_path, progress=False)
    assert "1 (fold, seed) unit(s) to train" in caplog.text and "resuming after epoch 1" in caplog.text
    assert (tmp_path / "oof/r/fold_0/metrics.json").stat().st_mtime_ns == fold0_mtime
    hist = [r for r in __import__("csv").DictReader((tmp_path / "oof/r/fold_1/history.csv").open())]
    assert [int(r["epoch"]) for r in hist] == [1, 2, 3]
    # resumed from the epoch-1 checkpoint with the same batch order: same result as never stopping
    assert np.allclose(load_run("r", tmp_path).oof_logits, load_run("ref", tmp_path / "ref").oof_logits, atol=1e-4)
    assert not list((tmp_path / "oof/r").glob("fold_*/checkpoint_seed_*.pt"))


def test_sharded_folds_assemble_into_one_run(tmp_path, comp):
    a = run_cli_train(tmp_path / "a", comp, "--fold", "0")
    assert a.returncode == 0, a.stderr
    st = run_cli("status", "tiny-run", "--workdir", str(tmp_path / "a"))
    assert st.returncode == 1 and "missing folds: 1,2" in st.stdout
    b = run_cli_train(tmp_path / "b", comp, "--fold", "1,2")
    assert b.returncode == 0, b.stderr
    for f in (1, 2):
        shutil.copytree(tmp_path / f"b/oof/tiny-run/fold_{f}", tmp_path / f"a/oof/tiny-run/fold_{f}")
    st = run_cli("status", "tiny-run", "--workdir", str(tmp_path / "a"))
    assert st.returncode == 0, st.stdout + st.stderr
    assert "complete" in st.stdout and "fkaggle assemble tiny-run" in st.stdout
    assert not (tmp_path / "a/oof/tiny-run/oof_logits.npy").exists()  # status only reads
    asm = run_cli("assemble", "tiny-run", "--workdir", str(tmp_path / "a"))
    assert asm.returncode == 0 and "CV accuracy" in asm.stdout, asm.stderr
    run = load_run("tiny-run", tmp_path / "a")
    assert not np.isnan(run.oof_logits).any()


def run_cli_train(workdir, comp, *extra):
    return run_cli(
        "fold-train",
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--model",
        "lenet5",
        "--folds",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--run",
        "tiny-run",
        "--workdir",
        str(workdir),
        "--no-progress",
        *extra,
    )


def test_changed_config_is_refused_unless_overwrite(tmp_path, comp):
    train_folds(comp, build_config(**TINY), run="r", workdir=tmp_path, progress=False)
    with pytest.raises(FkaggleError, match=r"config differs \(lr\)"):
        train_folds(comp, build_config(**{**TINY, "lr": 0.01}), run="r", workdir=tmp_path, progress=False)
    m = train_folds(
        comp, build_config(**{**TINY, "lr": 0.01}), run="r", workdir=tmp_path, overwrite=True, progress=False
    )
    assert m["complete"] and m["config"]["lr"] == 0.01
    # device/speed settings are not part of a run's identity: a shard may run elsewhere
    train_folds(
        comp, build_config(**{**TINY, "lr": 0.01, "eval_batch_size": 64}), run="r", workdir=tmp_path, progress=False
    )


def test_seeds_are_averaged_and_options_train(tmp_path, comp):
    cfg = build_config(
        **{
            **TINY,
            "folds": 2,
            "seeds": [0, 1],
            "loss": "sigmoid",
            "label_smoothing": 0.1,
            "tta": True,
            "augment": "strong",
            "optimizer": "sgd",
            "schedule": "onecycle",
            "lr": 0.05,
        }
    )
    train_folds(comp, cfg, run="s", workdir=tmp_path, progress=False)
    d = tmp_path / "oof/s/fold_0"
    mean = (np.load(d / "seed_0_val.npy") + np.load(d / "seed_1_val.npy")) / 2
    assert np.allclose(np.load(d / "val_logits.npy"), mean, atol=1e-6)
    assert not np.allclose(np.load(d / "seed_0_val.npy"), np.load(d / "seed_1_val.npy"))


def test_albumentations_backend_and_custom_pipeline_train(tmp_path, comp):
    cfg = build_config(**{**TINY, "folds": 2, "augment": "cropflip", "augment_backend": "albumentations"})
    assert train_folds(comp, cfg, run="al", workdir=tmp_path, progress=False)["complete"]
    custom = build_config(
        **{
            **TINY,
            "folds": 2,
            "augment": "custom",
            "augment_pipeline": [{"name": "HorizontalFlip", "p": 0.5}, {"name": "Affine", "translate_px": 2, "p": 0.5}],
        }
    )
    assert train_folds(comp, custom, run="cu", workdir=tmp_path, progress=False)["complete"]
    with pytest.raises(FkaggleError, match="unknown albumentations transform 'Nope'"):
        train_folds(
            comp, replace(custom, augment_pipeline=[{"name": "Nope"}]), run="bad", workdir=tmp_path, progress=False
        )


def test_timm_model_with_local_pretrained_weights_fold_trains(tmp_path, comp):
    import timm

    weights = tmp_path / "w.pth"
    torch.save(timm.create_model("resnet18", num_classes=1000, in_chans=3).state_dict(), weights)
    res = run_cli(
        "fold-train",
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--model",
        "timm:resnet18",
        "--pretrained",
        str(weights),
        "--input-size",
        "32",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--subset",
        "200",
        "--run",
        "tm",
        "--workdir",
        str(tmp_path),
        "--no-progress",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # stdout carries JSON only
    assert out["complete"]
    man = json.loads((tmp_path / "oof/tm/manifest.json").read_text())
    assert (
        man["config"]["model_kwargs"] == {"pretrained": str(weights), "input_size": 32} and man["data"]["rows"] == 200
    )


def test_batch_augmentations_on_tensors():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    y = crop_flip(x, gen)
    assert y.shape == x.shape
    # a crop of the zero-padded image: every output pixel is an input pixel or zero padding
    assert ((y == 0) | torch.isin(y, x)).all()
    assert not torch.equal(y, x)
    e = random_erase(torch.ones(256, 1, 28, 28), gen, p=0.5)
    erased = (e == 0).flatten(1).any(1).float().mean().item()
    assert 0.35 < erased < 0.65
    j = jitter(x, gen)
    assert j.min() >= 0 and j.max() <= 1 and not torch.equal(j, x)
    assert torch.equal(BatchAugment("none")(x, gen), x)


@pytest.mark.gpu
def test_cuda_fast_path_with_amp(tmp_path, comp):
    cfg = build_config(**{**TINY, "model": "seed000_bncnn", "device": "cuda", "augment": "strong", "amp": "auto"})
    m = train_folds(comp, cfg, run="gpu", workdir=tmp_path, progress=False)
    assert m["complete"] and m["cv"]["acc"] > 0.2


@pytest.mark.parametrize("preset", ["jitter", "cropflip", "strong"])
def test_tensor_presets_match_albumentations_statistically(small, preset):
    """The fast path and the albumentations path draw from the same augmentation distribution."""
    from fmnist_kaggle.training.augment import albumentations_pipeline

    imgs = np.concatenate([small["x_train"]] * 5)  # 2000 real images
    gen = torch.Generator().manual_seed(0)
    fast = BatchAugment(preset)(torch.from_numpy(imgs).unsqueeze(1).float() / 255, gen).squeeze(1).numpy()
    fast = np.round(fast * 255) / 255  # albumentations works on uint8: compare at the same precision
    pipe = albumentations_pipeline(preset)
    slow = np.stack([pipe(image=im[:, :, None])["image"][:, :, 0] for im in imgs]).astype(np.float32) / 255
    orig = imgs.astype(np.float32) / 255

    # mean intensity, its spread across images, the fraction of zero pixels, and left/right mass balance
    def stats(a):
        half = a[:, :, :14].sum((1, 2)) / np.maximum(a.sum((1, 2)), 1e-6)
        return np.array([a.mean(), a.mean((1, 2)).std(), (a == 0).mean(), np.abs(half - 0.5).mean()])

    s_fast, s_slow, s_orig = stats(fast), stats(slow), stats(orig)
    assert np.allclose(s_fast, s_slow, rtol=0.12, atol=0.01), (s_fast, s_slow, s_orig)
    assert not np.allclose(fast, orig)


def test_flip_tta_without_flip_training_is_warned(tmp_path, synth, caplog):
    train_folds(synth, build_config(**{**TINY, "folds": 2, "tta": True}), run="w", workdir=tmp_path, progress=False)
    assert "hflip TTA on a model trained without flips" in caplog.text
    caplog.clear()
    train_folds(
        synth,
        build_config(**{**TINY, "folds": 2, "tta": True, "augment": "cropflip"}),
        run="w2",
        workdir=tmp_path,
        progress=False,
    )
    assert "hflip TTA" not in caplog.text


def test_early_stopping_keeps_the_best_epoch(fmnist):
    from fmnist_kaggle.training.fit import fit

    # plain SGD at this rate does not improve validation loss after epoch 1 on 300 rows (deterministic on CPU)
    cfg = build_config(
        **{
            **TINY,
            "epochs": 6,
            "patience": 2,
            "select_epoch": True,
            "lr": 0.05,
            "optimizer": "sgd",
            "momentum": 0.0,
            "schedule": "constant",
        }
    )
    x, y = fmnist["x_train"][:400], fmnist["y_train"][:400]
    res = fit(cfg, 10, x[100:], y[100:], x[:100], y[:100], fold=0, seed=0, progress=False)
    losses = [r["val_loss"] for r in res.history]
    assert res.best_epoch == 1 + int(np.argmin(losses))
    assert len(res.history) == res.best_epoch + 2 < 6  # stopped after `patience` epochs without improvement


def test_short_runs_refresh_batchnorm_statistics_before_evaluating(tmp_path, comp, small):
    """12 optimizer steps: the momentum-averaged BN statistics would still be near their
    initial values and the held-out predictions near chance."""
    from fmnist_kaggle.training.fit import fit, refresh_batchnorm

    cfg = build_config(
        model="seed000_bncnn",
        folds=2,
        epochs=2,
        batch_size=32,
        optimizer="adam",
        lr=1e-3,
        schedule="constant",
        eval_batch_size=256,
    )
    m = train_folds(comp, cfg, run="bn", workdir=tmp_path, progress=False)
    assert m["cv"]["acc"] > 0.5, m["cv"]  # chance is 0.1

    x, y = small["x_train"][:200], small["y_train"][:200]
    model = fit(replace(cfg, epochs=1), 10, x, y, x[:50], y[:50], fold=0, seed=0, progress=False).model
    bn = next(mod for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    inputs = {}
    bn.register_forward_hook(lambda mod, args, out: inputs.setdefault("x", args[0].detach()))
    refresh_batchnorm(model, x, replace(cfg, eval_batch_size=1000), torch.device("cpu"))  # one batch: the exact mean
    assert torch.allclose(bn.running_mean, inputs["x"].mean(dim=(0, 2, 3)), atol=1e-5)


def test_predict_applies_the_fold_models_to_another_test_file_for_blend(tmp_path, comp, small):
    train_folds(comp, build_config(**TINY), run="r", workdir=tmp_path, progress=False)
    order = np.random.default_rng(1).permutation(len(small["y_test"]))  # the same images, another order and ids
    ids = np.arange(5000, 5000 + len(order))
    other = write_csv(tmp_path / "private.csv", small["x_test"][order], ids=ids, id_col="id")
    res = run_cli("predict", "r", "--test", str(other), "--name", "priv", "--workdir", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    src, new = load_run("r", tmp_path), load_run("priv", tmp_path)
    assert np.allclose(
        new.test_logits, src.test_logits[order], atol=1e-5
    )  # every fold and seed model, averaged as in training
    assert (
        np.array_equal(new.oof_logits, src.oof_logits)
        and new.manifest["data"]["test_fingerprint"] != src.manifest["data"]["test_fingerprint"]
    )
    assert status(new.dir)["complete"]
    bl = run_cli(
        "blend", "priv", "--train", str(comp.train), "--test", str(other), "--workdir", str(tmp_path), "--json"
    )
    assert bl.returncode == 0, bl.stderr
    lines = (tmp_path / "submissions/priv.csv").read_text().splitlines()
    assert lines[1].startswith("5000,") and len(lines) == len(ids) + 1
    refused = run_cli("blend", "priv", "--train", str(comp.train), "--test", str(comp.test), "--workdir", str(tmp_path))
    assert refused.returncode == 2 and "predicted a different test file" in refused.stderr


# ----------------------------------------------------------------------------- EMA, mixup/cutmix, shift TTA


def _fit_fold(cfg, small, checkpoint=None, **fit_kw):
    from fmnist_kaggle.training.fit import fit

    x, y = small["x_train"], small["y_train"]
    return fit(
        cfg, 10, x[:300], y[:300], x[300:], y[300:], fold=0, seed=0, checkpoint=checkpoint, progress=False, **fit_kw
    )


def _val_logits(res, cfg, small):
    from fmnist_kaggle.training.inference import predict

    return predict(res.model, torch.from_numpy(small["x_train"][300:]), cfg, torch.device("cpu"))


def _interrupted_then_resumed(cfg, small, tmp_path, monkeypatch, **fit_kw):
    """Stop the fit while it saves its 2nd epoch checkpoint, then resume from the 1st."""
    ck = tmp_path / "checkpoint.pt"
    real_save = torch.save

    def dies_at_epoch_2(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("state", {}).get("epoch") == 2:
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dies_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _fit_fold(cfg, small, ck, **fit_kw)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(ck, weights_only=True)["state"]["epoch"] == 1
    return _fit_fold(cfg, small, ck, **fit_kw)


@pytest.mark.parametrize("extra", [dict(ema=0.9), dict(mixup=0.4, cutmix=1.0), dict(ema=0.95, cutmix=1.0)])
def test_ema_and_mixup_runs_resume_exactly(tmp_path, small, monkeypatch, extra):
    cfg = build_config(**{**TINY, "epochs": 3, "batch_size": 32, **extra})
    whole = _fit_fold(cfg, small)
    again = _fit_fold(cfg, small)  # reproducible: the same seeds mix the same pairs
    resumed = _interrupted_then_resumed(cfg, small, tmp_path, monkeypatch)
    a, b, c = (_val_logits(r, cfg, small) for r in (whole, again, resumed))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    assert [h["val_loss"] for h in whole.history] == [h["val_loss"] for h in resumed.history]


def test_ema_weights_are_what_is_evaluated_and_differ_from_the_raw_weights(small):
    plain = _fit_fold(build_config(**{**TINY, "epochs": 2, "batch_size": 32}), small)
    cfg = build_config(**{**TINY, "epochs": 2, "batch_size": 32, "ema": 0.9})
    ema = _fit_fold(cfg, small)
    # same seed, same batches: the raw weights would match `plain`; the returned (evaluated) model is the average
    raw = [p for p in plain.model.parameters()]
    avg = [p for p in ema.model.parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(raw, avg))
    assert not np.allclose(_val_logits(plain, cfg, small), _val_logits(ema, cfg, small), atol=1e-3)
    assert ema.history[-1]["val_loss"] != plain.history[-1]["val_loss"]


def test_mixup_targets_are_soft_and_need_even_batches():
    from fmnist_kaggle.training.loss import loss_fn, make_mixer

    cfg = build_config(**{**TINY, "mixup": 0.4, "batch_size": 8, "label_smoothing": 0.1})
    np.random.seed(0)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    mx, target = make_mixer(cfg, 10)(x.clone(), y)
    assert (
        target.shape == (8, 10) and torch.allclose(target.sum(1), torch.ones(8)) and (target.max(1).values < 0.96).all()
    )
    assert not torch.allclose(mx, x)
    assert torch.isfinite(loss_fn(cfg, torch.randn(8, 10), target))
    with pytest.raises(FkaggleError, match="batch_size must be even, got 63"):
        build_config(**{**TINY, "cutmix": 1.0, "batch_size": 63})


def test_shift_tta_views_are_the_shifted_images_and_average_in_logit_space():
    from fmnist_kaggle.training.inference import predict, shift, tta_views

    x = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    down = shift(x, 2, 0, -1.0)
    assert torch.equal(down[..., 2:, :], x[..., :-2, :]) and (down[..., :2, :] == -1).all()
    left = shift(x, 0, -1, 0.0)
    assert torch.equal(left[..., :, :-1], x[..., :, 1:]) and (left[..., :, -1] == 0).all()
    cfg = build_config(**{**TINY, "tta_shift": 1})
    views = tta_views(x, cfg)
    assert len(views) == 5 and torch.equal(views[0], x)
    assert torch.equal(views[2], shift(x, 1, 0, 0.0))  # background of unnormalized inputs is 0
    assert len(tta_views(x, build_config(**{**TINY, "tta_shift": 2, "tta": True, "augment": "cropflip"}))) == 10
    norm = build_config(**{**TINY, "tta_shift": 1, "normalize": True})
    assert float(tta_views(x, norm)[1][0, 0, -1, 0]) == pytest.approx(
        (0 - 0.2860) / 0.3530
    )  # filled with the normalized background
    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    got = predict(model, images, cfg, torch.device("cpu"))
    base = images.unsqueeze(1).float() / 255
    with torch.no_grad():
        want = sum(model(v) for v in tta_views(base, cfg)) / 5
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_cpu_bf16_under_auto_only_where_the_cpu_has_it(monkeypatch, small):
    import fmnist_kaggle.training.device as train

    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "cpu_native_bf16", lambda: True)
    assert train.amp_dtype(build_config(**TINY), cpu) == torch.bfloat16
    assert train.amp_dtype(build_config(**TINY, amp="off"), cpu) is None
    monkeypatch.setattr(train, "cpu_native_bf16", lambda: False)
    assert train.amp_dtype(build_config(**TINY), cpu) is None  # emulated bf16 is slower than fp32
    assert train.amp_dtype(build_config(**TINY, amp="bf16"), cpu) == torch.bfloat16  # asked for: given
    res = _fit_fold(build_config(**{**TINY, "amp": "bf16", "epochs": 1}), small)
    assert (
        np.isfinite(res.history[0]["train_loss"]) and next(res.model.parameters()).dtype == torch.float32
    )  # autocast, fp32 weights
    monkeypatch.undo()
    flags = open("/proc/cpuinfo").read()
    held = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("AVX2", "AVX512_CORE")  # make test-avx2
    assert train.cpu_native_bf16() == (("avx512_bf16" in flags or "amx_bf16" in flags) and not held)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    unheld = train.machine_key("cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # oneDNN held below bf16: emulated, so auto keeps fp32
    assert not train.cpu_native_bf16() and train.amp_dtype(build_config(**TINY), cpu) is None
    assert train.machine_key("cpu") == unheld.replace(" | ", " | oneDNN AVX2 | ", 1)  # its speeds kept apart
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert train.cpu_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


# ----------------------------------------------------------------------------- honest pseudo-labels


def test_fold_k_pseudo_labels_come_from_the_teachers_fold_k_models_only(tmp_path, comp, monkeypatch):
    import fmnist_kaggle.training.fit as train_mod
    from fmnist_kaggle.storage.artifacts import read_array

    teacher = build_config(**{**TINY, "folds": 2, "epochs": 1})
    train_folds(comp, teacher, run="teacher", workdir=tmp_path, progress=False)
    rd = Workspace(tmp_path).run("teacher")
    fold_logits = [
        read_array(rd.fold(k).test_logits, json.loads(rd.fold(k).metrics.read_text())["artifacts"]["test_logits.npy"])
        for k in range(2)
    ]
    assert (
        fold_logits[0].argmax(1) != fold_logits[1].argmax(1)
    ).any()  # the folds' teachers disagree somewhere: which one labels matters

    seen = {}
    real_fit = train_mod.fit

    def spy(cfg, k, x, y, vx, vy, fold, seed, **kw):
        seen[fold] = (len(x), y.copy(), kw["train_w"].copy())
        return real_fit(cfg, k, x, y, vx, vy, fold, seed, **kw)

    monkeypatch.setattr(train_mod, "fit", spy)
    student = build_config(
        **{**TINY, "folds": 2, "epochs": 1, "pseudo_label": "teacher", "pseudo_threshold": 0.0, "pseudo_weight": 0.5}
    )
    m = train_folds(comp, student, run="student", workdir=tmp_path, progress=False)
    n_train, n_test = 200, len(comp.test_set)
    for k in range(2):
        n, y, w = seen[k]
        assert n == n_train + n_test
        np.testing.assert_array_equal(
            y[n_train:], fold_logits[k].argmax(1)
        )  # fold k's teacher, not the other fold's or their mean
        assert (w[:n_train] == 1).all() and (w[n_train:] == 0.5).all()
    rec = m["pseudo_label"]
    assert (
        rec["teachers"] == ["teacher"]
        and rec["threshold"] == 0.0
        and rec["weight"] == 0.5
        and rec["rows_per_fold"] == {"0": n_test, "1": n_test}
    )
    # a confidence threshold keeps, per fold, the rows that fold's teacher is sure of
    sure = build_config(**{**TINY, "folds": 2, "epochs": 1, "pseudo_label": "teacher", "pseudo_threshold": 0.5})
    m2 = train_folds(comp, sure, run="student-sure", workdir=tmp_path, progress=False)
    probs = [
        np.exp(lg - lg.max(1, keepdims=True)) / np.exp(lg - lg.max(1, keepdims=True)).sum(1, keepdims=True)
        for lg in fold_logits
    ]
    assert m2["pseudo_label"]["rows_per_fold"] == {str(k): int((p.max(1) >= 0.5).sum()) for k, p in enumerate(probs)}
    assert m2["identity"]["teacher_fingerprint"] == m["identity"]["teacher_fingerprint"]
    # the student blends with its teacher (same data and folds)
    res = run_cli(
        "blend",
        "teacher",
        "student",
        "--workdir",
        str(tmp_path),
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr


def test_a_teacher_on_other_folds_is_refused(tmp_path, comp):
    train_folds(
        comp, build_config(**{**TINY, "folds": 3, "epochs": 1}), run="teacher3", workdir=tmp_path, progress=False
    )
    with pytest.raises(FkaggleError, match="different fold assignment"):
        train_folds(
            comp,
            build_config(**{**TINY, "folds": 2, "epochs": 1, "pseudo_label": "teacher3"}),
            run="s",
            workdir=tmp_path,
            progress=False,
        )
    with pytest.raises(FkaggleError, match="no run 'nobody'"):
        train_folds(
            comp,
            build_config(**{**TINY, "folds": 3, "epochs": 1, "pseudo_label": "nobody"}),
            run="s",
            workdir=tmp_path,
            progress=False,
        )
    assert not (tmp_path / "oof" / "s").exists()


# ----------------------------------------------------------------------------- a deadline (the autopilot's driver)


class _SlowLocal(LocalExecutor):
    """The in-process executor, holding each result until `hold` has passed (a unit that overruns)."""

    def __init__(self, hold: float) -> None:
        super().__init__(progress=False)
        self.hold, self.trained = hold, []

    def next_done(self, timeout=None):
        unit, result = super().next_done(timeout)
        self.trained.append((unit.fold, unit.seed))
        time.sleep(max(0.0, self.hold - time.monotonic()))
        return unit, result


def test_a_deadline_starts_nothing_after_it_and_the_same_call_resumes(tmp_path, comp, caplog):
    cfg = build_config(**{**TINY, "folds": 2, "seeds": [0, 1]})
    train_folds(comp, cfg, run="ref", workdir=tmp_path / "ref", progress=False)
    # the deadline passes while the first unit trains: the other three never start
    slow = _SlowLocal(hold=time.monotonic() + 1.0)
    with pytest.raises(
        FkaggleError, match=r"3 \(fold, seed\) unit\(s\) stopped at the deadline.*re-run the same command to finish"
    ):
        train_folds(comp, cfg, run="r", workdir=tmp_path, progress=False, executor=slow, deadline=slow.hold)
    assert slow.trained == [(0, 0)]
    assert status(Workspace(tmp_path).run("r"))["fold_status"] == {"0": "partial", "1": "missing"}
    # already past: nothing starts, nothing is lost
    with pytest.raises(FkaggleError, match=r"3 \(fold, seed\) unit\(s\) stopped at the deadline"):
        train_folds(comp, cfg, run="r", workdir=tmp_path, progress=False, deadline=time.monotonic())
    caplog.clear()
    caplog.set_level("INFO", logger="fmnist_kaggle")
    m = train_folds(comp, cfg, run="r", workdir=tmp_path, progress=False)
    assert "3 (fold, seed) unit(s) to train" in caplog.text and m["complete"]
    ref, resumed = load_run("ref", tmp_path / "ref"), load_run("r", tmp_path)
    assert np.array_equal(ref.oof_logits, resumed.oof_logits) and np.array_equal(ref.test_logits, resumed.test_logits)


def test_validating_only_after_the_last_epoch_agrees_with_the_fold_line_and_saves_the_passes(tmp_path, comp):
    """`--eval-every 0`: one validation, in the precision the OOF predictions are saved in, so the
    epoch line and the fold line show one number; the OOF logits are that validation's logits."""
    args = [
        "fold-train",
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--model",
        "fmnist_resnet",
        "--model-arg",
        "width=8",
        "--epochs",
        "3",
        "--folds",
        "2",
        "--batch-size",
        "32",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--no-progress",
        "--workdir",
        str(tmp_path),
    ]
    every = run_cli(*args, "--run", "every")
    last = run_cli(*args, "--run", "last", "--eval-every", "0")
    assert every.returncode == 0 and last.returncode == 0, last.stderr
    hist = list(csv.DictReader((tmp_path / "oof/last/fold_0/history.csv").open()))
    assert [bool(r["val_acc"]) for r in hist] == [False, False, True]
    epoch_line = next(line for line in last.stderr.splitlines() if "[last f0 s0] epoch 3/3" in line)
    fold_line = next(line for line in last.stderr.splitlines() if line.startswith("fold 0: acc"))
    assert epoch_line.split("val ")[1].split()[0].split("/")[1] == fold_line.split()[3]  # one number for one thing
    assert "val -" in next(line for line in last.stderr.splitlines() if "[last f0 s0] epoch 1/3" in line)
    a, b = load_run("every", tmp_path), load_run("last", tmp_path)
    assert (
        a.manifest["identity"]["config"] != b.manifest["identity"]["config"]
        and "eval_every" not in a.manifest["identity"]["config"]
    )  # the default leaves older identities as they were
    m = json.loads((tmp_path / "oof/every/fold_0/metrics.json").read_text())
    if m["best_epochs"] == [
        3
    ]:  # the same weights chosen: the same OOF predictions, one validation pass fewer per epoch
        assert np.array_equal(a.oof_logits[a.fold_of == 0], b.oof_logits[b.fold_of == 0])


@pytest.mark.slow
@pytest.mark.timing
def test_fold_train_estimates_its_time_before_training_and_warns_of_a_gpu_recipe_on_a_cpu(tmp_path):
    """The estimate is measured here (a few real steps) and printed before the first unit; a GPU
    recipe that would take hours on this CPU is named with what to use instead. The run is
    stopped once it has said so (it would train for hours)."""
    from conftest import stderr_until, synthetic_images

    x, y = synthetic_images(100)
    args = [
        "fold-train",
        "--train",
        str(write_csv(tmp_path / "train.csv", x, y)),
        "--recipe",
        "strong",
        "--batch-size",
        "64",
        "--epochs",
        "2000",
        "--no-progress",
        "--run",
        "long",
    ]
    lines = stderr_until(args, tmp_path, "warning: run long would train")
    text = "".join(lines)
    estimate = next((ln for ln in lines if "estimated" in ln), "")
    assert "run long: estimated" in estimate and "unit(s) here" in estimate and "img/s training" in estimate, text
    assert "recipe strong is tuned for a GPU; use --recipe cpu or fast or fast-aug (made for CPUs)" in text, text
    assert not (tmp_path / "oof/long/fold_0/metrics.json").exists()  # said before any fold finished

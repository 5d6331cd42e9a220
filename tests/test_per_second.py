"""More accuracy a second (issue 50): progressive resizing and honest distillation. Numerics, not
speed: the schedule of image sides, deterministic runs that resume exactly, a time model that
charges each step its pixels, and a distilled fold that learns only from the teacher's model of
the same fold (which never saw that fold's held-out rows)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import write_csv
from test_train import TINY, _fit_fold, _interrupted_then_resumed, _val_logits, run_cli_train

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.runs.fold_models import load_fold_models
from fmnist_kaggle.runs.store import load_fold_model
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import build_config
from fmnist_kaggle.training.estimate import Throughput, unit_seconds
from fmnist_kaggle.training.inference import predict
from fmnist_kaggle.training.progressive import late_work, side_at, work_share

RESNET = dict(TINY, model="fmnist_resnet", model_kwargs={"width": 4})


@pytest.fixture()
def comp(tmp_path, small) -> Competition:
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], small["y_test"])
    return Competition(name="tiny", train=train, test=test)


# ----------------------------------------------------------------------------- progressive resizing


def test_the_side_ramps_up_in_steps_of_4_px_and_is_full_from_resize_until_on():
    ramp = build_config(**RESNET, resize_from=16, resize_until=0.5)
    sides = [side_at(ramp, s, 100) for s in range(100)]
    assert sides[0] == 16 and set(sides[50:]) == {28}
    assert sides == sorted(sides) and set(sides) == {16, 20, 24, 28}
    stage = build_config(**RESNET, resize_from=12, resize_until=0.25, resize_mode="step")
    assert [side_at(stage, s, 8) for s in range(8)] == [12, 12, 28, 28, 28, 28, 28, 28]
    off = build_config(**RESNET)
    assert {side_at(off, s, 10) for s in range(10)} == {28} and work_share(off, 10) == 1.0
    # the work a step costs is its share of the pixels
    assert work_share(stage, 8) == pytest.approx((2 * (12 / 28) ** 2 + 6) / 8)
    with pytest.raises(FkaggleError, match="resize_from must be 0 \\(off\\) or 8..28, got 4"):
        build_config(**RESNET, resize_from=4)


def test_a_resized_run_trains_on_the_scheduled_sides_and_predicts_at_full_size(small):
    from fmnist_kaggle.training.fit import fit

    cfg = build_config(**{**RESNET, "epochs": 2, "batch_size": 50, "resize_from": 12, "resize_until": 0.5})
    seen: list[tuple[bool, int]] = []
    real = torch.nn.Conv2d.forward

    def spy(self, x):
        if self.in_channels == 1:  # the stem: the images as the model gets them
            seen.append((torch.is_grad_enabled(), x.shape[-1]))
        return real(self, x)

    x, y = small["x_train"], small["y_train"]
    try:
        torch.nn.Conv2d.forward = spy
        fit(cfg, 10, x[:300], y[:300], x[300:], y[300:], fold=0, seed=0, progress=False)
    finally:
        torch.nn.Conv2d.forward = real
    trained = [side for grad, side in seen if grad]
    assert trained == [side_at(cfg, s, 12) for s in range(12)] and trained[0] == 12 and trained[-1] == 28
    assert {side for grad, side in seen if not grad} == {28}  # validation: full size


@pytest.mark.parametrize(
    "extra", [dict(resize_from=16, resize_until=0.6), dict(resize_from=12, resize_until=0.5, resize_mode="step")]
)
def test_progressive_resizing_is_deterministic_and_resumes_exactly(tmp_path, small, monkeypatch, extra):
    cfg = build_config(**{**RESNET, "epochs": 3, "batch_size": 32, **extra})
    whole, again = _fit_fold(cfg, small), _fit_fold(cfg, small)
    resumed = _interrupted_then_resumed(cfg, small, tmp_path, monkeypatch)
    a, b, c = (_val_logits(r, cfg, small) for r in (whole, again, resumed))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    plain = _val_logits(_fit_fold(build_config(**{**RESNET, "epochs": 3, "batch_size": 32}), small), cfg, small)
    assert not np.allclose(a, plain, atol=1e-3)  # the sides changed what it learnt


def test_the_time_model_charges_a_resized_run_its_pixels_at_the_full_size_speed():
    speed = Throughput(1000.0, predict_ips=1e9, device="cpu", precision="float32", fixed_s=0.0, refresh_ips=1e9)
    full = build_config(recipe="fast", epochs=2, eval_every=0)
    ramp = replace(full, resize_from=16, resize_until=0.5)
    rows = 25_600  # 100 steps of 256
    share, late = late_work(full)  # the whitening stem stops training at 30% of the steps: cheaper steps after
    assert work_share(full, 200) == pytest.approx(share + (1 - share) * late) and late < 1
    assert unit_seconds(full, speed, rows, 0, 0) == pytest.approx(2 * rows / 1000 * work_share(full, 200))
    assert unit_seconds(ramp, speed, rows, 0, 0) == pytest.approx(2 * rows / 1000 * work_share(ramp, 200))
    assert ramp.speed_key() == full.speed_key()  # one speed (of full-size images) serves both


# ----------------------------------------------------------------------------- honest distillation


def test_the_distillation_loss_is_the_label_loss_when_student_and_teacher_agree():
    from fmnist_kaggle.training.loss import loss_fn

    cfg = build_config(**TINY, distill_from="t", distill_weight=0.25, distill_temperature=3.0)
    logits, y = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    label_only = loss_fn(build_config(**TINY), logits, y)
    assert loss_fn(cfg, logits, y, teacher=logits.clone()) == pytest.approx(0.75 * float(label_only), rel=1e-5)
    assert loss_fn(cfg, logits, y, teacher=-logits) > loss_fn(cfg, logits, y, teacher=logits)


def test_a_distilled_fold_learns_only_from_the_teachers_model_of_that_fold(tmp_path, comp, monkeypatch):
    import fmnist_kaggle.training.fit as fit_mod

    longer = {**TINY, "folds": 2, "epochs": 2, "batch_size": 16}  # 24 steps a fold: well above chance
    train_folds(comp, build_config(**longer), run="teacher", workdir=tmp_path, progress=False)
    seen, real_fit = {}, fit_mod.fit

    def spy(cfg, k, x, y, vx, vy, fold, seed, **kw):
        seen[fold] = (x.copy(), kw["train_t"].copy())
        return real_fit(cfg, k, x, y, vx, vy, fold, seed, **kw)

    monkeypatch.setattr(fit_mod, "fit", spy)
    student = build_config(**{**longer, "distill_from": "teacher"})
    m = train_folds(comp, student, run="student", workdir=tmp_path, progress=False)
    rd = Workspace(tmp_path).run("teacher")
    tm = rd.read_manifest()
    fold_of = np.load(tmp_path / "oof/teacher/folds.npy")
    cfg = build_config(**tm["config"])
    for k in range(2):
        x, soft = seen[k]
        np.testing.assert_array_equal(x, comp.train_set.images[fold_of != k])  # the fold's own training rows
        own, other = (
            predict(load_fold_model(rd, tm, j, 0), torch.from_numpy(x), cfg, torch.device("cpu")) for j in (k, 1 - k)
        )
        np.testing.assert_allclose(soft, own, atol=1e-5)  # the teacher's fold-k model ...
        assert not np.allclose(soft, other, atol=1e-3)  # ... not the one that trained on fold k's held-out rows
    assert m["distill"]["teacher"] == "teacher"
    assert m["identity"]["distill_fingerprint"] == m["distill"]["teacher_fingerprint"]
    assert m["complete"] and m["cv"]["acc"] > 0.2


def test_a_distillation_teacher_on_other_folds_or_unfinished_is_refused_in_one_line(tmp_path, comp):
    other_folds = build_config(**{**TINY, "fold_seed": 7})
    train_folds(comp, other_folds, run="teacher3", workdir=tmp_path, progress=False)
    res = run_cli_train(tmp_path, comp, "--distill-from", "teacher3")  # 3 folds of fold seed 42
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "distillation teacher teacher3 has a different fold assignment than this run" in res.stderr
    assert not (tmp_path / "oof" / "tiny-run").exists()
    train_folds(
        comp, build_config(**{**TINY, "folds": 2}), run="half", workdir=tmp_path, progress=False, only_folds=[0]
    )
    with pytest.raises(FkaggleError, match="distillation teacher half has no finished fold 1"):
        load_fold_models(Workspace(tmp_path), "half", _identity_of(tmp_path, "half"), 2, "distillation teacher")


def _identity_of(root, run: str) -> dict:
    return json.loads((root / "oof" / run / "manifest.json").read_text())["identity"]


def test_distillation_is_deterministic_and_resumes_exactly(tmp_path, small, monkeypatch):
    x = small["x_train"]
    teacher = _fit_fold(build_config(**TINY), small)
    soft = predict(teacher.model, torch.from_numpy(x[:300]), build_config(**TINY), torch.device("cpu"))
    cfg = build_config(**{**TINY, "epochs": 3, "batch_size": 32, "distill_from": "t"})
    whole, again = _fit_fold(cfg, small, train_t=soft), _fit_fold(cfg, small, train_t=soft)
    resumed = _interrupted_then_resumed(cfg, small, tmp_path, monkeypatch, train_t=soft)
    a, b, c = (_val_logits(r, cfg, small) for r in (whole, again, resumed))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    plain = _val_logits(_fit_fold(build_config(**{**TINY, "epochs": 3, "batch_size": 32}), small), cfg, small)
    assert not np.allclose(a, plain, atol=1e-3)  # the teacher's targets changed what it learnt


def test_distillation_with_a_second_source_of_targets_or_a_prediction_as_teacher_is_refused(tmp_path, comp, small):
    for extra in (
        dict(pseudo_label="t"),
        dict(mixup=0.2),
        dict(augment="custom", augment_pipeline=[{"name": "HorizontalFlip"}]),
    ):
        with pytest.raises(FkaggleError, match="distillation \\(distill_from\\) learns one teacher's targets"):
            build_config(**TINY, distill_from="t", **extra)
    train_folds(comp, build_config(**{**TINY, "folds": 2}), run="src", workdir=tmp_path, progress=False)
    other_test = write_csv(tmp_path / "other.csv", small["x_test"][:20], small["y_test"][:20])
    from fmnist_kaggle.runs.predict import predict_run

    predict_run("src", other_test, name="src-on-other", workdir=tmp_path)
    with pytest.raises(FkaggleError, match="distillation teacher src-on-other is a prediction of src: name that run"):
        load_fold_models(Workspace(tmp_path), "src-on-other", _identity_of(tmp_path, "src"), 2, "distillation teacher")


# ----------------------------------------------------------------------------- continuing a run (--init-from)


def test_a_continued_fold_starts_from_the_same_folds_model_and_records_it(tmp_path, comp, monkeypatch):
    import fmnist_kaggle.training.fit as fit_module

    cfg = build_config(**{**RESNET, "folds": 2})
    train_folds(comp, cfg, run="src", workdir=tmp_path, progress=False)
    started: dict[int, dict] = {}
    real = fit_module.make_stepper

    def spy(cfg, num_classes, train_x, train_y, fold=0, *a, **k):
        s, batches = real(cfg, num_classes, train_x, train_y, fold, *a, **k)
        started[fold] = {n: t.clone() for n, t in s.model.state_dict().items()}
        return s, batches

    monkeypatch.setattr(fit_module, "make_stepper", spy)
    train_folds(comp, replace(cfg, init_from="src"), run="cont", workdir=tmp_path, progress=False)
    m = json.loads((tmp_path / "oof" / "cont" / "manifest.json").read_text())
    assert m["init"]["init_from"] == "src" and m["identity"]["init_fingerprint"] == m["init"]["init_from_fingerprint"]
    src = Workspace(tmp_path).run("src"), _manifest(tmp_path, "src")
    for k in (0, 1):  # fold k starts from src's fold-k model, not the other fold's
        own, other = (load_fold_model(*src, f, 0) for f in (k, 1 - k))
        for name, weights in own.state_dict().items():
            torch.testing.assert_close(started[k][name], weights)
        assert any(not torch.equal(started[k][n], w) for n, w in other.state_dict().items())


def test_a_continuation_is_deterministic_and_resumes_exactly(tmp_path, small, monkeypatch):
    cfg = build_config(**{**TINY, "epochs": 3, "batch_size": 32})
    start = _fit_fold(build_config(**TINY), small).model.state_dict()
    whole, again = _fit_fold(cfg, small, start=start), _fit_fold(cfg, small, start=start)
    resumed = _interrupted_then_resumed(cfg, small, tmp_path, monkeypatch, start=start)
    a, b, c = (_val_logits(r, cfg, small) for r in (whole, again, resumed))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    fresh = _val_logits(_fit_fold(cfg, small), cfg, small)
    assert not np.allclose(a, fresh, atol=1e-3)  # it learnt on from the start, not from scratch


def test_a_continuation_of_another_model_folds_or_seeds_is_refused_in_one_line(tmp_path, comp):
    two = dict(RESNET, folds=2)
    train_folds(comp, build_config(**two, seeds=[0, 1]), run="w4", workdir=tmp_path, progress=False)
    refused = {
        "wide": (dict(two, model_kwargs={"width": 8}), "--init-from w4: it trained fmnist_resnet \\{'width': 4\\}"),
        "three": (dict(two, folds=3), "the run to continue \\(--init-from\\) w4 has a different fold assignment"),
        "seeds": (two, "--init-from w4: it has 2 seeds a fold; continue a run of one"),
    }
    for run, (settings, why) in refused.items():
        with pytest.raises(FkaggleError, match=why):
            train_folds(comp, build_config(**settings, init_from="w4"), run=run, workdir=tmp_path, progress=False)
        assert not (tmp_path / "oof" / run).exists()


def _manifest(root, run: str) -> dict:
    return json.loads((root / "oof" / run / "manifest.json").read_text())

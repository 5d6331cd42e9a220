"""Blending: every method on realistic OOF arrays, honest nested CV, leakage refusal, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from fmnist_kaggle import metrics
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.blend import METHODS, blend, check_compatible
from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.runs.store import Run
from fmnist_kaggle.training.config import build_config


def _fake_run(
    name: str,
    y: np.ndarray,
    fold_of: np.ndarray,
    strength: float,
    confusion_seed: int,
    n_test: int = 500,
    data_fp: str = "d" * 64,
    folds_fp: str = "f" * 64,
    test_fp: str = "t",
) -> Run:
    """OOF logits like a real model's: right class boosted, plus run-specific class confusions and noise."""
    rng = np.random.default_rng(confusion_seed)
    k = 10
    confuse = rng.normal(0, 0.8, (k, k))  # systematic, model-specific mistakes (e.g. shirt vs T-shirt)

    def logits(labels: np.ndarray) -> np.ndarray:
        z = strength * np.eye(k)[labels] + confuse[labels] + rng.normal(0, 1.3, (len(labels), k))
        return z.astype(np.float32)

    y_test = np.arange(n_test) % k
    identity = {"data_fingerprint": data_fp, "folds_fingerprint": folds_fp, "test_fingerprint": test_fp}
    manifest = {"run": name, "model": name, "identity": identity, "data": {**identity, "label_values": list(range(k))}}
    return Run(
        name=name,
        dir=None,
        manifest=manifest,
        oof_logits=logits(y),
        test_logits=logits(y_test),
        fold_of=fold_of,
        labels=y,
    )


@pytest.fixture(scope="module")
def realistic(fmnist) -> tuple[list[Run], np.ndarray]:
    y = fmnist["y_train"][:3000]
    fold_of = make_folds(y, 5, 42)
    runs = [_fake_run(f"run{i}", y, fold_of, s, i) for i, s in enumerate([3.2, 2.9, 2.7, 2.4])]
    return runs, y


@pytest.mark.parametrize("method", METHODS)
def test_every_method_produces_valid_log_probabilities(realistic, method):
    runs, y = realistic
    res = blend(runs, y, method)
    for arr, n in ((res.oof, len(y)), (res.test, 500)):
        assert arr.shape == (n, 10) and np.isfinite(arr).all()
        assert np.allclose(np.exp(arr).sum(1), 1, atol=1e-6)
    assert 0.5 < res.cv_acc <= 1 and res.cv_logloss > 0


def test_blend_of_diverse_runs_beats_best_single_run(realistic):
    runs, y = realistic
    best_single = min(metrics.log_loss(r.oof_logits, y) for r in runs)
    for method in ("mean", "geomean", "weighted", "hillclimb", "stack"):
        res = blend(runs, y, method)
        assert res.cv_logloss < best_single, method
    assert blend(runs, y, "mean").cv_acc > max(metrics.accuracy(r.oof_logits, y) for r in runs)


def test_nested_cv_is_not_better_than_in_sample(realistic):
    runs, y = realistic
    for method in ("weighted", "hillclimb", "stack"):
        res = blend(runs, y, method)
        assert res.insample_logloss is not None
        assert res.cv_logloss >= res.insample_logloss - 1e-9, method


def test_weighted_blend_prefers_the_better_run(realistic):
    runs, y = realistic
    w = blend(runs, y, "weighted").details["weights"]
    assert w["run0"] > w["run3"] and abs(sum(w.values()) - 1) < 1e-3


def test_stack_temperature_scaling_improves_calibration(realistic):
    runs, y = realistic
    plain, scaled = blend(runs, y, "stack"), blend(runs, y, "stack", temperature=True)
    assert scaled.details["temperature"] != 1.0
    assert scaled.insample_logloss <= plain.insample_logloss + 1e-9


def test_runs_with_other_folds_or_data_are_refused(realistic):
    runs, y = realistic
    other_folds = _fake_run("x", y, runs[0].fold_of, 3.0, 9, folds_fp="g" * 64)
    with pytest.raises(FkaggleError, match="different fold assignment .* leak"):
        check_compatible([runs[0], other_folds])
    other_data = _fake_run("z", y, runs[0].fold_of, 3.0, 9, data_fp="e" * 64)
    with pytest.raises(FkaggleError, match="different training data"):
        blend([runs[0], other_data], y, "mean")
    # another test file leaks nothing: the message says which --test to pass instead
    other_test = _fake_run("p", y, runs[0].fold_of, 3.0, 9, test_fp="u")
    with pytest.raises(
        FkaggleError, match=r"run p has a different test file than .*predicted different test files.*--test FILE"
    ) as refused:
        check_compatible([runs[0], other_test])
    assert "leak" not in str(refused.value)


def test_five_class_labels_map_back_end_to_end(tmp_path, five_class_npy):
    """Train two tiny runs on a 1..5 NPY-dict competition, blend, write, validate, score."""
    f = five_class_npy
    cfg_toml = tmp_path / "comp.toml"
    cfg_toml.write_text(
        f'[competition]\nname = "five"\nslug = "five-class"\ntrain = "{f["train"]}"\ntest = "{f["test"]}"\n'
        f'test_labels = "{f["truth"]}"\nsample_submission = "{f["sample"]}"\n'
    )
    base = dict(folds=3, epochs=1, batch_size=32, optimizer="adam", lr=2e-3, schedule="constant", eval_batch_size=256)
    from fmnist_kaggle.data.competition import load_competition

    comp = load_competition(cfg_toml)
    for name, model in (("k1", "keras_model1"), ("ln", "lenet5")):
        train_folds(comp, build_config(model=model, **base), run=name, workdir=tmp_path, progress=False)
    res = run_cli(
        "blend",
        "k1",
        "ln",
        "--method",
        "stack",
        "--name",
        "five",
        "--competition",
        str(cfg_toml),
        "--workdir",
        str(tmp_path),
        "--json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["cv"]["nested"] and "cv_in_sample" in out
    csv = (tmp_path / "submissions/five.csv").read_text().splitlines()
    assert csv[0] == "Id,Category"
    labels = {int(line.split(",")[1]) for line in csv[1:]}
    assert labels <= {1, 2, 3, 4, 5} and len(labels) >= 2
    assert [line.split(",")[0] for line in csv[1:]] == [str(i) for i in range(1, len(csv))]
    meta = json.loads((tmp_path / "submissions/five.json").read_text())
    assert [r["run"] for r in meta["runs"]] == ["k1", "ln"] and meta["runs"][0]["folds_fingerprint"]
    v = run_cli("validate", str(tmp_path / "submissions/five.csv"), "--competition", str(cfg_toml))
    assert v.returncode == 0 and "valid" in v.stdout
    s = run_cli("score", str(tmp_path / "submissions/five.csv"), "--competition", str(cfg_toml), "--json")
    assert s.returncode == 0, s.stderr
    assert abs(json.loads(s.stdout)["acc"] - meta["test"]["acc"]) < 1e-9
    cv = run_cli("cv", "k1", "ln", "--workdir", str(tmp_path))
    assert cv.returncode == 0, cv.stderr
    assert "OOF probability correlation" in cv.stdout and "confusion" in cv.stdout
    assert (tmp_path / "oof/cv/k1_confusion.png").exists()


def test_blend_refuses_runs_on_different_folds_via_cli(tmp_path, small):
    from conftest import write_csv

    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"])
    comp = Competition(name="t", train=train, test=test)
    base = dict(model="lenet5", folds=3, epochs=1, batch_size=64, schedule="constant")
    train_folds(comp, build_config(**base), run="a", workdir=tmp_path, progress=False)
    train_folds(comp, build_config(**base, fold_seed=1), run="b", workdir=tmp_path, progress=False)
    res = run_cli("blend", "a", "b", "--train", str(train), "--test", str(test), "--workdir", str(tmp_path))
    assert res.returncode == 2
    assert "different fold assignment" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "submissions").exists()


def _reference_hillclimb(
    logps: list[np.ndarray], y: np.ndarray, iters: int = 40, bags: int = 10, bag_frac: float = 0.6, seed: int = 0
) -> np.ndarray:
    """The plain Caruana loop the vectorised one replaced: every candidate scored with metrics.log_loss."""
    rng = np.random.default_rng(seed)
    r, counts = len(logps), np.zeros(len(logps))
    for _ in range(bags if r >= 6 else 1):
        pool = rng.choice(r, size=max(2, int(round(bag_frac * r))), replace=False) if r >= 6 else np.arange(r)
        total, path, best_loss, best_len = np.zeros_like(logps[0]), [], np.inf, 0
        for step in range(1, iters + 1):
            losses = [metrics.log_loss((total + logps[m]) / step, y) for m in pool]
            m = int(pool[int(np.argmin(losses))])
            path.append(m)
            total = total + logps[m]
            if min(losses) < best_loss - 1e-12:
                best_loss, best_len = min(losses), step
            elif step - best_len >= 8:
                break
        for m in path[:best_len]:
            counts[m] += 1 / best_len
    return counts / counts.sum()


@pytest.mark.parametrize("n_runs", [4, 9])
def test_vectorised_hillclimb_makes_the_reference_selections(fmnist, n_runs):
    from fmnist_kaggle.evaluate.blenders._common import _logprobs
    from fmnist_kaggle.evaluate.blenders._pool import fit_hillclimb

    y = fmnist["y_train"][:6000]
    fold_of = make_folds(y, 5, 42)
    # varied strengths and confidence scales: calibrated and over/under-confident runs, some near-duplicates
    runs = [_fake_run(f"r{i}", y, fold_of, 2.2 + 0.15 * (i % 5), i % 7) for i in range(n_runs)]
    logps = [_logprobs(r.oof_logits * (0.4 + 0.35 * i)) for i, r in enumerate(runs)]
    for seed in (0, 1):
        np.testing.assert_allclose(
            fit_hillclimb(logps, y, seed=seed), _reference_hillclimb(logps, y, seed=seed), atol=1e-12
        )


def test_temperature_is_the_log_loss_minimiser(realistic):
    from scipy.optimize import minimize_scalar

    from fmnist_kaggle.evaluate.blenders._common import fit_temperature

    runs, y = realistic
    for scale in (0.3, 1.0, 4.0):  # under-confident, as trained, over-confident
        z = runs[0].oof_logits.astype(np.float64) * scale
        t = fit_temperature(z, y)
        ref = minimize_scalar(
            lambda t: metrics.log_loss(z / t, y),  # noqa: B023  (called here, in this iteration)
            bounds=(0.05, 20),
            method="bounded",
            options={"xatol": 1e-8},
        ).x
        assert abs(t - ref) / ref < 1e-4 and metrics.log_loss(z / t, y) <= metrics.log_loss(z / ref, y) + 1e-9


def test_a_stack_that_learns_the_oof_rows_says_so_with_its_per_fold_spread(fmnist):
    y = fmnist["y_train"][:400]
    fold_of = make_folds(y, 5, 42)
    rng = np.random.default_rng(0)
    weak = []
    for i in range(8):  # under-trained runs, mostly noise: 80 level-2 features for 320 rows per fit
        run = _fake_run(f"weak{i}", y, fold_of, 0.0, 10 + i)
        weak.append(
            Run(
                run.name,
                None,
                run.manifest,
                (0.4 * np.eye(10)[y] + rng.normal(0, 1, (len(y), 10))).astype(np.float32),
                run.test_logits,
                fold_of,
                y,
            )
        )
    res = blend(weak, y, "stack")
    assert res.insample_acc - res.cv_acc > 0.1
    folds = [f["acc"] for f in res.details["nested_per_fold"]]
    assert len(folds) == 5 and abs(np.mean(folds) - res.cv_acc) < 0.02
    warning = res.details["warning"]
    assert (
        f"nested CV accuracy {res.cv_acc:.4f}" in warning
        and f"{res.insample_acc:.4f}" in warning
        and f"{min(folds):.4f}..{max(folds):.4f}" in warning
    )


def test_no_overfit_warning_when_nested_and_in_sample_agree(realistic):
    runs, y = realistic
    res = blend(runs, y, "weighted")
    assert (
        res.insample_acc - res.cv_acc < 0.01
        and "warning" not in res.details
        and len(res.details["nested_per_fold"]) == 5
    )

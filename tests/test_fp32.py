"""Issue 50, fp32 CPUs: the engine's changes keep the numbers. Batch norm folded into the
convolutions for prediction gives the logits of the plain model to float rounding, leaves the
trained model as it was, is deterministic, and a model fx cannot trace still predicts.
Speeds are benchmarks (bench/engine.py), not tests."""

from __future__ import annotations

import itertools
import json

import numpy as np
import torch
from conftest import run_cli
from tqdm.auto import tqdm

import fmnist_kaggle as fk
from fmnist_kaggle.training import fit
from fmnist_kaggle.training.device import cpu_native_bf16
from fmnist_kaggle.training.engine import fold_batchnorm
from fmnist_kaggle.training.inference import _to_model, eval_batches, predict

TOLERANCE = 1e-4  # folded vs plain logits, absolute (fp32 rounding of the folded weights)


def _trained(cfg, small):
    """The `fast` model after 20 real steps on real Fashion-MNIST rows (its BN statistics moved)."""
    s, batches = fit.make_stepper(cfg, 10, small["x_train"], small["y_train"])
    feed = itertools.chain.from_iterable(batches.epoch_batches(e, e) for e in itertools.count())
    fit.train_epoch(s, itertools.islice(feed, 20), "test", tqdm(disable=True))
    return s.eval_model


def _plain(model, images, cfg) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(_to_model(x, cfg)) for x in eval_batches(images, cfg, torch.device("cpu"))]).numpy()


def test_batchnorm_folded_for_prediction_gives_the_plain_models_logits(small):
    cfg = fk.build_config(recipe="fast", amp="off", batch_size=32)
    model = _trained(cfg, small)
    images = torch.from_numpy(np.ascontiguousarray(small["x_test"]))
    bns_before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())

    folded = predict(model, images, cfg, torch.device("cpu"))
    plain = _plain(model, images, cfg)
    assert np.abs(folded - plain).max() < TOLERANCE
    assert (folded.argmax(1) == plain.argmax(1)).all()
    assert np.array_equal(folded, predict(model, images, cfg, torch.device("cpu")))  # deterministic
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == bns_before  # untouched
    copy = fold_batchnorm(model.eval())
    assert copy is not model and not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())


class _Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it symbolically."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x))
        if h.mean() > 0:
            h = h * 2
        return self.head(h.mean((2, 3)))


def test_a_model_fx_cannot_trace_predicts_unfolded(small):
    cfg = fk.build_config(model="lenet5", amp="off")
    model = _Branchy().eval()
    assert fold_batchnorm(model) is model
    images = torch.from_numpy(np.ascontiguousarray(small["x_test"][:16]))
    got = predict(model, images, cfg, torch.device("cpu"))
    assert np.array_equal(got, _plain(model, images, cfg))


def test_the_plan_names_the_precision_it_is_for(tmp_path, kaggle_csv_pair):
    """What a budget buys differs between fp32 and bf16 CPUs: `--show-plan` says which it planned
    for, and `--amp off` plans fp32 (its speeds measured in fp32) even where the CPU has bf16."""
    train, test = kaggle_csv_pair
    data = ["--train", str(train), "--test", str(test)]
    native = cpu_native_bf16()
    for amp, kind, precision in (
        ("off", "cpu", "float32"),
        ("auto", *(("cpu-bf16", "bfloat16") if native else ("cpu", "float32"))),
    ):
        limits = ["--show-plan", "--time-limit", "5m", "--amp", amp, "--json"]
        res = run_cli("auto", *data, *limits, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        plan = json.loads(res.stdout)
        assert plan["hardware"] == kind and {s["precision"] for s in plan["speeds"]} == {precision}
        assert plan["purchases"]

"""Issue 50, fp32 CPUs: the engine's changes keep the numbers. Batch norm folded into the
convolutions for prediction gives the logits of the plain model to float rounding, leaves the
trained model as it was, is deterministic, and a model fx cannot trace still predicts. A stem
that stops training part-way changes no number, and the time model charges its later steps the
FLOPs they do; freed memory is reused without faulting its pages in again.
Speeds are benchmarks (bench/engine.py), not tests."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_train import _fit_fold, _interrupted_then_resumed, _val_logits
from tqdm.auto import tqdm

import fmnist_kaggle as fk
from fmnist_kaggle.training import fit
from fmnist_kaggle.training.device import cpu_native_bf16
from fmnist_kaggle.training.engine import flops_per_image, fold_batchnorm
from fmnist_kaggle.training.inference import _to_model, eval_batches, predict
from fmnist_kaggle.training.progressive import late_work, stop_work, work_before

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


def test_the_stem_stops_training_part_way_and_no_number_changes(tmp_path, small, monkeypatch):
    """The whitening stem's bias trains for 30% of the steps (lr 0 after); from then on autograd
    computes no gradient only it needed (the first stage's input gradient). The weights, the
    batch-norm refresh before each evaluation and the predictions are those of a run that computed
    and discarded that gradient, and a run interrupted past the stop resumes exactly."""
    cfg = fk.build_config(recipe="fast", amp="off", epochs=3, batch_size=32)  # 30 steps; the stem stops at 9
    stopped = _fit_fold(cfg, small)
    assert not stopped.model.stem[0].bias.requires_grad
    resumed = _interrupted_then_resumed(cfg, small, tmp_path, monkeypatch)
    monkeypatch.setattr(fit, "train_live_groups", lambda groups, step: None)  # the control: every gradient computed
    computed = _fit_fold(cfg, small)
    assert computed.model.stem[0].bias.requires_grad
    ours, theirs = stopped.model.state_dict(), computed.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # running statistics (refreshed) included
    assert [h["val_acc"] for h in stopped.history] == [h["val_acc"] for h in computed.history]
    a, b, c = (_val_logits(r, cfg, small) for r in (stopped, computed, resumed))
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_the_time_model_charges_a_late_step_the_flops_it_does(small):
    """What a trained stepper does after the stop (FLOPs counted on it, forward and backward) is
    what the time model charges a late step; the steps before it cost a whole one."""
    cfg = fk.build_config(recipe="fast", amp="off", epochs=3, batch_size=32)
    s, batches = fit.make_stepper(cfg, 10, small["x_train"][:300], small["y_train"][:300])
    sample = torch.zeros(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    before = flops_per_image(s.model, sample, True)
    for epoch in range(3):
        fit.train_epoch(s, batches.epoch_batches(epoch, epoch), "test", tqdm(disable=True))
    after = flops_per_image(s.model, sample, True)
    share, late = late_work(cfg)
    assert share == 0.3 and late == pytest.approx(after / before, rel=1e-6) and late < 0.95
    works = np.diff(work_before(cfg, s.total_steps))
    stop = next(g["until_step"] for g in s.opt.param_groups if "until_step" in g)  # where the stepper stopped it
    assert np.allclose(works[:stop], 1.0) and np.allclose(works[stop:], late)
    assert np.allclose(works, [stop_work(cfg, i, s.total_steps) for i in range(s.total_steps)])  # the loop's charge
    assert late_work(fk.build_config(recipe="cpu")) == (1.0, 1.0)  # nothing stops in a plain stem


_FAULTS = """
import itertools, resource, numpy as np
import fmnist_kaggle as fk
from fmnist_kaggle.training import fit
from tqdm.auto import tqdm
x = np.random.default_rng(0).integers(0, 256, (1024, 28, 28), dtype=np.uint8)
cfg = fk.build_config(recipe="fast", amp="off", batch_size=128)
s, batches = fit.make_stepper(cfg, 10, x, np.arange(1024) % 10)
feed = itertools.chain.from_iterable(batches.epoch_batches(e, e) for e in itertools.count())
fit.train_epoch(s, itertools.islice(feed, 3), "warm", tqdm(disable=True))
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fit.train_epoch(s, itertools.islice(feed, 1), "step", tqdm(disable=True))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2])  # a typical step's (the heap still grows now and then)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")
def test_training_steps_reuse_freed_memory_unless_the_user_set_the_allocator():
    """A step's activations are a few MiB each; glibc returned them to the system and the next
    step faulted the pages in again. Training keeps them (a typical step's page faults, of 8 in a
    fresh process); a MALLOC_* variable the user set wins (glibc's own behaviour then)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def started(extra: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", _FAULTS], env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def faults(process: subprocess.Popen) -> int:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
        return int(out.split()[-1])

    # side by side: a page-fault count does not depend on how fast the process runs
    kept, users = map(faults, [started({}), started({"MALLOC_ARENA_MAX": "8"})])
    pages_of_one_activation = 128 * 32 * 28 * 28 * 4 // 4096
    assert kept < pages_of_one_activation // 10 < users  # measured: 0 against 2,000-15,600 a step

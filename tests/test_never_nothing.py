"""Never nothing, never wasted (issue 48): partial runs count, a speed error is absorbed, a busy
probe does not refuse a budget, probes buy only what the limit can, one session per workspace.

Decisions are tested with an injected clock and injected speeds (no waiting); partial runs with
real (tiny) training; one real session beside a busy process in the slow tier."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REPO, run_cli

import fmnist_kaggle as fk
from fmnist_kaggle.durations import parse_duration
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.search.autopilot import AutoSettings, policy
from fmnist_kaggle.search.portfolio import Frontier, for_hardware, load_portfolio
from fmnist_kaggle.training.estimate import Throughput, units_seconds
from fmnist_kaggle.training.timing import Clock

_CFG = dict(model="lenet5", folds=3, epochs=1, batch_size=16, optimizer="adam", schedule="constant")


def _partial_run(synth, tmp_path, name: str = "part"):
    """A 3-fold run of which folds 0 and 1 finished, assembled over them."""
    from fmnist_kaggle.runs.driver import train_folds
    from fmnist_kaggle.runs.store import assemble
    from fmnist_kaggle.storage.layout import Workspace

    cfg = fk.build_config(**_CFG)
    manifest = train_folds(synth, cfg, run=name, workdir=tmp_path, only_folds=[0, 1], progress=False)
    assert not manifest["complete"] and manifest["missing_folds"] == [2]
    return cfg, assemble(Workspace(tmp_path).run(name), partial=True)


def test_a_run_cut_short_counts_with_honest_cv_over_its_rows_and_makes_a_valid_submission(tmp_path, synth):
    from fmnist_kaggle.data.submission_file import check_file
    from fmnist_kaggle.evaluate.choose import choose

    cfg, manifest = _partial_run(synth, tmp_path)
    assert manifest["partial"]["folds"] == [0, 1] and not manifest["complete"]
    run = fk.load_run("part", workdir=tmp_path)
    fold_of = np.load(tmp_path / "oof/part/folds.npy")
    labels = np.load(tmp_path / "oof/part/labels.npy")
    oof = np.load(tmp_path / "oof/part/oof_logits.npy")
    covered = fold_of != 2
    assert np.isnan(oof[~covered]).all() and np.isfinite(oof[covered]).all()  # no logits invented for fold 2
    by_hand = float((oof[covered].argmax(1) == labels[covered]).mean())
    assert run.cv["acc"] == pytest.approx(by_hand) and len(run.labels) == covered.sum() == run.partial["rows"]
    fold_tests = [np.load(tmp_path / f"oof/part/fold_{f}/test_logits.npy") for f in (0, 1)]
    assert np.allclose(run.test_logits, np.mean(fold_tests, axis=0))  # the mean of the folds that finished

    sub = fk.make_submission(synth, ["part"], name="part", workdir=tmp_path)
    _, problems, _ = check_file(sub["csv"], synth)
    assert not problems and "partial" in json.loads((tmp_path / sub["json"]).read_text())

    fk.fold_train(synth, cfg, run="whole", workdir=tmp_path, progress=False)
    with pytest.raises(FkaggleError, match="run part is partial"):  # never blended with rows it lacks
        fk.blend(["whole", "part"], workdir=tmp_path)
    whole = fk.load_run("whole", workdir=tmp_path)
    choice = choose([whole, run], whole.labels)
    singles = [c for c in choice.candidates if c.method == "single"]
    assert {c.label: c.partial for c in singles} == {"whole": False, "part": True}
    assert all(c.method == "single" for c in choice.candidates)  # one whole run: nothing to blend
    # the partial run is chosen only if it beats the complete run on the rows it covers (same folds, same rows)
    on_its_rows = float((whole.oof_logits[run.rows].argmax(1) == whole.labels[run.rows]).mean())
    assert (choice.chosen.label == "part") == (run.cv["acc"] > on_its_rows), (choice.reason, on_its_rows)


def _session(tmp_path, synth, limit: float, now: list[float]):
    from fmnist_kaggle.runs.executors import make_executor
    from fmnist_kaggle.search.autopilot.session import open_session

    clock = Clock(now[0], limit, now=lambda: now[0])
    with make_executor("local", progress=False) as ex:
        return open_session(synth, AutoSettings(limit, workdir=tmp_path), ex, clock=clock)


def _unit(seconds: float, ips: float = 500.0):
    times = {"train": 0.9 * seconds, "setup": 0.1 * seconds}  # training, and what does not shrink with the steps
    return SimpleNamespace(summary={"unit_seconds": seconds, "images_per_s": ips, "times": times}, fold=0)


def test_a_projected_overrun_of_seconds_discards_no_unit_and_a_run_is_cut_only_before_a_unit_that_cannot_end(
    tmp_path, synth
):
    """20 minutes; the first unit of five took 220 s where 195 s were estimated: the four left end
    13 s after the step deadline. The run is kept: each next unit starts when it fits or may (a
    unit's noise), and one that clearly cannot is not started (its run ends partial): no trained
    second is thrown away for a projection."""
    from fmnist_kaggle.search.autopilot.watch import Watch

    now = [0.0]
    s = _session(tmp_path, synth, 1200.0, now)
    watch = Watch(s)
    s.state.record("auto-small-1", entry="small", width=8, status="training", unit_estimate_s=195.0)
    job = SimpleNamespace(rd=SimpleNamespace(name="auto-small-1"), outstanding=4, cfg=s.entries[0].config(8))
    now[0] = s.step_deadline() - 4 * 220.0 + 13.0  # unit 1 ends; four more at 220 s would end 13 s late
    assert not watch.on_unit(job, _unit(220.0))  # the next unit fits: the run goes on
    assert "auto-small-1" not in watch.stopped
    job.outstanding = 1
    now[0] = s.step_deadline() - 207.0  # the last unit (220 s) would end 13 s after the step deadline:
    assert not watch.on_unit(job, _unit(220.0))  # within a unit's noise, it starts (the deadline cuts it if late)
    now[0] = s.step_deadline() - 100.0  # even cut to half its steps (121 s) it would end late: not started
    assert watch.on_unit(job, _unit(220.0))
    assert "the next, even cut to 50% of its steps, would end 0:21 after" in watch.stopped["auto-small-1"]


def test_units_after_the_first_are_sized_to_the_time_left_and_record_the_steps_they_trained(tmp_path, synth):
    """The first unit measures; a unit that starts when its run's size would end late trains
    fewer steps (at least half), recorded in its summary: the speed error is absorbed, not thrown."""
    from fmnist_kaggle.runs.driver import drive, prepare_run
    from fmnist_kaggle.runs.executors import make_executor
    from fmnist_kaggle.search.autopilot.watch import Watch

    now = [0.0]
    s = _session(tmp_path, synth, 600.0, now)
    watch = Watch(s)
    cfg = s.entries[0].config(8, 40)  # 200 steps a unit: above MIN_STEPS when cut in half
    s.menu.book.put_probe([(cfg, Throughput(100.0, 400.0, "cpu", "float32", 0.5))])
    job = SimpleNamespace(rd=SimpleNamespace(name="auto-small-1"), cfg=cfg)
    nominal = cfg.total_steps(s.shape().train_rows)
    assert watch.unit_steps(job, cfg) == nominal  # no unit of the run yet: the first measures the machine
    watch.unit_times["auto-small-1"] = [60.0]
    now[0] = s.time.training_deadline(0) - 1e6
    assert watch.unit_steps(job, cfg) == nominal  # plenty of time: the run's size
    speed = s.menu.book.get(cfg)
    whole = units_seconds(cfg, speed, s.shape(), 1, nominal)
    now[0] = s.time.training_deadline(0) - 0.8 * whole  # four fifths of the unit's time are left
    sized = watch.unit_steps(job, cfg)
    assert nominal / 2 <= sized < nominal and units_seconds(cfg, speed, s.shape(), 1, sized) <= 0.8 * whole

    real = __import__("fmnist_kaggle").build_config(**_CFG, max_steps=0)
    run = prepare_run(synth, real, "sized", tmp_path)
    run.size = lambda c: 7  # every unit cut to 7 steps (as the watch would when time is short)
    with make_executor("local", progress=False) as ex:
        drive(ex, iter([run]), progress=False)
    summary = json.loads((tmp_path / "oof/sized/fold_1/seed_0.json").read_text())
    assert summary["steps"] == 7 and summary["sized_to_time"] is True


def test_a_busy_probe_does_not_refuse_a_budget_and_a_refusal_names_a_limit_that_is_then_accepted(tmp_path, synth):
    from fmnist_kaggle.search.autopilot.buying import first_despite_probe

    now = [0.0]
    s = _session(tmp_path, synth, 60.0, now)
    seconds = s.available()

    def probed(session, ips: float) -> list:  # injected speeds, as a probe would have kept them
        session.menu.options = {
            (e.name, w): policy.Option(e, w, Throughput(ips, 4 * ips, "cpu", "float32", 0.5))
            for e in session.entries
            for w in e.width_choices()
        }
        return list(session.menu.options.values())

    def cheapest_need(ips: float) -> float:
        return policy.cheapest(probed(s, ips), s.budget())[1]

    ips = 200.0
    while cheapest_need(ips) < 10 * seconds:  # a probe beside busy threads read 10-20x slow: it needs 10-15x
        ips /= 1.5
    options = probed(s, ips)
    assert policy.best_purchase(options, s.budget(), seconds, s.frontier) is None
    bought = first_despite_probe(s, options, seconds)  # bought anyway: its first unit measures the machine
    assert bought is not None and bought.steps == policy.fewest_steps(bought.option, s.budget())

    while cheapest_need(ips) < 21 * seconds:  # no busy moment explains this: refused, naming a limit
        ips /= 1.5
    options = probed(s, ips)
    assert first_despite_probe(s, options, seconds) is None
    said = s.too_short()
    limit = parse_duration(re.findall(r"--time-limit (\d+[sm])", said)[-1])
    again = _session(tmp_path / "again", synth, limit, [0.0])
    best = policy.best_purchase(probed(again, ips), again.budget(), again.available(), again.frontier)
    assert best is not None, said  # the limit the refusal named is accepted


def test_a_short_limit_probes_only_the_widths_it_could_buy(tmp_path, synth):
    """All 60,000 rows, 2 minutes, fp32 speeds of a 2-core CPU: the narrowest width of each entry
    is timed, wider ones only if their shortest run could fit at the narrow speed over the width
    ratio; the widest never are (today all eight setups were probed: 27 s of the 120)."""
    now = [0.0]
    s = _session(tmp_path, synth, 120.0, now)
    s = replace(s, entries=[e for e in for_hardware(load_portfolio(), "cpu") if e.fits_rows(60_000)])
    s.time.rows = 60_000
    fp32 = {8: 2147.0, 12: 1300.0, 16: 956.0, 24: 462.0, 32: 257.0}  # fast's probe on a 2-core Zen 3
    timed: list[int] = []

    def measure(cfgs):
        timed.extend(c.model_kwargs.get("width") for c in cfgs)
        return [
            Throughput(fp32[c.model_kwargs["width"]], 4 * fp32[c.model_kwargs["width"]], "cpu", "float32") for c in cfgs
        ]

    s.menu.measure = measure
    s.menu.candidates(s.buyable(), s.affordable(s.available()))
    every = [w for e in s.entries for w in e.width_choices()]
    assert min(every) in timed and max(every) not in timed and len(timed) < len(every), (timed, every)
    first = list(timed)
    s.menu.options.clear()
    timed.clear()
    s.clock.limit = 3600.0  # an hour buys every width: the rest are timed (the kept ones are not timed again)
    s.menu.candidates(s.buyable(), s.affordable(s.available()))
    assert sorted(first + timed) == sorted(every)
    probes = {rec["probe"] for rec in s.menu.book.kept.values()}
    assert len(probes) == 1  # the looks of one session are siblings: a unit's correction reaches every width


_HOLD = """
import sys, time
from pathlib import Path
from fmnist_kaggle.storage.lock import workspace_lock
with workspace_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_one_session_per_workspace_and_a_killed_holder_is_taken_over(tmp_path, synth):
    from fmnist_kaggle.storage.layout import Workspace
    from fmnist_kaggle.storage.lock import workspace_lock

    path = Workspace(tmp_path).session_lock
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FkaggleError, match=rf"another session is running in this workspace \(PID {holder.pid}, "):
            with workspace_lock(path):
                pass
        res = run_cli(
            "auto", "--train", str(synth.train), "--test", str(synth.test), "--time-limit", "1m", cwd=tmp_path
        )  # the CLI: one line naming the holder, exit 2
        assert res.returncode == 2 and f"PID {holder.pid}" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    finally:
        holder.kill()  # SIGKILL: no clean-up ran, the stale file names a dead PID
        holder.wait()
    assert path.exists() and str(holder.pid) in path.read_text()
    with workspace_lock(path):  # taken over
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [({}, "PASSIVE None"), ({"OMP_WAIT_POLICY": "active"}, "active None"), ({"GOMP_SPINCOUNT": "77"}, "None 77")],
)
def test_openmp_threads_sleep_at_barriers_unless_the_user_chose(given, expected):
    """A shared machine: GNU OpenMP's 300,000 spins at a barrier make training collapse 2-5x beside
    busy processes (bench/threads.py); importing fmnist_kaggle asks for PASSIVE waits before torch
    loads (its runtime reads the variable then), and leaves a user's own choice alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = (
        "import os, sys, fmnist_kaggle; loaded = 'torch' in sys.modules; import torch; "
        "torch.ones(8, 8) @ torch.ones(8, 8); "
        "print(loaded, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**env, **given}, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", *expected.split()]


def test_a_batchnorm_refresh_is_estimated_at_the_speed_the_probe_measured_for_it(tmp_path):
    """Short runs refresh batch norm before each validation: a forward pass in training mode that,
    on an fp32 CPU, runs near the prediction speed, not the training speed the estimate assumed
    (fold-train on 3,000 rows: estimated 136 s, trained in 103). The probe times a refresh; the
    estimate charges it at that speed; the kept speeds keep it."""
    from conftest import synthetic_images

    from fmnist_kaggle.search.autopilot.speeds import SpeedBook
    from fmnist_kaggle.training.estimate import REFRESH_IPS_MAX, measure_throughput, unit_seconds

    x, y = synthetic_images(40)
    cfg = fk.build_config(model="fmnist_resnet", model_kwargs={"width": 8}, batch_size=32, epochs=4, amp="off")
    speed = measure_throughput(cfg, x, y, 10, seconds=0.2, max_steps=3)
    assert speed.refresh_ips > 0 and speed.refresh_speed() == speed.refresh_ips
    unmeasured = Throughput(speed.train_ips, speed.predict_ips, "cpu", "float32", speed.fixed_s)
    assert unmeasured.refresh_speed() == speed.train_ips  # a speed kept before refreshes were timed
    train_rows, val_rows, epochs = 320, 80, 4  # 40 steps: a refresh before each of the 4 validations
    charged = unit_seconds(cfg, unmeasured, train_rows, val_rows, 0) - unit_seconds(cfg, speed, train_rows, val_rows, 0)
    assert charged == pytest.approx(epochs * train_rows * (1 / speed.train_ips - 1 / speed.refresh_ips))

    book = SpeedBook(tmp_path / "speeds.json", "this machine", True)
    book.put_probe([(cfg, speed)])
    assert SpeedBook(tmp_path / "speeds.json", "this machine", True).get(cfg).refresh_ips == speed.refresh_ips
    book.observe(cfg, speed.train_ips / 2)  # a unit trained at half the probed speed: every speed halves
    assert book.get(cfg).refresh_ips == pytest.approx(speed.refresh_ips / 2, rel=0.01)

    plain = fk.build_config(model="lenet5", batch_size=32, amp="off")  # no batch norm: nothing to refresh
    nothing = measure_throughput(plain, x, y, 10, seconds=0.2, max_steps=3)
    assert nothing.refresh_ips == REFRESH_IPS_MAX
    book.put_probe([(plain, nothing)])  # a plausible speed, kept (not discarded when read back)
    assert SpeedBook(tmp_path / "speeds.json", "this machine", True).get(plain).refresh_ips == REFRESH_IPS_MAX


@pytest.mark.slow
@pytest.mark.timing
def test_a_machine_three_times_slower_than_its_kept_speeds_still_ends_with_a_submission(tmp_path, kaggle_csv_pair):
    """Real training beside a busy process, with speeds kept from a 'quiet' session that claim
    three times what this machine does: the session ends with a valid submission, within the limit."""
    train, test = kaggle_csv_pair
    data = ["--train", str(train), "--test", str(test)]
    warm = run_cli("auto", *data, "--time-limit", "20s", "--name", "quiet", "--no-progress", cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr  # its speeds are kept: the next session trusts them
    speeds = tmp_path / "oof/autopilot/speeds.json"
    book = json.loads(speeds.read_text())
    for machine in book["machines"].values():
        for rec in machine.values():
            rec.update(train_ips=3 * rec["train_ips"], predict_ips=3 * rec["predict_ips"], source="unit")
    speeds.write_text(json.dumps(book))
    busy = subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", "while True: pass"])  # a browser beside it
    try:
        t0 = time.monotonic()
        res = run_cli("auto", *data, "--time-limit", "40s", "--name", "busy", "--no-progress", "--json", cwd=tmp_path)
        wall = time.monotonic() - t0
    finally:
        busy.kill()
        busy.wait()
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert wall <= 40 * 1.05 + 4, wall
    assert run_cli("validate", out["submission"], *data, cwd=tmp_path).returncode == 0


def test_what_a_finished_run_trained_is_grown_on_by_the_next_purchase_and_a_resumed_session_keeps_it(tmp_path, synth):
    """After a run, the time left may buy its continuation (fold k from its fold-k model); the
    purchase is recorded so an interrupted session finishes it as bought, and it trains."""
    from fmnist_kaggle.runs.driver import drive, train_folds
    from fmnist_kaggle.runs.executors import make_executor
    from fmnist_kaggle.search.autopilot.buying import config_of, jobs
    from fmnist_kaggle.search.autopilot.session import open_session

    settings = AutoSettings(600.0, workdir=tmp_path, folds=2)  # 2 folds: 100 training rows a fold
    with make_executor("local", progress=False) as ex:
        s = open_session(synth, settings, ex, clock=Clock(0.0, 600.0, lambda: 0.0))
    curve = [(8.0, 0.80), (16.0, 0.85), (32.0, 0.90)]  # evidence that `small` climbs up to 32 epochs here
    s = replace(s, frontier=Frontier({("small", 8): {100: curve}, ("small", 16): {100: curve}}))
    entry = s.entries[0]  # `small`: widths 8 and 16, up to 30 epochs, at least 50 steps (12.5 epochs here)
    for w, ips in ((8, 20.0), (16, 5.0)):  # speeds kept, nothing probed: ~22 epochs of width 8 fit, too few of 16
        s.menu.book.put_probe([(s.menu.config(entry, w), Throughput(ips, 100.0, "cpu", "float32", 1.0))])
    first = entry.config(8, 16, seeds=[entry.first_seed], **s.settings.train())
    train_folds(synth, first, run="auto-small-1", workdir=tmp_path, progress=False)
    spe = first.steps_per_epoch(s.shape().train_rows)
    s.state.record(
        "auto-small-1", entry="small", status="complete", width=8, model=first.model, steps=16 * spe,
        steps_per_epoch=spe, epochs=16, fractional_epochs=16.0, seed=entry.first_seed, train=entry.train,
    )  # fmt: skip
    job = next(jobs(s, start=lambda job: job))
    rec = s.state.runs[job.rd.name]
    assert rec.continues == "auto-small-1" and rec.prior_epochs == 16.0 and rec.width == 8
    assert job.cfg.init_from == "auto-small-1" and config_of(s, rec).init_from == "auto-small-1"
    with make_executor("local", progress=False) as ex:
        drive(ex, iter([job]), progress=False)
    m = json.loads((tmp_path / "oof" / job.rd.name / "manifest.json").read_text())
    assert m["init"]["init_from"] == "auto-small-1" and m["config"]["init_from"] == "auto-small-1"
    s.state.record(job.rd.name, status="complete")
    assert [f.run for f in s.finished()] == [job.rd.name]  # the grown run is what may grow next, not its start

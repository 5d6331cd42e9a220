"""The autopilot's decisions with injected speeds and clocks: no training, milliseconds a test.

Speeds are made up to match machines the product meets (a 2-core fp32 CPU without bf16 trains
the `fast` recipe's width-16 net at ~600 img/s); the portfolio and the size table are the
packaged ones, so these tests check the decisions a user gets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.policy import Budget, Option
from fmnist_kaggle.search.autopilot.state import AutopilotState
from fmnist_kaggle.search.portfolio import Entry, Frontier, for_hardware, load_frontier, load_portfolio
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.estimate import Throughput, unit_shape
from fmnist_kaggle.training.timing import Clock

# training img/s of the fast recipe by width on a 2-core fp32 CPU (AVX2, no bf16); prediction ~4x
ZEN3_FP32 = {8: 1900.0, 12: 1000.0, 16: 600.0, 24: 330.0, 32: 200.0}


def _options(entries: list[Entry], speeds: dict[int, float]) -> list[Option]:
    return [
        Option(e, w, Throughput(speeds.get(w, 400.0), 4 * speeds.get(w, 400.0), "cpu", "float32"))
        for e in entries
        for w in e.width_choices()
    ]


@pytest.fixture(scope="module")
def full_data():
    entries = for_hardware(load_portfolio(), "cpu")
    fast = [e for e in entries if e.fits_rows(60_000)]
    return fast, Budget(unit_shape(60_000, 5, 10_000), 5), load_frontier()


def test_a_budget_that_fits_a_cnn_buys_one_sized_to_it_and_wider_as_time_grows(full_data):
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    picks = {}
    for minutes in (5, 20, 60):
        p = policy.best_purchase(options, budget, minutes * 60 * 0.8, table)
        assert (
            p is not None
            and p.option.entry.name == "fast"
            and p.option.entry.config(p.option.width).model == "fmnist_resnet"
        )
        assert p.seconds <= minutes * 60 * 0.8 and p.fractional_epochs >= p.option.entry.min_epochs
        picks[minutes] = p
    # the run is sized to the budget: more time buys more steps or a wider net, never less
    assert picks[5].option.width <= picks[20].option.width <= picks[60].option.width
    sizes = [(p.option.width, p.steps) for p in picks.values()]
    assert len(set(sizes)) == 3
    # at 5 minutes the whole budget goes to one run: nothing cheaper is left out
    assert picks[5].seconds >= 0.9 * 5 * 60 * 0.8 or picks[5].fractional_epochs == picks[5].option.entry.epochs


def test_the_smallest_budget_that_fits_any_run_is_never_refused(full_data):
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    opt, need = policy.cheapest(options, budget)
    assert opt.width == min(ZEN3_FP32)  # the narrowest net at its fewest epochs is the cheapest run
    assert policy.best_purchase(options, budget, need, table) is not None
    assert policy.best_purchase(options, budget, need * 0.98, table) is None


def test_the_plan_keeps_buying_until_what_is_left_buys_nothing(full_data):
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    _, cheapest = policy.cheapest(options, budget)
    for seconds in (400.0, 1100.0, 3300.0):
        bought = policy.purchases(options, budget, seconds, table, max_runs=12)
        spent = sum(p.seconds for p in bought)
        assert bought and spent <= seconds
        assert seconds - spent < cheapest or len(bought) == 12  # what is left cannot buy even the cheapest run
        assert spent >= 0.9 * seconds or seconds - spent < cheapest


def test_a_width_the_table_has_not_measured_falls_back_to_the_widest_that_reaches_half_its_epochs():
    entry = Entry("x", ("cpu",), (0, 1e9), {"model": "fmnist_resnet", "batch_size": 100}, (8, 16, 32), 10.0, 1.0, "")
    budget = Budget(unit_shape(10_000, 5, 1_000), 5)
    speeds = {8: 4000.0, 16: 2000.0, 32: 1000.0}
    options = _options([entry], speeds)
    empty = Frontier({})
    seconds = policy.purchase_seconds(options[1], budget, 5 * 80) + 1  # width 16 reaches exactly half of its 10 epochs
    p = policy.best_purchase(options, budget, seconds, empty)
    assert p.option.width == 16 and p.expected_acc is None
    q = policy.best_purchase(options, budget, policy.purchase_seconds(options[2], budget, 10 * 80) + 1, empty)
    assert q.option.width == 32 and q.fractional_epochs == 10  # capped at the entry's epochs


def test_runs_are_sized_in_steps_not_whole_epochs(full_data):
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    p = policy.best_purchase(options, budget, 250.0, table)
    assert p.steps % p.steps_per_epoch != 0 or p.steps == p.epochs * p.steps_per_epoch
    cfg = p.option.entry.config(p.option.width, p.epochs, max_steps=p.steps)
    assert cfg.max_steps == p.steps and cfg.epochs == p.epochs


def test_more_slots_size_runs_for_waves_of_units(full_data):
    entries, _, table = full_data
    options = _options(entries, ZEN3_FP32)
    one, two = (Budget(unit_shape(60_000, 5, 10_000), 5, slots) for slots in (1, 2))
    # 5 units on 2 slots are 3 waves: the same seconds buy 5/3 the steps of one slot
    a, b = (policy.longest_fit(options[0], bud, 600.0) for bud in (one, two))
    assert b.steps > a.steps


def test_the_size_table_interpolates_in_log_epochs_and_is_flat_past_its_longest_run():
    table = Frontier({("fast", 16): {48_000: [(1.0, 0.90), (4.0, 0.93), (16.0, 0.94)]}})
    assert table.accuracy("fast", 16, 2.0) == pytest.approx(0.915)
    assert table.accuracy("fast", 16, 32.0) == 0.94
    assert table.accuracy("fast", 16, 0.5) == pytest.approx(0.885)
    assert table.accuracy("fast", 8, 2.0) is None


def test_session_and_run_seconds_add_up_across_an_interrupted_session(tmp_path):
    files = Workspace(tmp_path).autopilot("auto")
    state = AutopilotState.open(files, "auto", {"data_fingerprint": "d"})
    state.commit()
    wall = [0.0]
    state.start_session(lambda: wall[0], time_limit_s=300, hardware="cpu")
    state.record("auto-fast-1", entry="fast", status="training")
    wall[0] = 110.0
    state.add_seconds("auto-fast-1", 100.0)  # killed after 100 s of training: the save kept its wall time
    resumed = AutopilotState.open(files, "auto", {"data_fingerprint": "d"})
    assert resumed.sessions[0].wall_s == 110.0
    resumed.start_session(lambda: 60.0, time_limit_s=300, hardware="cpu")
    resumed.add_seconds("auto-fast-1", 50.0)
    again = AutopilotState.open(files, "auto", {"data_fingerprint": "d"})
    assert again.runs["auto-fast-1"].seconds == 150.0
    assert again.totals() == {"wall_s": 170.0, "train_s": 150.0}
    assert [s.train_s for s in again.sessions] == [100.0, 50.0]
    with pytest.raises(Exception, match="made on other data"):
        AutopilotState.open(files, "auto", {"data_fingerprint": "other"})


def test_the_clock_is_injected():
    now = [100.0]
    clock = Clock(100.0, 60.0, now=lambda: now[0])
    now[0] += 45.0
    assert clock.elapsed() == 45.0 and clock.left() == 15.0 and "0:45 elapsed, 0:15 left" in str(clock)


def test_a_unit_is_stopped_part_way_only_when_it_could_not_end_before_the_step_deadline(tmp_path, synth):
    """`late_by`, what fit asks within a unit (through its deadline's pace): this unit's end at its
    pace against the training deadline plus GRACE (the deadline steps obey). The units after it
    are not projected here: a run is never stopped part-way for them (work is not thrown away for
    seconds). Never late while nothing is scored and nothing smaller fits. One injected clock."""
    from types import SimpleNamespace

    from fmnist_kaggle.runs.executors import make_executor
    from fmnist_kaggle.search.autopilot import AutoSettings
    from fmnist_kaggle.search.autopilot.session import open_session
    from fmnist_kaggle.search.autopilot.watch import Watch
    from fmnist_kaggle.training.timing import GRACE

    now = [1000.0]
    clock = Clock(1000.0, 600.0, now=lambda: now[0])
    with make_executor("local", progress=False) as ex:
        session = open_session(synth, AutoSettings(600.0, workdir=tmp_path), ex, clock=clock)
    watch = Watch(session)
    session.state.record("auto-small-1", entry="small", width=8, status="training")
    cfg = session.entries[0].config(8)  # its speed was never measured: no prediction time projected
    job = SimpleNamespace(rd=SimpleNamespace(name="auto-small-1"), outstanding=3, cfg=cfg)  # this unit and two after it
    now[0] += 100.0
    assert session.step_deadline() == session.time.training_deadline(0) + GRACE * 600.0
    assert session.deadline().left() == pytest.approx(session.step_deadline() - 1100.0)  # the same clock
    assert watch.late_by(job, 1e6, 1e6) == -float("inf")  # the only hope of a submission: never stopped early
    session.state.record("auto-small-0", entry="small", width=8, status="complete")
    late = watch.late_by(job, 400.0, 450.0)  # two more units of 450 s would overrun: not this unit's business
    assert late == pytest.approx(1500.0 - session.step_deadline()) and late < 0
    cut = watch.late_by(job, 600.0, 700.0)  # this unit itself would be cut by the deadline: stop it now
    assert cut == pytest.approx(1700.0 - session.step_deadline()) and cut > 0


def test_a_run_sized_under_a_noisy_probe_is_replaced_when_the_time_left_buys_much_better(tmp_path, synth):
    """The first unit shows the probe was slow (a busy start): when a run sized to all the time left
    is expected to beat finishing this one and buying with what remains, the watch stops it."""
    from types import SimpleNamespace

    from fmnist_kaggle.runs.executors import make_executor
    from fmnist_kaggle.search.autopilot import AutoSettings
    from fmnist_kaggle.search.autopilot.session import open_session
    from fmnist_kaggle.search.autopilot.watch import Watch

    (tmp_path / "one.toml").write_text(
        '[[entry]]\nname = "x"\nwidths = [8]\nepochs = 1000\nmin_epochs = 1\n'
        'train = { model = "fmnist_resnet", batch_size = 16, optimizer = "sgd", lr = 0.05 }\n'
    )
    now = [1000.0]
    clock = Clock(1000.0, 600.0, now=lambda: now[0])
    settings = AutoSettings(600.0, workdir=tmp_path, portfolio=tmp_path / "one.toml")
    with make_executor("local", progress=False) as ex:
        session = open_session(synth, settings, ex, clock=clock)
    session = replace(session, frontier=Frontier({("x", 8): {48_000: [(1.0, 0.50), (1000.0, 0.99)]}}))  # climbs
    entry = session.entries[0]
    cfg = session.menu.config(entry, 8)
    session.menu.book.put_probe([(cfg, Throughput(2000.0, 8000.0, "cpu", "float32", 0.5))])
    watch = Watch(session)
    session.state.record("auto-x-1", entry="x", width=8, status="training", expected_acc=0.60, unit_estimate_s=30.0)
    watch.unit_times["auto-x-1"] = [10.0]
    job = SimpleNamespace(rd=SimpleNamespace(name="auto-x-1"), outstanding=4, cfg=cfg)
    now[0] += 60.0
    assert not watch.rebuy(job, remaining_s=10.0)  # little left of it: finish it, then buy with the rest
    assert watch.rebuy(job, remaining_s=400.0)  # most of the time left: a run sized to it wins
    assert "expected to score" in watch.stopped["auto-x-1"]


def test_a_finished_run_is_grown_where_the_evidence_says_its_continuation_beats_a_fresh_run(full_data):
    """A continuation is judged at its run's epochs plus its own, less what continuing measured to
    lose (fold 0 of the real data); past the curve's peak a fresh run wins."""
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    short = policy.Finished("auto-fast-1", "fast", 8, 1.3)
    fresh = policy.best_purchase(options, budget, 200.0, table)
    grown = policy.best_purchase(options, budget, 200.0, table, [short])
    assert grown.continues == "auto-fast-1" and grown.prior_epochs == 1.3 and grown.option.width == 8
    total = table.accuracy("fast", 8, 1.3 + grown.fractional_epochs)
    assert grown.expected_acc == pytest.approx(total - policy.CONTINUE_LOSS)
    assert grown.expected_acc > fresh.expected_acc and grown.seconds <= 200.0
    long = policy.Finished("auto-fast-1", "fast", 16, 16.0)  # flat past 16 epochs: growing it buys nothing
    assert policy.best_purchase(options, budget, 3300.0, table, [long]).continues is None


def test_the_first_purchase_is_the_safe_part_of_the_run_the_whole_time_buys_and_its_continuation_the_rest(full_data):
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    seconds = 3300.0
    plan = policy.best_purchase(options, budget, seconds, table)
    first = policy.first_part(options, budget, seconds, seconds / 3, table)
    assert (first.option.entry.name, first.option.width) == (plan.option.entry.name, plan.option.width)
    assert first.seconds <= seconds / 3 and first.steps < plan.steps
    done = policy.Finished("auto-first", first.option.entry.name, first.option.width, first.fractional_epochs)
    rest = policy.best_purchase(options, budget, seconds - first.seconds, table, [done])
    assert rest.continues == "auto-first"
    # the two parts reach (nearly) the run all the time buys: only a unit's fixed costs are paid twice
    assert rest.expected_acc >= plan.expected_acc - policy.CONTINUE_LOSS - 0.002
    # the best run a third of the time buys is expected to score less than where the first part leads
    assert policy.best_purchase(options, budget, seconds / 3, table).expected_acc < rest.expected_acc
    # where what is left would buy a fresh run rather than grow the part (plain `fast` w16 peaks at 4
    # epochs: 1.8 + 4 scores below a fresh 4), the first purchase is the best safe run, a run of its own
    # the fp32 Xeon of docs/results.md (its probe before the stopped stem made late steps cheaper)
    xeon = _options(entries, {8: 3150.0, 16: 1350.0, 24: 690.0, 32: 440.0})
    assert policy.first_part(xeon, budget, 1100.0, 1100.0 / 3, table) is None


def test_the_plan_decides_as_a_session_does_a_safe_first_part_then_its_continuation(full_data):
    """--show-plan's purchases: the first sized to its safe share (the part of the run the whole
    time buys), the later ones free to continue a run bought before them, each run continued once."""
    entries, budget, table = full_data
    options = _options(entries, ZEN3_FP32)
    seconds = 3300.0
    plan = policy.purchases(options, budget, seconds, table, 12, share=seconds / 3)
    first = policy.safe_first(options, budget, seconds, seconds / 3, table)
    assert plan[0] == first and first.seconds <= seconds / 3
    grown = plan[1]
    assert grown.continues == "1" and grown.option == first.option
    assert grown.total_epochs == pytest.approx(first.fractional_epochs + grown.fractional_epochs)
    assert [p.continues for p in plan].count("1") == 1 and sum(p.seconds for p in plan) <= seconds
    # where the safe share buys nothing, the session buys the cheapest run at its fewest steps: so does the plan
    opt, need = policy.cheapest(options, budget)
    assert policy.purchases(options, budget, need * 1.5, table, 12, share=need / 2)[0] == policy.shortest_purchase(
        opt, budget
    )
    # a workspace's finished run is grown by the plan as the session would grow it
    short = policy.Finished("auto-fast-1", "fast", 8, 1.3)
    assert policy.purchases(options, budget, 200.0, table, 12, finished=[short])[0].continues == "auto-fast-1"

"""`fkaggle`: a thin argument parser over the library. No work is done here.

Every `FkaggleError` (and any OS error on a named file) becomes one line on stderr and
exit status 2. Humans read stderr (log lines, progress bars); stdout carries results
only, and with --json nothing but JSON. Heavy imports (torch, kaggle) happen inside
the commands that need them (light internal modules are imported at the top).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from fmnist_kaggle import __version__
from fmnist_kaggle.atomic import dumps
from fmnist_kaggle.config import FIELDS, RECIPES, build_config, default_of, parse_assignments
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.executors import EXECUTORS, make_executor
from fmnist_kaggle.workspace import Workspace


def _print_json(obj: Any) -> None:
    print(dumps(obj))


def _progress(args: argparse.Namespace) -> bool:
    return not (getattr(args, "no_progress", False) or args.quiet)


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (explicit paths override the competition config)")
    g.add_argument("--competition", help="competition TOML (default competition/competition.toml or $FKAGGLE_COMPETITION)")
    g.add_argument("--train", help="training file (CSV, NPY, NPZ or IDX)")
    g.add_argument("--train-labels", help="separate labels file for --train (IDX labels, y .npy)")
    g.add_argument("--test", help="test file")
    g.add_argument("--test-labels", help="known test labels, for offline scoring")
    g.add_argument("--sample-submission", help="the competition's sample submission CSV")
    g.add_argument("--format", choices=["auto", "csv", "npy", "npz", "idx"], help="force a format (default auto)")


def _competition(args: argparse.Namespace):
    from fmnist_kaggle.competition import resolve_competition

    return resolve_competition(
        competition=args.competition,
        train=args.train,
        test=args.test,
        sample_submission=args.sample_submission,
        format=args.format,
        train_labels=args.train_labels,
        test_labels=args.test_labels,
    )


# ----------------------------------------------------------------------------- data


def cmd_data_check(args: argparse.Namespace) -> int:
    from fmnist_kaggle.competition import summary
    from fmnist_kaggle.data import check_min_class_count
    from fmnist_kaggle.plots import sample_grid

    comp = _competition(args)
    info = summary(comp)
    check_min_class_count(comp.train_set, args.folds)
    png = Path(args.png) if args.png else Workspace(".").data_check_png
    sample_grid(comp.train_set.images, comp.train_set.labels, comp.names, png)
    info["sample_grid_png"] = str(png)
    if args.json:
        _print_json(info)
        return 0
    _print_summary(info)
    print(f"sample grid: {png}")
    return 0


def cmd_data_drift(args: argparse.Namespace) -> int:
    from fmnist_kaggle.drift import drift_report

    comp = _competition(args)
    res = drift_report(comp.train_set, comp.test_set, *Workspace(args.workdir).drift_pngs, rows=args.rows, folds=args.folds)
    if args.json:
        _print_json(res)
        return 0
    print(f"adversarial validation: {res['train_rows']} train vs {res['test_rows']} test rows, {res['folds']}-fold ROC AUC {res['auc']:.4f}")
    print(f"verdict: {res['verdict']}")
    print(f"pixel importances: {res['importance_png']}; most test-like training rows (0-based): {res['test_like_rows'][:8]} -> {res['test_like_png']}")
    return 0


def _print_summary(info: dict[str, Any]) -> None:
    tr = info["train"]
    print(f"train  {tr['path']}  [{tr['format']}]  {tr['rows']} rows, {tr['classes']} classes, label values {tr['label_values']}")
    print(f"       pixels {tr['pixel_dtype']} {tr['pixel_range'][0]}..{tr['pixel_range'][1]} (stored as {tr['stored_scale']}), fingerprint {tr['fingerprint']}")
    for name, count in tr["class_counts"].items():
        print(f"       {name:<14} {count}")
    if "test" in info:
        te = info["test"]
        ids = "synthesized 1..N" if te["ids_synthesized"] else f"column {te['id_column']!r}"
        print(f"test   {te['path']}  [{te['format']}]  {te['rows']} rows, ids {ids}, labels {'known' if te['has_labels'] else 'unknown'}")
    if "sample_submission" in info:
        ss = info["sample_submission"]
        print(f"sample {ss['path']}  columns {ss['columns']}, {ss['rows']} rows")


def cmd_init(args: argparse.Namespace) -> int:
    from fmnist_kaggle.competition import init_competition

    paths = {k: getattr(args, k) for k in ("train", "train_labels", "test", "test_labels", "sample_submission")}
    _, info = init_competition(paths, args.out, args.name, args.slug, args.format or "auto", args.force)
    return _report_config(args, info, args.out)


def cmd_download(args: argparse.Namespace) -> int:
    from fmnist_kaggle.download import download_competition

    info, folder = download_competition(args.slug, args.dir, args.out, args.force)
    return _report_config(args, {**info, "data_dir": str(folder)}, args.out)


def _report_config(args: argparse.Namespace, info: dict[str, Any], target: str) -> int:
    if args.json:
        _print_json({**info, "config": str(target)})
        return 0
    _print_summary(info)
    print(f"wrote {target}")
    return 0


# ----------------------------------------------------------------------------- training


def cmd_models(args: argparse.Namespace) -> int:
    from fmnist_kaggle.models import count_params, create_model, list_models, report_classes

    if args.classes is not None and args.classes < 2:
        raise FkaggleError(f"--classes must be at least 2, got {args.classes}")
    rows = []
    for name in list_models():
        k = args.classes or report_classes(name)  # the reports' own output widths by default
        rows.append({"model": name, "params": count_params(create_model(name, num_classes=k)), "classes": k})
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['model']:<16} {r['params']:>10,}  ({r['classes']} classes)")
    print("timm:<name>      any timm model (e.g. timm:resnet18), with input_size / pretrained / freeze_backbone")
    return 0


def _parse_ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise FkaggleError(f"expected comma-separated integers, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _train_config(args: argparse.Namespace, model: str | None = None):
    """TrainConfig from --recipe < --config < flags; every flag is a TrainConfig field."""
    kwargs = parse_assignments(args.model_arg, "--model-arg")
    for key in ("pretrained", "freeze_backbone", "input_size"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    given = {name: getattr(args, name) for name, f in FIELDS.items() if f.metadata["cli"] and name not in ("recipe", "model")}
    return build_config(recipe=args.recipe, config_file=args.config, model=model or (args.model if isinstance(args.model, str) else None), model_kwargs=kwargs, **given)


def cmd_fold_train(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import fold_train

    cfg = _train_config(args)
    comp = _competition(args)
    manifest = fold_train(comp, cfg, run=args.run, workdir=args.workdir, only_folds=_parse_ints(args.fold), overwrite=args.overwrite, progress=_progress(args), executor=_executor(args))
    if args.json:
        _print_json({k: manifest.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")})
    return 0


def _executor(args: argparse.Namespace) -> Any:
    return make_executor(args.executor, args.address, args.cpus_per_task, progress=_progress(args))


def cmd_predict(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import predict_run

    m = predict_run(args.run, args.test, args.name, args.workdir, args.format or "auto", args.device)
    if args.json:
        _print_json({k: m.get(k) for k in ("run", "predicted_from", "test_metrics")})
        return 0
    known = f"; test accuracy {m['test_metrics']['acc']:.4f}" if m.get("test_metrics") else ""
    print(f"{m['predicted_from']['run']} -> {m['run']}: {m['data']['test_rows']} rows of {args.test} predicted{known}")
    print(f"submission: fkaggle blend {m['run']} --test {args.test} [--sample-submission FILE]")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import list_runs

    rows = list_runs(args.workdir)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no runs in {Workspace(args.workdir).oof}")
    num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rows:
        if "problem" in r:
            print(f"{r['run']:<32} unreadable: {r['problem']}")
        else:
            origin = f"  (predicted by {r['predicted_from']}'s models)" if r["predicted_from"] else ""
            print(f"{r['run']:<32} {r['model']:<18} folds {r['folds_done']}/{r['folds']}  CV acc {num(r['cv_acc'])}  log-loss {num(r['cv_logloss'])}  test {num(r['test_acc'])}  {r['created'][:19]}{origin}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import status

    rd = Workspace(args.workdir).find_run(args.run)
    m = status(rd)
    assembled = "oof_logits.npy" in m.get("files", {})
    if args.json:
        _print_json({**{k: m.get(k) for k in ("run", "complete", "fold_status", "fold_problems", "missing_folds", "cv", "test_metrics")}, "assembled": assembled})
        return 0 if m["complete"] else 1
    print(f"run {m['run']}: {m['model']}, {m['data']['folds']} folds, {'complete' if m['complete'] else 'incomplete'}")
    by_fold = {fm["fold"]: fm for fm in m["fold_metrics"]}
    for f, s in m["fold_status"].items():
        extra = f"  acc {by_fold[int(f)]['acc']:.4f}  logloss {by_fold[int(f)]['logloss']:.4f}" if int(f) in by_fold else ""
        problem = f"  ({m['fold_problems'][f]})" if f in m["fold_problems"] else ""
        print(f"  fold {f}: {s}{extra}{problem}")
    if m["missing_folds"]:
        print(f"missing folds: {','.join(map(str, m['missing_folds']))}  (fkaggle fold-train ... --fold {','.join(map(str, m['missing_folds']))}; corrupt folds retrain)")
    elif not assembled:
        print(f"all folds done, not assembled yet: fkaggle assemble {m['run']}")
    if m.get("cv") and assembled:
        print(f"CV accuracy {m['cv']['acc']:.4f}  log-loss {m['cv']['logloss']:.4f}")
    return 0 if m["complete"] else 1


def cmd_assemble(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import assemble

    m = assemble(Workspace(args.workdir).find_run(args.run))
    if args.json:
        _print_json({k: m.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")})
    elif m["complete"]:
        print(f"run {m['run']}: CV accuracy {m['cv']['acc']:.4f}  log-loss {m['cv']['logloss']:.4f}")
    else:
        print(f"run {m['run']}: folds missing {m['missing_folds']}")
    return 0 if m["complete"] else 1


# ----------------------------------------------------------------------------- scoring, blending, submitting


def cmd_cv(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import load_run
    from fmnist_kaggle.scoring import cv, format_cv

    runs = [load_run(r, args.workdir) for r in args.runs]
    names = runs[0].manifest["data"]["class_names"]
    result = cv(runs, names, Workspace(args.workdir), competition=lambda: _competition(args))
    if args.json:
        _print_json(result)
    else:
        print(format_cv(result))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from fmnist_kaggle.explain import explain

    res = explain(args.run, _competition(args), args.fold, args.images, args.layers, args.channels, args.workdir)
    if args.json:
        _print_json(res)
        return 0
    layers = ", ".join(f"{x['name']} ({x['channels']} x {x['size'][0]}x{x['size'][1]})" for x in res["layers"])
    print(f"{res['run']} fold {res['fold']}: {len(res['rows'])} held-out images through {layers}")
    print(f"activation maps: {res['png']}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from fmnist_kaggle.scoring import score_submission

    res = score_submission(args.submission, _competition(args))
    if args.json:
        _print_json(res)
    else:
        print(f"{res['file']}: test accuracy {res['acc']:.4f}  macro-F1 {res['macro_f1']:.4f}")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submissions import make_submission

    name = args.name or ("blend-" + args.method if len(args.runs) > 1 else Path(args.runs[0].rstrip("/")).name)
    res = make_submission(_competition(args), args.runs, args.method, name, args.workdir, space=args.space, temperature=args.temperature)
    if args.json:
        _print_json(res)
        return 0
    cv = res["cv"]
    print(f"{res['method']} of {len(res['runs'])} run(s): CV accuracy {cv['acc']:.4f}  log-loss {cv['logloss']:.4f}{'  (nested: fitted on k-1 folds)' if cv['nested'] else ''}")
    if "cv_in_sample" in res:
        print(f"  in-sample (optimistic, for contrast): accuracy {res['cv_in_sample']['acc']:.4f}  log-loss {res['cv_in_sample']['logloss']:.4f}")
    for key in ("weights",):
        if key in res["details"]:
            print(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in res["details"][key].items()))
    if "test" in res:
        print(f"  test accuracy {res['test']['acc']:.4f}  log-loss {res['test']['logloss']:.4f}")
    if "warning" in res["details"]:
        print(f"  warning: {res['details']['warning']}")
    print(f"wrote {res['csv']} and {res['json']}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submission_file import check_file

    _, problems, remarks = check_file(args.submission, _competition(args))
    if args.json:
        _print_json({"file": args.submission, "valid": not problems, "problems": problems, "notes": remarks})
        return 0 if not problems else 2
    if problems:
        for p in problems:
            print(f"{args.submission}: {p}", file=sys.stderr)
        return 2
    print(f"{args.submission}: valid" + "".join(f"\n  note: {n}" for n in remarks))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submissions import submit_file

    res = submit_file(_competition(args), args.submission, args.message, slug=args.slug, dry_run=args.dry_run, workdir=args.workdir)
    if args.json:
        _print_json(res)
    elif res.get("dry_run"):
        print(f"{args.submission}: valid; dry run, not uploaded to {res['slug']}")
    else:
        print(f"submitted {res['file']} to {res['slug']} (ref {res['ref']}): {res['reply']}")
    return 0


def cmd_submissions(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submissions import submissions_table

    rows = submissions_table(_competition(args), slug=args.slug, workdir=args.workdir, fetch=not args.local)
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'time':<26} {'file':<28} {'ref':>8} {'cv_acc':>7} {'status':<9} {'public':>8}  message")
    for r in rows:
        cv = f"{float(r['cv_acc']):.4f}" if r.get("cv_acc") not in (None, "") else "-"
        lb = str(r["public_score"]) if r.get("public_score") not in (None, "") else "-"
        print(f"{str(r['time'])[:26]:<26} {str(r['file'])[:28]:<28} {str(r['ref']):>8} {cv:>7} {str(r['status']):<9} {lb:>8}  {r.get('message') or ''}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from fmnist_kaggle import kaggle_client

    rows = kaggle_client.leaderboard(_competition(args).require_slug(args.slug), top=args.top)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['rank']:>4}  {str(r['team'])[:30]:<30} {r['score']}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from fmnist_kaggle.sweep import format_table, parse_grid, parse_ranges, run_sweep

    models = [m for spec in (args.model or []) for m in spec.split(",") if m]
    base = _train_config(args, model=models[0] if models else None)
    result = run_sweep(
        _competition(args), base, args.name or "sweep", models or [base.model], parse_grid(args.grid), parse_ranges(args.range),
        trials=args.trials, use_optuna=args.optuna, workdir=args.workdir, progress=_progress(args), seed=args.search_seed, executor=_executor(args),
    )  # fmt: skip
    if args.json:
        _print_json(result)
        return 0
    print(format_table(result))
    print(f"table: {result['table_csv']} and {result['markdown']}; plot: {result['png']}; best config: {result['best_config']}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from fmnist_kaggle.reproduce import reproduce

    only = [t.strip() for t in args.experiment.split(",") if t.strip()] if args.experiment else None
    res = reproduce(_competition(args), args.report, args.budget, args.subset, args.folds, args.workdir, _progress(args), lambda: _executor(args), only)
    if args.json:
        _print_json(res)
        return 0
    print(Path(res["markdown"]).read_text())
    print(f"table: {res['markdown']}, {res['csv']}; plot: {res['png']}")
    return 0


def _train_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """One option per TrainConfig field, from the field's metadata (help, choices, type)."""
    g = p.add_argument_group("training (flags override --recipe and --config)")
    g.add_argument("--config", help="TOML file with a [train] table (see `fkaggle sweep` best configs)")
    for name, f in FIELDS.items():
        meta, default = f.metadata, default_of(name)
        if not meta["cli"]:
            continue
        kw: dict[str, Any] = {"default": None, "help": f"{meta['help']} (default {default})" if default not in (None, [], {}) else meta["help"]}
        if name == "recipe":
            kw["choices"] = list(RECIPES)
        elif name == "model" and sweep:
            kw.update(action="append", help=meta["help"] + "; repeat or comma-separate to compare models")
        elif isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kw["type"] = _int_list
        elif default is not None and name != "device":
            kw["type"] = type(default)
        if meta["choices"]:
            kw["choices"] = meta["choices"]
        g.add_argument("--" + name.replace("_", "-"), **kw)
    _executor_options(p)
    m = p.add_argument_group("model keywords (stored in model_kwargs)")
    m.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model keyword, e.g. dropout3=0.3, width=32, act=tanh")
    m.add_argument("--pretrained", help="local weights file for a timm: model")
    m.add_argument("--freeze-backbone", action="store_true", help="train only the classifier of a timm: model")
    m.add_argument("--input-size", type=int, help="timm: models: pad/resize 28x28 inputs to this size")


def _executor_options(p: argparse.ArgumentParser) -> None:
    x = p.add_argument_group("where units train: each (fold, seed) is one unit")
    x.add_argument("--executor", choices=EXECUTORS, default="local", help="local: in this process (default); ray: Ray tasks, embedded on this machine or on --address")
    x.add_argument("--address", help="join this Ray cluster (auto or HOST:PORT; default $RAY_ADDRESS, else an embedded instance)")
    x.add_argument("--cpus-per-task", type=int, default=1, help="Ray: CPUs (and torch threads) per unit when the cluster has no GPUs (default 1)")


# ----------------------------------------------------------------------------- parser


def _command(sub: Any, name: str, help: str, func: Any, *, data: bool = False, workdir: bool = False, json: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    _verbosity(p)
    if data:
        _data_options(p)
    if workdir:
        p.add_argument("--workdir", default=".", help="competition workspace holding oof/ and submissions/ (default .)")
    if json:
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def _verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors on stderr; no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug log lines on stderr")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fkaggle", description="Win Kaggle-style Fashion-MNIST competitions.")
    p.add_argument("--version", action="version", version=f"fkaggle {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr; no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug log lines on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="load and check competition data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    check = _command(dsub, "check", "load, validate and summarize train/test files; write a sample grid PNG", cmd_data_check, data=True)
    check.add_argument("--folds", type=int, default=5, help="check every class has at least this many samples (default 5)")
    check.add_argument("--png", help="where to write the sample grid (default oof/data-check/samples.png)")
    drift = _command(dsub, "drift", "adversarial validation: can a classifier tell train from test rows? ROC AUC, verdict, PNGs", cmd_data_drift, data=True, workdir=True)
    drift.add_argument("--rows", type=int, default=5000, help="rows sampled from each of train and test (default 5000)")
    drift.add_argument("--folds", type=int, default=5, help="cross-validation folds for the out-of-fold AUC (default 5)")

    init = _command(sub, "init", "write a competition config (default competition/competition.toml) from files it has loaded and checked; later commands read it", cmd_init)
    init.add_argument("--train", required=True, help="training file: CSV (label + 784 pixel columns, may be zipped or gzipped), NPY/NPZ, or IDX images")
    init.add_argument("--train-labels", help="separate training labels (IDX labels, or .npy) when the training file holds only images")
    init.add_argument("--test", help="test file to predict (same formats; an id column is kept for the submission)")
    init.add_argument("--test-labels", help="known test truth for offline scoring: .npy/IDX in test order, or a CSV joined on the id column")
    init.add_argument("--sample-submission", help="the competition's sample submission: its two columns name the submission's id and label columns")
    init.add_argument("--slug", help="Kaggle competition slug (used by submit, submissions and leaderboard)")
    init.add_argument("--name", default="custom", help="a name for the competition (default custom)")
    init.add_argument("--format", choices=["auto", "csv", "npy", "npz", "idx"], help="file format (default: detected from name and content)")
    init.add_argument("--out", default="competition/competition.toml", help="where to write the config (default competition/competition.toml, found there by every command)")
    init.add_argument("--force", action="store_true", help="replace an existing config")

    dl = _command(sub, "download", "download a Kaggle competition's files with the official client, check them and write its config", cmd_download)
    dl.add_argument("slug", help="the competition's slug, as in kaggle.com/competitions/SLUG")
    dl.add_argument("--dir", help="where the files go (default competition/data/SLUG)")
    dl.add_argument("--out", default="competition/competition.toml", help="where to write the config (default competition/competition.toml)")
    dl.add_argument("--force", action="store_true", help="download again and replace an existing config")

    mo = _command(sub, "models", "list registered models with parameter counts", cmd_models)
    mo.add_argument("--classes", type=int, help="count parameters for K output classes (default: each model's report's own, 10 or 5)")
    _command(sub, "runs", "the workspace's runs: model, folds done, CV and test accuracy", cmd_runs, workdir=True)
    pr = _command(sub, "predict", "apply a run's saved fold models to another test file (a run blend can use)", cmd_predict, workdir=True)
    pr.add_argument("run")
    pr.add_argument("--test", required=True, help="the test file to predict (any supported format)")
    pr.add_argument("--name", help="the new run's name (default RUN-on-FILE)")
    pr.add_argument("--format", choices=["auto", "csv", "npy", "npz", "idx"])
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")

    ft = _command(sub, "fold-train", "stratified k-fold training: OOF logits + fold-averaged test logits", cmd_fold_train, data=True, workdir=True)
    _train_options(ft)
    ft.add_argument("--run", help="run name (default: model-recipe-kK-confighash)")
    ft.add_argument("--fold", help="only these folds, e.g. 0,2 (shard a run over machines)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run whose config differs")
    ft.add_argument("--no-progress", action="store_true")

    st = _command(sub, "status", "which folds of a run are done, partial, missing, corrupt or foreign (reads only)", cmd_status, workdir=True)
    st.add_argument("run")
    asm = _command(sub, "assemble", "build a run's OOF and test logits once every fold is done (e.g. copied shards)", cmd_assemble, workdir=True)
    asm.add_argument("run")

    sw = _command(sub, "sweep", "cross-validated grid / random / Optuna search; every trial is a run", cmd_sweep, data=True, workdir=True)
    _train_options(sw, sweep=True)
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="values to try (config keys or model keywords)")
    sw.add_argument("--range", action="append", metavar="KEY=LO:HI[:log][:int]", help="random/Optuna search range")
    sw.add_argument("--trials", type=int, default=0, help="random search (or Optuna) with N trials instead of the full grid")
    sw.add_argument("--optuna", action="store_true", help="Optuna TPE search (needs optuna installed)")
    sw.add_argument("--search-seed", type=int, default=0)
    sw.add_argument("--name", help="sweep name: results in oof/sweeps/NAME.csv")
    sw.add_argument("--no-progress", action="store_true")

    rp = _command(sub, "reproduce", "re-run a report's experiment tables as k-fold sweeps; table (Markdown, CSV, PNG) beside the report's numbers", cmd_reproduce, data=True, workdir=True)
    rp.add_argument("report", help="report000 .. report004 (or 000 .. 004)")
    rp.add_argument("--budget", choices=["quick", "full"], default="quick", help="quick: subset, 3 folds, fewer epochs (stated in the table); full: the report's settings on all rows, 5 folds")
    rp.add_argument("--subset", type=int, help="stratified subset of N training rows (quick default 6000; 0 = all)")
    rp.add_argument("--folds", type=int, help="k-fold CV (quick default 3, full 5)")
    rp.add_argument("--experiment", help="only these tables, comma-separated (names in the report's table file)")
    rp.add_argument("--no-progress", action="store_true")
    _executor_options(rp)

    cvp = _command(sub, "cv", "offline CV report of runs: metrics per fold and class, confusion, correlation; confusion and sample-prediction PNGs", cmd_cv, data=True, workdir=True)
    cvp.add_argument("runs", nargs="+")

    ex = _command(sub, "explain", "draw a fold model's first-layer feature maps for held-out images of each class (PNG)", cmd_explain, data=True, workdir=True)
    ex.add_argument("run")
    ex.add_argument("--fold", type=int, default=0, help="whose model, on whose validation images (default 0)")
    ex.add_argument("--images", type=int, default=1, help="images per class (default 1)")
    ex.add_argument("--layers", type=int, default=2, help="first N convolution layers (default 2)")
    ex.add_argument("--channels", type=int, default=8, help="evenly spaced channels per layer (default 8)")

    sc = _command(sub, "score", "score a submission file against the competition's known test labels", cmd_score, data=True)
    sc.add_argument("submission")

    bl = _command(sub, "blend", "blend runs (or take one) into submissions/NAME.csv with an honest CV", cmd_blend, data=True, workdir=True)
    bl.add_argument("runs", nargs="+")
    bl.add_argument("--method", default="mean", choices=["mean", "geomean", "rank", "weighted", "hillclimb", "stack"])
    bl.add_argument("--space", default="prob", choices=["prob", "logit"], help="mean: average probabilities or logits")
    bl.add_argument("--temperature", action="store_true", help="stack: temperature-scale the level-2 output")
    bl.add_argument("--name", help="submission name (default blend-METHOD, or the run's name)")

    va = _command(sub, "validate", "check a submission against the sample submission / test ids", cmd_validate, data=True)
    va.add_argument("submission")

    sm = _command(sub, "submit", "validate and upload a submission with the official kaggle client", cmd_submit, data=True, workdir=True)
    sm.add_argument("submission")
    sm.add_argument("-m", "--message", required=True)
    sm.add_argument("--slug", help="Kaggle competition slug (default: the config's)")
    sm.add_argument("--dry-run", action="store_true", help="validate only")

    ss = _command(sub, "submissions", "local upload records with Kaggle status and public score (CV vs LB)", cmd_submissions, data=True, workdir=True)
    ss.add_argument("--slug")
    ss.add_argument("--local", action="store_true", help="do not contact Kaggle")

    lb = _command(sub, "leaderboard", "the top of the competition's public leaderboard", cmd_leaderboard, data=True)
    lb.add_argument("--slug")
    lb.add_argument("--top", type=int, default=20)
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("fmnist_kaggle")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    try:
        return int(args.func(args) or 0)
    except FkaggleError as exc:
        print(f"fkaggle: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fkaggle ... | head`: the reader is gone, nothing left to say
        sys.stderr.close()
        return 0
    except OSError as exc:  # permission denied, disk full, unwritable folder: name the path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fkaggle: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fkaggle: interrupted (finished (fold, seed) units and epochs are kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`fkaggle models`, `fold-train`, `runs`, `status`, `assemble`, `predict`: training runs and reading them."""

from __future__ import annotations

import argparse
from typing import Any

from fmnist_kaggle.cli.common import command, competition, emit, executor, parse_ints, print_json, progress, train_config, train_options
from fmnist_kaggle.data.formats import format_choices
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage.layout import Workspace

ORDER = 20  # place in `fkaggle --help`: the pipeline's order


def cmd_models(args: argparse.Namespace) -> int:
    from fmnist_kaggle.models import count_params, create_model, list_models, report_classes

    if args.classes is not None and args.classes < 2:
        raise FkaggleError(f"--classes must be at least 2, got {args.classes}")
    rows = []
    for name in list_models():
        k = args.classes or report_classes(name)  # the reports' own output widths by default
        rows.append({"model": name, "params": count_params(create_model(name, num_classes=k)), "classes": k})
    return emit(args, rows, _models_text)


def _models_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{r['model']:<16} {r['params']:>10,}  ({r['classes']} classes)" for r in rows]
    return "\n".join([*lines, "timm:<name>      any timm model (e.g. timm:resnet18), with input_size / pretrained / freeze_backbone"])


def cmd_fold_train(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.driver import train_folds

    cfg = train_config(args)
    comp = competition(args)
    manifest = train_folds(comp, cfg, run=args.run, workdir=args.workdir, only_folds=parse_ints(args.fold), overwrite=args.overwrite, progress=progress(args), executor=executor(args))
    if args.json:
        print_json({k: manifest.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")})
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.predict import predict_run

    m = predict_run(args.run, args.test, args.name, args.workdir, args.format or "auto", args.device)
    known = f"; test accuracy {m['test_metrics']['acc']:.4f}" if m.get("test_metrics") else ""
    text = f"{m['predicted_from']['run']} -> {m['run']}: {m['data']['test_rows']} rows of {args.test} predicted{known}\nsubmission: fkaggle blend {m['run']} --test {args.test} [--sample-submission FILE]"
    return emit(args, {k: m.get(k) for k in ("run", "predicted_from", "test_metrics")}, lambda _: text)


def cmd_runs(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.store import list_runs

    rows = list_runs(args.workdir)
    return emit(args, rows, lambda rows: "\n".join(map(_run_line, rows)) if rows else f"no runs in {Workspace(args.workdir).oof}")


def _run_line(r: dict[str, Any]) -> str:
    if "problem" in r:
        return f"{r['run']:<32} unreadable: {r['problem']}"
    num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    origin = f"  (predicted by {r['predicted_from']}'s models)" if r["predicted_from"] else ""
    return f"{r['run']:<32} {r['model']:<18} folds {r['folds_done']}/{r['folds']}  CV acc {num(r['cv_acc'])}  log-loss {num(r['cv_logloss'])}  test {num(r['test_acc'])}  {r['created'][:19]}{origin}"


def cmd_status(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.store import status

    rd = Workspace(args.workdir).find_run(args.run)
    m = status(rd)
    assembled = rd.assembled(m)
    if args.json:
        print_json({**{k: m.get(k) for k in ("run", "complete", "fold_status", "fold_problems", "missing_folds", "cv", "test_metrics")}, "assembled": assembled})
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
    from fmnist_kaggle.runs.store import assemble

    m = assemble(Workspace(args.workdir).find_run(args.run))
    text = f"run {m['run']}: CV accuracy {m['cv']['acc']:.4f}  log-loss {m['cv']['logloss']:.4f}" if m["complete"] else f"run {m['run']}: folds missing {m['missing_folds']}"
    emit(args, {k: m.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")}, lambda _: text)
    return 0 if m["complete"] else 1


def register(sub: Any) -> None:
    mo = command(sub, "models", "list registered models with parameter counts", cmd_models)
    mo.add_argument("--classes", type=int, help="count parameters for K output classes (default: each model's report's own, 10 or 5)")
    command(sub, "runs", "the workspace's runs: model, folds done, CV and test accuracy", cmd_runs, workdir=True)
    pr = command(sub, "predict", "apply a run's saved fold models to another test file (a run blend can use)", cmd_predict, workdir=True)
    pr.add_argument("run")
    pr.add_argument("--test", required=True, help="the test file to predict (any supported format)")
    pr.add_argument("--name", help="the new run's name (default RUN-on-FILE)")
    pr.add_argument("--format", choices=format_choices())
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")

    ft = command(sub, "fold-train", "stratified k-fold training: OOF logits + fold-averaged test logits", cmd_fold_train, data=True, workdir=True, track=True)
    train_options(ft)
    ft.add_argument("--run", help="run name (default: model-recipe-kK-confighash)")
    ft.add_argument("--fold", help="only these folds, e.g. 0,2 (shard a run over machines)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run whose config differs")
    ft.add_argument("--no-progress", action="store_true")

    st = command(sub, "status", "which folds of a run are done, partial, missing, corrupt or foreign (reads only)", cmd_status, workdir=True)
    st.add_argument("run")
    asm = command(sub, "assemble", "build a run's OOF and test logits once every fold is done (e.g. copied shards)", cmd_assemble, workdir=True)
    asm.add_argument("run")

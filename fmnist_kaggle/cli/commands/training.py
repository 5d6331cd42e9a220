"""`fkaggle models`, `fold-train`, `runs`, `status`, `assemble`, `predict`: training runs and reading them."""

from __future__ import annotations

import argparse
import time
from typing import Any

from fmnist_kaggle.cli.common import (
    command,
    competition,
    emit,
    executor,
    parse_ints,
    print_json,
    progress,
    time_limit,
    train_config,
    train_options,
)
from fmnist_kaggle.data.formats import format_choices
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage.layout import Workspace

ORDER = 20  # place in `fkaggle --help`: the pipeline's order


def cmd_models(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.catalog import model_rows

    if args.classes is not None and args.classes < 2:
        raise FkaggleError(f"--classes must be at least 2, got {args.classes}")
    if args.timm is not None:
        from fmnist_kaggle.models.timm_backbone import timm_models

        rows = timm_models(args.timm)
        if not rows:
            raise FkaggleError(f"no timm model matches {args.timm!r} (shell-style: '*resnet*', 'convnext*')")
        return emit(args, {"timm": rows}, _timm_text)
    return emit(args, model_rows(args.classes, args.workdir, args.measure), _models_text)


def _timm_text(res: dict[str, Any]) -> str:
    lines = [
        f"{r['model']:<48} {'pretrained weights known (a local file: --pretrained FILE)' if r['weights'] else ''}"
        for r in res["timm"]
    ]
    lines.append(
        f"{len(res['timm'])} model(s); each trains from scratch offline (--model NAME --input-size 32 for most)"
    )
    return "\n".join(lines)


def _models_text(res: dict[str, Any]) -> str:
    speed = lambda r: (
        f"  {r['images_per_s']:,.0f} img/s measured here ({r['measured_on']})" if r["images_per_s"] else ""
    )
    lines = [
        f"{'model':<16} {'params':>10}",
        *(f"{r['model']:<16} {r['params']:>10,}  ({r['classes']} classes){speed(r)}" for r in res["models"]),
    ]
    lines.append("timm:<name>      any timm model (e.g. timm:resnet18), with input_size / pretrained / freeze_backbone")
    lines += ["", f"{'recipe':<16} {'params':>10}  model as trained"]
    for r in res["recipes"]:
        kwargs = ", ".join(f"{k}={v}" for k, v in r["model_kwargs"].items())
        lines.append(f"{r['recipe']:<16} {r['params']:>10,}  {r['model']}{f'({kwargs})' if kwargs else ''}{speed(r)}")
    if "engine" in res:
        e = res["engine"]
        peaks = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in e["peak_gflop_s"].items())
        lines += ["", f"measured now against the {e['peak']} peak ({peaks}); predictions in float32"]
        lines.append(
            f"{'recipe':<8} {'MFLOP/img':>9} {'train img/s':>11} {'GFLOP/s':>8} {'of peak':>7}  "
            f"{'predict img/s':>13} {'GFLOP/s':>8} {'of peak':>7}  training precision"
        )
        for r in e["rows"]:
            lines.append(
                f"{r['recipe']:<8} {r['mflop_per_image']:>9.1f} {r['train_img_s']:>11,.0f} {r['train_gflop_s']:>8.1f} "
                f"{r['train_pct_of_peak']:>6}%  {r['predict_img_s']:>13,.0f} {r['predict_gflop_s']:>8.1f} "
                f"{r['predict_pct_of_peak']:>6}%  {r['train_precision']} on {r['device']}"
            )
    return "\n".join(lines)


def cmd_fold_train(args: argparse.Namespace) -> int:
    started = time.monotonic()  # a --time-limit counts from here: loading the data is part of it
    cfg = train_config(args)
    comp = competition(args)
    from fmnist_kaggle.runs.driver import run_summary, train_folds

    limit = time_limit(args, started)
    manifest = train_folds(
        comp,
        cfg,
        run=args.run,
        workdir=args.workdir,
        only_folds=parse_ints(args.fold),
        overwrite=args.overwrite,
        progress=progress(args),
        executor=executor(args),
        deadline=limit,
        time_limit=limit is not None,
    )
    return emit(
        args,
        {k: manifest.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")},
        lambda _: run_summary(manifest),
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.predict import blend_hint, predict_run

    m = predict_run(args.run, args.test, args.name, args.workdir, args.format or "auto", args.device)
    known = f"; test accuracy {m['test_metrics']['acc']:.4f}" if m.get("test_metrics") else ""
    hint = blend_hint(m, args.test)
    text = (
        f"{m['predicted_from']['run']} -> {m['run']}: {m['data']['test_rows']} rows "
        f"of {args.test} predicted{known}\nsubmission: {hint}"
    )
    return emit(
        args, {**{k: m.get(k) for k in ("run", "predicted_from", "test_metrics")}, "next": hint}, lambda _: text
    )


def cmd_runs(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.store import list_runs

    rows = list_runs(args.workdir)
    return emit(
        args,
        rows,
        lambda rows: (
            "\n".join([RUNS_HEADER, *map(_run_line, rows)]) if rows else f"no runs in {Workspace(args.workdir).oof}"
        ),
    )


RUNS_HEADER = (
    f"{'run (best CV first)':<32} {'model':<18} {'folds':>5}  {'CV acc':>7}  {'log-loss':>8}  {'test':>7}  created"
)


def _run_line(r: dict[str, Any]) -> str:
    if "problem" in r:
        return f"{r['run']:<32} unreadable: {r['problem']}"
    num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    origin = f"  (predicted by {r['predicted_from']}'s models)" if r["predicted_from"] else ""
    if r.get("optimistic"):
        origin += "  optimistic CV: epochs chosen on the rows it scores (--select-epoch)"
    folds = f"{r['folds_done']}/{r['folds']}"
    return (
        f"{r['run']:<32} {r['model']:<18} {folds:>5}  {num(r['cv_acc']):>7}  {num(r['cv_logloss']):>8} "
        f" {num(r['test_acc']):>7}  {r['created'][:19]}{origin}"
    )


def cmd_status(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.store import resume_command, status

    rd = Workspace(args.workdir).find_run(args.run)
    m = status(rd)
    assembled = rd.assembled(m)
    if args.json:
        print_json(
            {
                **{
                    k: m.get(k)
                    for k in ("run", "complete", "fold_status", "fold_problems", "missing_folds", "cv", "test_metrics")
                },
                "assembled": assembled,
            }
        )
        return 0 if m["complete"] else 1
    print(f"run {m['run']}: {m['model']}, {m['data']['folds']} folds, {'complete' if m['complete'] else 'incomplete'}")
    by_fold = {fm["fold"]: fm for fm in m["fold_metrics"]}
    for f, s in m["fold_status"].items():
        extra = (
            f"  acc {by_fold[int(f)]['acc']:.4f}  logloss {by_fold[int(f)]['logloss']:.4f}" if int(f) in by_fold else ""
        )
        problem = f"  ({m['fold_problems'][f]})" if f in m["fold_problems"] else ""
        print(f"  fold {f}: {s}{extra}{problem}")
    if m["missing_folds"]:
        print(f"missing folds: {','.join(map(str, m['missing_folds']))} (corrupt folds retrain); to train them:")
        print(f"  {resume_command(m, rd)}")
    elif not assembled:
        print(f"all folds done, not assembled yet: fkaggle assemble {m['run']}")
    if m.get("cv") and assembled:
        print(f"CV accuracy {m['cv']['acc']:.4f}  log-loss {m['cv']['logloss']:.4f}")
    return 0 if m["complete"] else 1


def cmd_assemble(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs.driver import run_summary
    from fmnist_kaggle.runs.store import assemble

    m = assemble(Workspace(args.workdir).find_run(args.run))
    emit(
        args,
        {k: m.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")},
        lambda _: run_summary(m),
    )
    return 0 if m["complete"] else 1


def register(sub: Any) -> None:
    mo = command(
        sub,
        "models",
        "registered models and the recipes' models as trained: parameter counts, speed where a run here measured it",
        cmd_models,
        workdir=True,
    )
    mo.add_argument(
        "--timm",
        metavar="PATTERN",
        help="list timm's models matching PATTERN (shell-style, e.g. '*resnet*'), marking those with known weights",
    )
    mo.add_argument(
        "--measure",
        action="store_true",
        help="time the cpu and fast recipes here: FLOPs per image, training and prediction img/s, "
        "GFLOP/s and their share of this machine's matmul peak (about 10 s)",
    )
    mo.add_argument(
        "--classes",
        type=int,
        help="count parameters for K output classes (default: each model's report's own, 10 or 5)",
    )
    command(sub, "runs", "the workspace's runs: model, folds done, CV and test accuracy", cmd_runs, workdir=True)
    pr = command(
        sub,
        "predict",
        "apply a run's saved fold models to another test file (a run blend can use)",
        cmd_predict,
        workdir=True,
    )
    pr.add_argument("run")
    pr.add_argument("--test", required=True, help="the test file to predict (any supported format)")
    pr.add_argument("--name", help="the new run's name (default RUN-on-FILE)")
    pr.add_argument("--format", choices=format_choices())
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")

    ft = command(
        sub,
        "fold-train",
        "stratified k-fold training: OOF logits + fold-averaged test logits",
        cmd_fold_train,
        data=True,
        workdir=True,
        track=True,
    )
    train_options(ft)
    ft.add_argument("--run", help="run name (default: model-recipe-kK-confighash)")
    ft.add_argument("--fold", help="only these folds, e.g. 0,2 (shard a run over machines)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run whose config differs")
    ft.add_argument("--no-progress", action="store_true")

    st = command(
        sub,
        "status",
        "which folds of a run are done, partial, missing, corrupt or foreign (reads only)",
        cmd_status,
        workdir=True,
    )
    st.add_argument("run")
    asm = command(
        sub,
        "assemble",
        "build a run's OOF and test logits once every fold is done (e.g. copied shards)",
        cmd_assemble,
        workdir=True,
    )
    asm.add_argument("run")

"""`fkaggle cv`, `explain`, `score`, `blend`, `validate`: evaluating runs and making submissions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fmnist_kaggle.cli.common import command, competition, emit, print_json, run_data
from fmnist_kaggle.evaluate.blenders import blender_names
from fmnist_kaggle.storage.layout import Workspace

ORDER = 30  # place in `fkaggle --help`: the pipeline's order


def cmd_cv(args: argparse.Namespace) -> int:
    from fmnist_kaggle.evaluate.scoring import cv, format_cv
    from fmnist_kaggle.runs.store import load_run

    runs = [load_run(r, args.workdir) for r in args.runs]
    names = runs[0].manifest["data"]["class_names"]
    return emit(args, cv(runs, names, Workspace(args.workdir), competition=lambda: run_data(args)), format_cv)


def cmd_explain(args: argparse.Namespace) -> int:
    from fmnist_kaggle.evaluate.explain import explain

    return emit(
        args,
        explain(args.run, run_data(args), args.fold, args.images, args.layers, args.channels, args.workdir),
        _explain_text,
    )


def _explain_text(res: dict[str, Any]) -> str:
    layers = ", ".join(f"{x['name']} ({x['channels']} x {x['size'][0]}x{x['size'][1]})" for x in res["layers"])
    return (
        f"{res['run']} fold {res['fold']}: {len(res['rows'])} held-out images through "
        f"{layers}\nactivation maps: {res['png']}"
    )


def cmd_score(args: argparse.Namespace) -> int:
    from fmnist_kaggle.evaluate.scoring import score_submission

    return emit(
        args,
        score_submission(args.submission, competition(args)),
        lambda res: f"{res['file']}: test accuracy {res['acc']:.4f}  macro-F1 {res['macro_f1']:.4f}",
    )


def cmd_blend(args: argparse.Namespace) -> int:
    from fmnist_kaggle.evaluate.submission import make_submission

    name = args.name or ("blend-" + args.method if len(args.runs) > 1 else Path(args.runs[0].rstrip("/")).name)
    return emit(
        args,
        make_submission(
            competition(args),
            args.runs,
            args.method,
            name,
            args.workdir,
            space=args.space,
            temperature=args.temperature,
        ),
        _blend_text,
    )


def _blend_text(res: dict[str, Any]) -> str:
    cv = res["cv"]
    lines = [
        f"{res['method']} of {len(res['runs'])} run(s): CV accuracy {cv['acc']:.4f} "
        f" log-loss {cv['logloss']:.4f}{'  (nested: fitted on k-1 folds)' if cv['nested'] else ''}"
    ]
    best = res["best_single"]
    if len(res["runs"]) > 1:
        gain = cv["acc"] - best["acc"]
        lines.append(
            f"  best single run {best['run']}: CV accuracy {best['acc']:.4f}  log-loss "
            f"{best['logloss']:.4f}  (blend {'+' if gain >= 0 else ''}{gain:.4f}{'' if gain > 0 else ': no gain'})"
        )
    if "cv_in_sample" in res:
        lines.append(
            f"  in-sample (optimistic, for contrast): accuracy {res['cv_in_sample']['acc']:.4f} "
            f" log-loss {res['cv_in_sample']['logloss']:.4f}"
        )
    if "weights" in res["details"]:
        lines.append("  weights: " + ", ".join(f"{k}={v}" for k, v in res["details"]["weights"].items()))
    if "test" in res:
        lines.append(f"  test accuracy {res['test']['acc']:.4f}  log-loss {res['test']['logloss']:.4f}")
    if "warning" in res["details"]:
        lines.append(f"  warning: {res['details']['warning']}")
    return "\n".join([*lines, f"wrote {res['csv']} and {res['json']}"])


def cmd_validate(args: argparse.Namespace) -> int:
    from fmnist_kaggle.data.submission_file import check_file

    _, problems, remarks = check_file(args.submission, competition(args))
    if args.json:
        print_json({"file": args.submission, "valid": not problems, "problems": problems, "notes": remarks})
        return 0 if not problems else 2
    if problems:
        for p in problems:
            print(f"{args.submission}: {p}", file=sys.stderr)
        return 2
    print(f"{args.submission}: valid" + "".join(f"\n  note: {n}" for n in remarks))
    return 0


def register(sub: Any) -> None:
    cvp = command(
        sub,
        "cv",
        "offline CV report of runs: metrics per fold and class, confusion, correlation; "
        "confusion and sample-prediction PNGs",
        cmd_cv,
        data=True,
        workdir=True,
    )
    cvp.add_argument("runs", nargs="+")

    ex = command(
        sub,
        "explain",
        "draw the feature maps of a fold model's first convolution layers for held-out images of each class (PNG)",
        cmd_explain,
        data=True,
        workdir=True,
    )
    ex.add_argument("run")
    ex.add_argument("--fold", type=int, default=0, help="whose model, on whose validation images (default 0)")
    ex.add_argument("--images", type=int, default=1, help="images per class (default 1)")
    ex.add_argument("--layers", type=int, default=2, help="first N convolution layers (default 2)")
    ex.add_argument("--channels", type=int, default=8, help="evenly spaced channels per layer (default 8)")

    sc = command(
        sub, "score", "score a submission file against the competition's known test labels", cmd_score, data=True
    )
    sc.add_argument("submission")

    bl = command(
        sub,
        "blend",
        "blend runs (or take one) into submissions/NAME.csv with an honest CV",
        cmd_blend,
        data=True,
        workdir=True,
        track=True,
    )
    bl.add_argument("runs", nargs="+")
    bl.add_argument("--method", default="mean", choices=blender_names())
    bl.add_argument("--space", default="prob", choices=["prob", "logit"], help="mean: average probabilities or logits")
    bl.add_argument("--temperature", action="store_true", help="stack: temperature-scale the level-2 output")
    bl.add_argument("--name", help="submission name (default blend-METHOD, or the run's name)")

    va = command(
        sub, "validate", "check a submission against the sample submission / test ids", cmd_validate, data=True
    )
    va.add_argument("submission")

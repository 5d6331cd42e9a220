"""`fkaggle data check|drift`, `init`, `download`: getting and checking the data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fmnist_kaggle.cli.common import command, competition, emit
from fmnist_kaggle.data.duplicates import duplicates_check
from fmnist_kaggle.data.formats import format_choices
from fmnist_kaggle.data.images import check_min_class_count
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import sample_grid
from fmnist_kaggle.storage.layout import Workspace

ORDER = 10  # place in `fkaggle --help`: the pipeline's order


def cmd_data_check(args: argparse.Namespace) -> int:
    from fmnist_kaggle.data.competition import summary

    comp = competition(args)
    info = summary(comp)
    check_min_class_count(comp.train_set, args.folds)
    info["duplicates"] = duplicates_check(comp, Workspace("."))
    png = Path(args.png) if args.png else Workspace(".").data_check_png
    sample_grid(comp.train_set.images, comp.train_set.labels, comp.names, png)
    info["sample_grid_png"] = str(png)
    return emit(
        args, info, lambda info: f"{_summary_text(info)}\n{_duplicates_text(info['duplicates'])}\nsample grid: {png}"
    )


def _duplicates_text(d: dict[str, Any]) -> str:
    return (
        f"repeated images ({d['threshold']}): {d['train_groups']} group(s) of {d['train_rows']} training rows "
        f"({d['conflicting_label_groups']} with labels that disagree; each group is kept in one fold), "
        f"{d['test_groups']} group(s) within test, {d['train_test_rows']} test row(s) repeating a training image"
    )


def cmd_data_drift(args: argparse.Namespace) -> int:
    from fmnist_kaggle.data.drift import drift_report

    comp = competition(args)
    ws = Workspace(args.workdir)
    res = drift_report(
        comp.train_set, comp.test_set, *ws.drift_pngs, rows=args.rows, folds=args.folds, result_json=ws.drift_json
    )
    return emit(args, res, _drift_text)


def _drift_text(res: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"adversarial validation: {res['train_rows']} train vs {res['test_rows']} "
            f"test rows, {res['folds']}-fold ROC AUC {res['auc']:.4f}",
            f"verdict: {res['verdict']}",
            f"pixel importances: {res['importance_png']}",
            f"the {len(res['test_like_ids'])} most test-like training rows ({res.get('id_column') or '1-based row'}: "
            f"P(test)), as drawn in {res['test_like_png']}:",
            "  " + ", ".join(f"{r}: {p:.2f}" for r, p in zip(res["test_like_ids"], res["test_like_p"])),
        ]
    )


def _summary_text(info: dict[str, Any]) -> str:
    tr = info["train"]
    lines = [
        f"train  {tr['path']}  [{tr['format']}]  {tr['rows']} rows, {tr['classes']} "
        f"classes, label values {tr['label_values']}",
        f"       pixels {tr['pixel_dtype']} {tr['pixel_range'][0]}..{tr['pixel_range'][1]} "
        f"(stored as {tr['stored_scale']}), fingerprint {tr['fingerprint']}",
        *(f"       {name:<14} {count}" for name, count in tr["class_counts"].items()),
    ]
    if "test" in info:
        te = info["test"]
        ids = "synthesized 1..N" if te["ids_synthesized"] else f"column {te['id_column']!r}"
        lines.append(
            f"test   {te['path']}  [{te['format']}]  {te['rows']} rows, ids {ids}, labels "
            f"{'known' if te['has_labels'] else 'unknown'}"
        )
    if "sample_submission" in info:
        ss = info["sample_submission"]
        lines.append(f"sample {ss['path']}  columns {ss['columns']}, {ss['rows']} rows")
    return "\n".join(lines)


def cmd_init(args: argparse.Namespace) -> int:
    from fmnist_kaggle.data.competition import init_competition, init_official

    paths = {k: getattr(args, k) for k in ("train", "train_labels", "test", "test_labels", "sample_submission")}
    if args.official:
        if any(paths.values()):
            raise FkaggleError("--official writes the official Fashion-MNIST config: no --train/--test/... with it")
        _, info = init_official(args.out, args.force)
    elif args.train is None:
        raise FkaggleError(
            "init needs --train FILE (your competition's files) or --official (the "
            "official Fashion-MNIST, installed on this machine)"
        )
    else:
        _, info = init_competition(paths, args.out, args.name, args.slug, args.format or "auto", args.force)
    return _report_config(args, info, args.out)


def cmd_download(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submit.download import download_competition

    info, folder = download_competition(args.slug, args.dir, args.out, args.force)
    return _report_config(args, {**info, "data_dir": str(folder)}, args.out)


def _report_config(args: argparse.Namespace, info: dict[str, Any], target: str) -> int:
    return emit(args, {**info, "config": str(target)}, lambda info: f"{_summary_text(info)}\nwrote {target}")


def register(sub: Any) -> None:
    _add_data(sub)
    _add_init(sub)
    _add_download(sub)


def _add_data(sub: Any) -> None:
    data = sub.add_parser("data", help="load and check competition data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    check = command(
        dsub,
        "check",
        "load, validate and summarize train/test files; write a sample grid PNG",
        cmd_data_check,
        data=True,
    )
    check.add_argument(
        "--folds", type=int, default=5, help="check every class has at least this many samples (default 5)"
    )
    check.add_argument("--png", help="where to write the sample grid (default oof/data-check/samples.png)")
    drift = command(
        dsub,
        "drift",
        "adversarial validation: can a classifier tell train from test rows? ROC AUC, verdict, PNGs",
        cmd_data_drift,
        data=True,
        workdir=True,
    )
    drift.add_argument("--rows", type=int, default=5000, help="rows sampled from each of train and test (default 5000)")
    drift.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds for the out-of-fold AUC (default 5)"
    )


def _add_init(sub: Any) -> None:
    init = command(
        sub,
        "init",
        "write a competition config (default competition/competition.toml) from "
        "files it has loaded and checked; later commands read it",
        cmd_init,
    )
    init.add_argument(
        "--official",
        action="store_true",
        help="the official Fashion-MNIST (10 classes, its test labels for offline scoring), "
        "found in $FKAGGLE_DATA, competition/data/ or Debian's dataset-fashion-mnist",
    )
    init.add_argument(
        "--train",
        help="training file: CSV (label + 784 pixel columns, may be zipped or gzipped), NPY/NPZ, or IDX images",
    )
    init.add_argument(
        "--train-labels", help="separate training labels (IDX labels, or .npy) when the training file holds only images"
    )
    init.add_argument("--test", help="test file to predict (same formats; an id column is kept for the submission)")
    init.add_argument(
        "--test-labels",
        help="known test truth for offline scoring: .npy/IDX in test order, or a CSV joined on the id column",
    )
    init.add_argument(
        "--sample-submission",
        help="the competition's sample submission: its two columns name the submission's id and label columns",
    )
    init.add_argument("--slug", help="Kaggle competition slug (used by submit, submissions and leaderboard)")
    init.add_argument("--name", default="custom", help="a name for the competition (default custom)")
    init.add_argument(
        "--format", choices=format_choices(), help="file format (default: detected from name and content)"
    )
    init.add_argument(
        "--out",
        default="competition/competition.toml",
        help="where to write the config (default competition/competition.toml, found there by every command)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing config")


def _add_download(sub: Any) -> None:
    dl = command(
        sub,
        "download",
        "download a Kaggle competition's files with the official client, check them and write its config",
        cmd_download,
    )
    dl.add_argument("slug", help="the competition's slug, as in kaggle.com/competitions/SLUG")
    dl.add_argument("--dir", help="where the files go (default competition/data/SLUG)")
    dl.add_argument(
        "--out",
        default="competition/competition.toml",
        help="where to write the config (default competition/competition.toml)",
    )
    dl.add_argument("--force", action="store_true", help="download again and replace an existing config")

"""`fkaggle`: a thin argument parser over the library. No work is done here.

Every `FkaggleError` becomes one line on stderr and exit status 2. Heavy imports
(torch, kaggle) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fmnist_kaggle import __version__
from fmnist_kaggle.errors import FkaggleError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


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
    png = Path(args.png)
    sample_grid(comp.train_set.images, comp.train_set.labels, comp.names, png)
    info["sample_grid_png"] = str(png)
    if args.json:
        _print_json(info)
        return 0
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
    print(f"sample grid: {png}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from fmnist_kaggle.competition import Competition, summary, write_config

    comp = Competition(
        name=args.name,
        slug=args.slug,
        format=args.format or "auto",
        train=Path(args.train).resolve(),
        train_labels=Path(args.train_labels).resolve() if args.train_labels else None,
        test=Path(args.test).resolve() if args.test else None,
        test_labels=Path(args.test_labels).resolve() if args.test_labels else None,
        sample_submission=Path(args.sample_submission).resolve() if args.sample_submission else None,
    )
    if comp.sample_submission is not None:  # submission columns come from the sample
        from fmnist_kaggle.submission import read_sample_submission

        cols = list(read_sample_submission(comp).columns)
        comp = Competition(**{**comp.__dict__, "id_column": cols[0], "label_column": cols[1]})
    summary(comp)  # loads and checks every file before anything is written
    target = Path(args.out)
    if target.exists() and not args.force:
        raise FkaggleError("exists; pass --force to replace it", target)
    write_config(comp, target)
    print(f"wrote {target}")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fkaggle", description="Win Kaggle-style Fashion-MNIST competitions.")
    p.add_argument("--version", action="version", version=f"fkaggle {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="load and check competition data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    check = dsub.add_parser("check", help="load, validate and summarize train/test files; write a sample grid PNG")
    _data_options(check)
    check.add_argument("--folds", type=int, default=5, help="check every class has at least this many samples (default 5)")
    check.add_argument("--png", default="oof/data-check/samples.png", help="where to write the sample grid")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_data_check)

    init = sub.add_parser("init", help="write a competition config from files it has checked")
    init.add_argument("--train", required=True)
    init.add_argument("--train-labels")
    init.add_argument("--test")
    init.add_argument("--test-labels")
    init.add_argument("--sample-submission")
    init.add_argument("--slug", help="Kaggle competition slug")
    init.add_argument("--name", default="custom")
    init.add_argument("--format", choices=["auto", "csv", "npy", "npz", "idx"])
    init.add_argument("--out", default="competition/competition.toml")
    init.add_argument("--force", action="store_true")
    init.set_defaults(func=cmd_init)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FkaggleError as exc:
        print(f"fkaggle: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fkaggle: interrupted (finished folds and epochs are kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

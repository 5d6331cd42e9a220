"""`fkaggle`: a thin argument parser over the library. No work is done here.

Every `FkaggleError` becomes one line on stderr and exit status 2. Heavy imports
(torch, kaggle) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from fmnist_kaggle import __version__
from fmnist_kaggle.errors import FkaggleError


def _logger(args: argparse.Namespace) -> Any:
    """Progress lines go to stderr when stdout carries --json."""
    return (lambda msg: print(msg, file=sys.stderr)) if getattr(args, "json", False) else print


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
        comp = dataclasses.replace(comp, id_column=cols[0], label_column=cols[1])
    summary(comp)  # loads and checks every file before anything is written
    target = Path(args.out)
    if target.exists() and not args.force:
        raise FkaggleError("exists; pass --force to replace it", target)
    write_config(comp, target)
    print(f"wrote {target}")
    return 0


# ----------------------------------------------------------------------------- training


def cmd_models(args: argparse.Namespace) -> int:
    from fmnist_kaggle.models import count_params, create_model, list_models

    rows = []
    for name in list_models():
        k = 5 if name.startswith("keras_model") else 10
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


def _model_kwargs(pairs: list[str] | None) -> dict[str, Any]:
    from fmnist_kaggle.config import parse_value

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise FkaggleError(f"--model-arg expects KEY=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def _train_config(args: argparse.Namespace):
    from fmnist_kaggle.config import build_config

    kwargs = _model_kwargs(args.model_arg)
    if args.pretrained:
        kwargs["pretrained"] = args.pretrained
    if args.freeze_backbone:
        kwargs["freeze_backbone"] = True
    if args.input_size:
        kwargs["input_size"] = args.input_size
    return build_config(
        recipe=args.recipe,
        config_file=args.config,
        model=args.model, model_kwargs=kwargs, folds=args.folds, fold_seed=args.fold_seed, seeds=_parse_ints(args.seeds),
        subset=args.subset, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, loss=args.loss, augment=args.augment, augment_backend=args.augment_backend,
        tta=args.tta, patience=args.patience, normalize=args.normalize, amp=args.amp, compile=args.compile or None,
        device=args.device, num_workers=args.num_workers,
    )  # fmt: skip


def cmd_fold_train(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import fold_train

    cfg = _train_config(args)
    comp = _competition(args)
    manifest = fold_train(
        comp, cfg, run=args.run, workdir=args.workdir, only_folds=_parse_ints(args.fold),
        overwrite=args.overwrite, progress=not args.no_progress, recipe=args.recipe, log=_logger(args),
    )  # fmt: skip
    if args.json:
        _print_json({k: manifest.get(k) for k in ("run", "complete", "missing_folds", "cv", "test_metrics")})
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import run_status

    m = run_status(args.run, args.workdir)
    if args.json:
        _print_json({k: m.get(k) for k in ("run", "complete", "fold_status", "missing_folds", "cv", "test_metrics")})
        return 0
    print(f"run {m['run']}: {m['model']}, {m['data']['folds']} folds, {'complete' if m['complete'] else 'incomplete'}")
    by_fold = {fm["fold"]: fm for fm in m["fold_metrics"]}
    for f, s in m["fold_status"].items():
        extra = f"  acc {by_fold[int(f)]['acc']:.4f}  logloss {by_fold[int(f)]['logloss']:.4f}" if int(f) in by_fold else ""
        print(f"  fold {f}: {s}{extra}")
    if m["missing_folds"]:
        print(f"missing folds: {','.join(map(str, m['missing_folds']))}  (fkaggle fold-train ... --fold {','.join(map(str, m['missing_folds']))})")
    if m.get("cv"):
        print(f"CV accuracy {m['cv']['acc']:.4f}  log-loss {m['cv']['logloss']:.4f}")
    return 0 if m["complete"] else 1


# ----------------------------------------------------------------------------- scoring, blending, submitting


def cmd_cv(args: argparse.Namespace) -> int:
    from fmnist_kaggle.runs import load_run
    from fmnist_kaggle.scoring import cv, format_cv

    runs = [load_run(r, args.workdir) for r in args.runs]
    names = runs[0].manifest["data"]["class_names"]
    result = cv(runs, names, png_dir=Path(args.workdir) / "oof" / "cv")
    if args.json:
        _print_json(result)
    else:
        print(format_cv(result))
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
    from fmnist_kaggle.tracking import make_submission

    name = args.name or ("blend-" + args.method if len(args.runs) > 1 else args.runs[0].rstrip("/").split("/")[-1])
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
    print(f"wrote {res['csv']} and {res['json']}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submission import validate_file

    problems = validate_file(args.submission, _competition(args))
    if args.json:
        _print_json({"file": args.submission, "valid": not problems, "problems": problems})
        return 0 if not problems else 2
    if problems:
        for p in problems:
            print(f"{args.submission}: {p}", file=sys.stderr)
        return 2
    print(f"{args.submission}: valid")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from fmnist_kaggle.tracking import submit_file

    res = submit_file(_competition(args), args.submission, args.message, slug=args.slug, dry_run=args.dry_run, workdir=args.workdir)
    if args.json:
        _print_json(res)
    elif res.get("dry_run"):
        print(f"{args.submission}: valid; dry run, not uploaded to {res['slug']}")
    else:
        print(f"submitted {res['file']} to {res['slug']} (ref {res['ref']}): {res['reply']}")
    return 0


def cmd_submissions(args: argparse.Namespace) -> int:
    from fmnist_kaggle.tracking import submissions_table

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

    slug = args.slug or _competition(args).slug
    if not slug:
        raise FkaggleError("no Kaggle competition slug: pass --slug or set `slug` in the competition config")
    rows = kaggle_client.leaderboard(slug, top=args.top)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['rank']:>4}  {str(r['team'])[:30]:<30} {r['score']}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from fmnist_kaggle.sweep import format_table, parse_grid, parse_ranges, run_sweep

    base = _train_config(args)
    models = [m for spec in (args.model or [base.model]) for m in spec.split(",") if m]
    name = args.name or "sweep"
    devices = [d for d in args.device.split(",")] if args.device else None
    result = run_sweep(
        _competition(args), base, name, models, parse_grid(args.grid), parse_ranges(args.range), trials=args.trials,
        use_optuna=args.optuna, devices=devices, workdir=args.workdir, progress=not args.no_progress, seed=args.search_seed,
        log=_logger(args),
    )  # fmt: skip
    if args.json:
        _print_json(result)
        return 0
    print(format_table(result))
    print(f"table: {result['table_csv']} and {result['markdown']}; plot: {result['png']}; best config: {result['best_config']}")
    return 0


def _train_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    g = p.add_argument_group("training (flags override --recipe and --config)")
    g.add_argument("--recipe", help="preset bundle: cpu, strong, report000..report004")
    g.add_argument("--config", help="TOML file with a [train] table (see `fkaggle sweep` best configs)")
    g.add_argument("--model", action="append" if sweep else "store", help="registry name or timm:<name> (see `fkaggle models`)" + ("; repeat or comma-separate to compare models" if sweep else ""))
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model keyword, e.g. dropout3=0.3, width=32, act=tanh")
    g.add_argument("--pretrained", help="local weights file for a timm: model")
    g.add_argument("--freeze-backbone", action="store_true", help="train only the classifier of a timm: model")
    g.add_argument("--input-size", type=int, help="timm: models: pad/resize 28x28 inputs to this size")
    g.add_argument("--folds", type=int)
    g.add_argument("--fold-seed", type=int)
    g.add_argument("--seeds", help="comma-separated seeds; each fold is trained once per seed and averaged")
    g.add_argument("--subset", type=int, help="train on a stratified subset of N rows (quick experiments)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"])
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=["constant", "cosine", "onecycle"])
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--loss", choices=["softmax", "sigmoid"])
    g.add_argument("--augment", choices=["none", "jitter", "cropflip", "strong", "custom"])
    g.add_argument("--augment-backend", choices=["auto", "tensor", "albumentations"])
    g.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="hflip test-time augmentation")
    g.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    g.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"])
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:1 ..." + ("; a list runs trials in parallel, one per device" if sweep else ""))
    g.add_argument("--num-workers", type=int)


# ----------------------------------------------------------------------------- parser


def _command(sub: Any, name: str, help: str, func: Any, *, data: bool = False, workdir: bool = False, json: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    if data:
        _data_options(p)
    if workdir:
        p.add_argument("--workdir", default=".", help="competition workspace holding oof/ and submissions/ (default .)")
    if json:
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fkaggle", description="Win Kaggle-style Fashion-MNIST competitions.")
    p.add_argument("--version", action="version", version=f"fkaggle {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="load and check competition data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    check = _command(dsub, "check", "load, validate and summarize train/test files; write a sample grid PNG", cmd_data_check, data=True)
    check.add_argument("--folds", type=int, default=5, help="check every class has at least this many samples (default 5)")
    check.add_argument("--png", default="oof/data-check/samples.png", help="where to write the sample grid")

    init = _command(sub, "init", "write a competition config from files it has checked", cmd_init, json=False)
    init.add_argument("--train", required=True)
    for opt in ("--train-labels", "--test", "--test-labels", "--sample-submission"):
        init.add_argument(opt)
    init.add_argument("--slug", help="Kaggle competition slug")
    init.add_argument("--name", default="custom")
    init.add_argument("--format", choices=["auto", "csv", "npy", "npz", "idx"])
    init.add_argument("--out", default="competition/competition.toml")
    init.add_argument("--force", action="store_true")

    _command(sub, "models", "list registered models with parameter counts", cmd_models)

    ft = _command(sub, "fold-train", "stratified k-fold training: OOF logits + fold-averaged test logits", cmd_fold_train, data=True, workdir=True)
    _train_options(ft)
    ft.add_argument("--run", help="run name (default: model-recipe-kK-confighash)")
    ft.add_argument("--fold", help="only these folds, e.g. 0,2 (shard a run over machines)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run whose config differs")
    ft.add_argument("--no-progress", action="store_true")

    st = _command(sub, "status", "which folds of a run are done, partial or missing", cmd_status, workdir=True)
    st.add_argument("run")

    sw = _command(sub, "sweep", "cross-validated grid / random / Optuna search; every trial is a run", cmd_sweep, data=True, workdir=True)
    _train_options(sw, sweep=True)
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="values to try (config keys or model keywords)")
    sw.add_argument("--range", action="append", metavar="KEY=LO:HI[:log][:int]", help="random/Optuna search range")
    sw.add_argument("--trials", type=int, default=0, help="random search (or Optuna) with N trials instead of the full grid")
    sw.add_argument("--optuna", action="store_true", help="Optuna TPE search (needs optuna installed)")
    sw.add_argument("--search-seed", type=int, default=0)
    sw.add_argument("--name", help="sweep name: results in oof/sweeps/NAME.csv")
    sw.add_argument("--no-progress", action="store_true")

    cvp = _command(sub, "cv", "offline CV report of runs: metrics per fold and class, confusion, correlation", cmd_cv, workdir=True)
    cvp.add_argument("runs", nargs="+")

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

"""What the command modules share: option groups built from the library's registries and
config fields, the competition and executor from parsed options, and the "JSON or text" output."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

from fmnist_kaggle import tracking
from fmnist_kaggle.data.formats import format_choices
from fmnist_kaggle.durations import parse_duration
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors import executor_names, make_executor
from fmnist_kaggle.storage.atomic import dumps
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import FIELDS, build_config, default_of, parse_assignments
from fmnist_kaggle.training.deadline import Deadline
from fmnist_kaggle.training.recipes import recipe_names


def print_json(obj: Any) -> None:
    print(dumps(obj))


def emit(args: argparse.Namespace, result: Any, text: Callable[[Any], str]) -> int:
    """A command's result on stdout: JSON alone with --json, else `text(result)` for people."""
    if args.json:
        print_json(result)
    else:
        print(text(result))
    return 0


def time_limit_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-limit",
        help="the command's budget from its start (90s, 20m, 1.5h): a new run is sized to it (fewer steps) or "
        "refused with the limit it needs; no training step starts after it (finished units are kept)",
    )


def time_limit(args: argparse.Namespace, started: float):
    """The --time-limit as a Deadline counted from `started` (None without one)."""
    if getattr(args, "time_limit", None) is None:
        return None
    return Deadline.at_time(started + parse_duration(args.time_limit), started=started)


def text_table(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """Rows as aligned columns, each as wide as its widest cell (nothing cut); numbers to 4 places."""
    cell = lambda v: "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[cell(r.get(k)) for k in keys] for r in rows]
    widths = [max([len(k), *(len(c[i]) for c in cells)]) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(f"{v:<{w}}" for v, w in zip(values, widths, strict=True)).rstrip()  # noqa: E731
    return [line(keys), *(line(c) for c in cells)]


def progress(args: argparse.Namespace) -> bool:
    return not (getattr(args, "no_progress", False) or args.quiet)


def data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (explicit paths override the competition config)")
    g.add_argument(
        "--competition", help="competition TOML (default competition/competition.toml or $FKAGGLE_COMPETITION)"
    )
    g.add_argument("--train", help="training file (CSV, NPY, NPZ or IDX)")
    g.add_argument("--train-labels", help="separate labels file for --train (IDX labels, y .npy)")
    g.add_argument("--test", help="test file")
    g.add_argument("--test-labels", help="known test labels, for offline scoring")
    g.add_argument("--sample-submission", help="the competition's sample submission CSV")
    g.add_argument("--format", choices=format_choices(), help="force a format (default auto)")


def competition(args: argparse.Namespace):
    from fmnist_kaggle.data.competition import resolve_competition

    return resolve_competition(
        competition=args.competition,
        train=args.train,
        test=args.test,
        sample_submission=args.sample_submission,
        format=args.format,
        train_labels=args.train_labels,
        test_labels=args.test_labels,
    )


def run_data(args: argparse.Namespace):
    """The competition the data options name; None when none is given, so a run's images come
    from where the run recorded its data came from (checked by fingerprint)."""
    given = any(
        getattr(args, k, None) is not None
        for k in ("competition", "train", "train_labels", "test", "test_labels", "sample_submission")
    )
    return competition(args) if given or os.environ.get("FKAGGLE_COMPETITION") else None


def parse_ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise FkaggleError(f"expected comma-separated integers, got {text!r}") from None


def int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def train_config(args: argparse.Namespace, model: str | None = None):
    """TrainConfig from --recipe < --config < flags; every flag is a TrainConfig field."""
    kwargs = parse_assignments(args.model_arg, "--model-arg")
    for key in ("pretrained", "freeze_backbone", "input_size"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    given = {
        name: getattr(args, name) for name, f in FIELDS.items() if f.metadata["cli"] and name not in ("recipe", "model")
    }
    model = model or (args.model if isinstance(args.model, str) else None)
    if model and ":" in model and not model.startswith("timm:"):  # named on this command line: trusted
        from fmnist_kaggle.models.registry import import_model

        import_model(model)
    return build_config(recipe=args.recipe, config_file=args.config, model=model, model_kwargs=kwargs, **given)


def executor(args: argparse.Namespace) -> Any:
    return make_executor(args.executor, args.address, args.cpus_per_task, progress=progress(args))


def train_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """One option per TrainConfig field, from the field's metadata (help, choices, type)."""
    g = p.add_argument_group("training (flags override --recipe and --config)")
    g.add_argument("--config", help="TOML file with a [train] table (see `fkaggle sweep` best configs)")
    for name, f in FIELDS.items():
        meta, default = f.metadata, default_of(name)
        if not meta["cli"]:
            continue
        kw: dict[str, Any] = {
            "default": None,
            "help": f"{meta['help']} (default {default})" if default not in (None, [], {}) else meta["help"],
        }
        if name == "recipe":
            kw["choices"] = list(recipe_names())
        elif name == "model" and sweep:
            kw.update(action="append", help=meta["help"] + "; repeat or comma-separate to compare models")
        elif isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kw["type"] = int_list
        elif default is not None and name != "device":
            kw["type"] = type(default)
        if meta["choices"]:
            kw["choices"] = meta["choices"]
        g.add_argument("--" + name.replace("_", "-"), **kw)
    executor_options(p)
    time_limit_option(p)
    m = p.add_argument_group("model keywords (stored in model_kwargs)")
    m.add_argument(
        "--model-arg", action="append", metavar="KEY=VALUE", help="model keyword, e.g. dropout3=0.3, width=32, act=tanh"
    )
    m.add_argument("--pretrained", help="local weights file for a timm: model")
    m.add_argument("--freeze-backbone", action="store_true", help="train only the classifier of a timm: model")
    m.add_argument("--input-size", type=int, help="timm: models: pad/resize 28x28 inputs to this size")


def executor_options(p: argparse.ArgumentParser) -> None:
    x = p.add_argument_group("where units train: each (fold, seed) is one unit")
    x.add_argument(
        "--executor",
        choices=executor_names(),
        default="local",
        help="local: in this process (default); ray: Ray tasks, embedded on this machine or on --address",
    )
    x.add_argument(
        "--address", help="join this Ray cluster (auto or HOST:PORT; default $RAY_ADDRESS, else an embedded instance)"
    )
    x.add_argument(
        "--cpus-per-task",
        type=int,
        default=1,
        help="Ray: CPUs (and torch threads) per unit when the cluster has no GPUs (default 1)",
    )


def command(
    sub: Any,
    name: str,
    help: str,
    func: Any,
    *,
    data: bool = False,
    workdir: bool = False,
    json: bool = True,
    track: bool = False,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    verbosity(p)
    if data:
        data_options(p)
    if workdir:
        p.add_argument("--workdir", default=".", help="competition workspace holding oof/ and submissions/ (default .)")
    if track:
        p.add_argument(
            "--track",
            nargs="?",
            const="",
            metavar="URI",
            help="log to MLflow: URI, else $FKAGGLE_TRACKING_URI or $MLFLOW_TRACKING_URI, "
            "else the workspace's mlflow.db (`mlflow ui` there); either variable alone "
            "turns it on (needs fmnist_kaggle[track])",
        )
    if json:
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def start_tracking(args: argparse.Namespace) -> None:
    """MLflow tracking for this command, when --track or the environment asks for it."""
    if not hasattr(args, "track"):
        return
    ws = Workspace(getattr(args, "workdir", "."))
    if args.track is None:
        tracking.enable_from_environment(ws.tracking_db, ws.tracking_artifacts)
    else:
        uri = tracking.enable(args.track or None, ws.tracking_db, ws.tracking_artifacts)
        logging.getLogger("fmnist_kaggle").info(f"tracking to MLflow at {uri}")


def verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only warnings and errors on stderr; no progress bars",
    )
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug log lines on stderr")

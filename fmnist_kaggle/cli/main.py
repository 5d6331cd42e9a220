"""`fkaggle`: a thin argument parser over the library. No work is done here.

Commands live in `cli/commands/`, one module per group, each holding its commands and their
parser block (`register(sub)`); adding a command touches one of those files, or adds one.

Every `FkaggleError` (and any OS error on a named file) becomes one line on stderr and
exit status 2. Humans read stderr (log lines, progress bars); stdout carries results
only, and with --json nothing but JSON. Heavy imports (torch, kaggle) happen inside
the commands that need them (light internal modules are imported at the top).
"""

from __future__ import annotations

import argparse
import logging
import sys

from fmnist_kaggle import registry
from fmnist_kaggle._version import __version__
from fmnist_kaggle.cli import commands
from fmnist_kaggle.cli.common import start_tracking
from fmnist_kaggle.console import BarSafeHandler
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import files


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fkaggle", description="Win Kaggle-style Fashion-MNIST competitions.")
    p.add_argument("--version", action="version", version=f"fkaggle {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr; no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug log lines on stderr")
    sub = p.add_subparsers(dest="command", required=True)
    groups = [registry.load(commands.__name__, name, "command group") for name in registry.names(commands.__name__)]
    for group in sorted(groups, key=lambda g: g.ORDER):
        group.register(sub)
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = BarSafeHandler()  # a log line never starts on a progress bar's line
    root = logging.getLogger("fmnist_kaggle")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    _, problem = files.max_bytes_setting()
    if problem:
        print(f"fkaggle: error: {problem}", file=sys.stderr)
        return 2
    try:
        start_tracking(args)
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
        print(
            "fkaggle: interrupted (finished (fold, seed) units and epochs are kept; re-run to resume)", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`fkaggle submit`, `submissions`, `leaderboard`: the Kaggle round trip."""

from __future__ import annotations

import argparse
from typing import Any

from fmnist_kaggle.cli.common import command, competition, emit
from fmnist_kaggle.submit import kaggle_client

ORDER = 50  # place in `fkaggle --help`: the pipeline's order


def cmd_submit(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submit.uploads import submit_file

    res = submit_file(competition(args), args.submission, args.message, slug=args.slug, dry_run=args.dry_run, workdir=args.workdir)
    return emit(args, res, lambda r: f"{args.submission}: valid; dry run, not uploaded to {r['slug']}" if r.get("dry_run") else f"submitted {r['file']} to {r['slug']} (ref {r['ref']}): {r['reply']}")


def cmd_submissions(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submit.uploads import submissions_table

    return emit(args, submissions_table(competition(args), slug=args.slug, workdir=args.workdir, fetch=not args.local), _submissions_text)


def _submissions_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'time':<26} {'file':<28} {'ref':>8} {'cv_acc':>7} {'status':<9} {'public':>8}  message"]
    for r in rows:
        cv = f"{float(r['cv_acc']):.4f}" if r.get("cv_acc") not in (None, "") else "-"
        lb = str(r["public_score"]) if r.get("public_score") not in (None, "") else "-"
        lines.append(f"{str(r['time'])[:26]:<26} {str(r['file'])[:28]:<28} {str(r['ref']):>8} {cv:>7} {str(r['status']):<9} {lb:>8}  {r.get('message') or ''}")
    return "\n".join(lines)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    rows = kaggle_client.leaderboard(competition(args).require_slug(args.slug), top=args.top)
    return emit(args, rows, lambda rows: "\n".join(f"{r['rank']:>4}  {str(r['team'])[:30]:<30} {r['score']}" for r in rows))


def register(sub: Any) -> None:
    sm = command(sub, "submit", "validate and upload a submission with the official kaggle client", cmd_submit, data=True, workdir=True, track=True)
    sm.add_argument("submission")
    sm.add_argument("-m", "--message", required=True)
    sm.add_argument("--slug", help="Kaggle competition slug (default: the config's)")
    sm.add_argument("--dry-run", action="store_true", help="validate only")

    ss = command(sub, "submissions", "local upload records with Kaggle status and public score (CV vs LB)", cmd_submissions, data=True, workdir=True, track=True)
    ss.add_argument("--slug")
    ss.add_argument("--local", action="store_true", help="do not contact Kaggle")

    lb = command(sub, "leaderboard", "the top of the competition's public leaderboard", cmd_leaderboard, data=True)
    lb.add_argument("--slug")
    lb.add_argument("--top", type=int, default=20)

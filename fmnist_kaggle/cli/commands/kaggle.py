"""`fkaggle submit`, `submissions`, `leaderboard`: the Kaggle round trip."""

from __future__ import annotations

import argparse
from typing import Any

from fmnist_kaggle.cli.common import command, competition, emit
from fmnist_kaggle.submit import kaggle_client

ORDER = 50  # place in `fkaggle --help`: the pipeline's order


def cmd_submit(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submit.uploads import submit_file

    res = submit_file(
        competition(args),
        args.submission,
        args.message,
        slug=args.slug,
        dry_run=args.dry_run,
        workdir=args.workdir,
        force=args.force,
    )
    return emit(args, res, _submit_text)


def _submit_text(r: dict[str, Any]) -> str:
    if r.get("dry_run"):
        return f"{r['file']}: valid; dry run, not uploaded to {r['slug']}"
    again = "  (the same content as an earlier upload: --force)" if r.get("resubmitted") else ""
    loses = f"\nnote: {r['warning']}" if r.get("warning") else ""
    return (
        f"submitted {r['file']} to {r['slug']} (ref {r['ref']}): {r['reply']}{again}\n{r['left_today']} "
        f"submission(s) left today{loses}"
    )


def cmd_submissions(args: argparse.Namespace) -> int:
    from fmnist_kaggle.submit.uploads import submissions_table

    return emit(
        args,
        submissions_table(competition(args), slug=args.slug, workdir=args.workdir, fetch=not args.local),
        _submissions_text,
    )


def _submissions_text(res: dict[str, Any]) -> str:
    lines = [
        f"{'time':<26} {'file':<28} {'ref':>8} {'cv_acc':>7} {'status':<9} {'public':>8}  {'file now':<20} message"
    ]
    for r in res["submissions"]:
        cv = f"{float(r['cv_acc']):.4f}" if r.get("cv_acc") not in (None, "") else "-"
        lb = f"{float(r['public_score']):.4f}" if r.get("public_score") not in (None, "") else "-"  # as CV: 0.9000
        lines.append(
            f"{str(r['time'])[:26]:<26} {str(r['file'])[:28]:<28} {str(r['ref']):>8} "
            f"{cv:>7} {str(r['status']):<9} {lb:>8}  {r.get('file_check') or '-':<20} "
            f"{r.get('message') or ''}"
        )
    if res["limits"] is not None:
        lines.append(f"{res['left_today']} submission(s) left today ({res['limits']['num_today']} made today)")
    return "\n".join(lines)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    rows = kaggle_client.leaderboard(competition(args).require_slug(args.slug), top=args.top)
    return emit(args, rows, _leaderboard_text)


def _leaderboard_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'rank':>4}  {'team':<30} {'score':<10}"]
    for before, r in zip([None, *rows], rows, strict=False):
        if before is not None and r["rank"] > before["rank"] + 1:
            lines.append(f"{'...':>4}")
        lines.append(
            f"{r['rank']:>4}  {str(r['team'])[:30]:<30} {r['score']!s:<10}{'  <- your team' if r['mine'] else ''}"
        )
    return "\n".join(lines)


def register(sub: Any) -> None:
    sm = command(
        sub,
        "submit",
        "validate and upload a submission with the official kaggle client",
        cmd_submit,
        data=True,
        workdir=True,
        track=True,
    )
    sm.add_argument("submission")
    sm.add_argument("-m", "--message", required=True)
    sm.add_argument("--slug", help="Kaggle competition slug (default: the config's)")
    sm.add_argument("--dry-run", action="store_true", help="validate only")
    sm.add_argument("--force", action="store_true", help="upload even when the same content was submitted before")

    ss = command(
        sub,
        "submissions",
        "local upload records with Kaggle status and public score (CV vs LB)",
        cmd_submissions,
        data=True,
        workdir=True,
        track=True,
    )
    ss.add_argument("--slug")
    ss.add_argument("--local", action="store_true", help="do not contact Kaggle")

    lb = command(sub, "leaderboard", "the top of the competition's public leaderboard", cmd_leaderboard, data=True)
    lb.add_argument("--slug")
    lb.add_argument("--top", type=int, default=20)

"""`fold-train --time-limit`'s printed estimate against the wall, and how much of a limit a run
sized to it uses, on the real Fashion-MNIST (issue 48's targets: within 25%, at least 80%).

    python bench/estimates.py [--recipes fast,fast-aug,cpu] [--rows 3000,60000] [--limits 60s,150s] [--out F]

Each case runs the command a user types (`fkaggle fold-train --recipe R --subset N --time-limit L
--amp off`) in a fresh workspace, timed from outside. Reported: the estimate it printed for its
units, the units' own seconds (from the fold summaries), the command's wall, and wall / limit.
A run that fits whole is not sized, so its use of the limit says nothing (marked "whole").
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ESTIMATE = re.compile(r"estimated (?:(\d+):)?(\d+):(\d+) for (\d+) unit")  # h:mm:ss or m:ss


def seconds_of(match: re.Match[str]) -> float:
    return 3600 * float(match.group(1) or 0) + 60 * float(match.group(2)) + float(match.group(3))


def case(recipe: str, rows: int, limit: str, amp: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="fk-estimates-") as work:
        cmd = [sys.executable, "-m", "fmnist_kaggle.cli", "fold-train", "--recipe", recipe, "--time-limit", limit]
        cmd += [
            "--amp",
            amp,
            "--workdir",
            work,
            "--no-progress",
            "--competition",
            str(REPO / "competition/competition.toml"),
        ]
        cmd += ["--subset", str(rows)] if rows < 60_000 else []
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        found = ESTIMATE.search(done.stderr)
        units = [json.loads(p.read_text()) for p in Path(work).glob("oof/*/fold_*/seed_*.json")]
        unit_s = sum(u.get("unit_seconds", 0.0) + u.get("times", {}).get("write", 0.0) for u in units)
        phases: dict[str, float] = {}
        for u in units:
            for k, v in u.get("times", {}).items():
                phases[k] = round(phases.get(k, 0.0) + v, 1)
    row = {
        "recipe": recipe,
        "rows": rows,
        "limit": limit,
        "rc": done.returncode,
        "estimate_s": seconds_of(found) if found else None,
        "sized": "sized to" in done.stderr,
        "units": len(units),
        "units_s": round(unit_s, 1),
        "wall_s": round(wall, 1),
        "phases_s": phases,  # where the units' seconds went (train, validate, predict, setup, ...)
    }
    if done.returncode:
        row["error"] = done.stderr.strip().splitlines()[-1][:300]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="fast,fast-aug,cpu")
    ap.add_argument("--rows", default="3000,60000")
    ap.add_argument("--limits", default="60s,150s", help="one per --rows")
    ap.add_argument("--amp", default="off")
    ap.add_argument("--out")
    args = ap.parse_args()
    from fmnist_kaggle.durations import parse_duration

    print(f"{platform.processor() or platform.machine()}; fp32 unless --amp says otherwise ({args.amp})", flush=True)
    print(f"{'recipe':<9} {'rows':>6} {'limit':>6} {'estimate':>9} {'units s':>8} {'est/u':>6} {'wall':>6} {'used':>6}")
    rows = []
    for recipe in args.recipes.split(","):
        for n, limit in zip(map(int, args.rows.split(",")), args.limits.split(","), strict=True):
            r = case(recipe, n, limit, args.amp)
            rows.append(r)
            est, units_s = r["estimate_s"], r["units_s"]
            ratio = f"{est / units_s:.2f}" if est and units_s else "-"
            used = f"{r['wall_s'] / parse_duration(limit):.0%}" + ("" if r["sized"] else " whole")
            print(
                f"{recipe:<9} {n:>6} {limit:>6} {est if est is not None else '-':>9} {units_s:>8} {ratio:>6} "
                f"{r['wall_s']:>6} {used:>6}" + (f"  rc={r['rc']}: {r.get('error')}" if r["rc"] else ""),
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

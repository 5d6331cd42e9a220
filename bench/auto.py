"""`fkaggle auto` on the real Fashion-MNIST under time limits: is each limit honoured, and what
does it buy (CV and official-test accuracy of the chosen submission)?

    python bench/auto.py --limits 5m,20m,60m [--workdir /tmp/auto-bench] [--device cuda] [--out results.json]
    python bench/auto.py --limits 2m --subset 800 --reference   # small data, beside a hand-run seed000_bncnn

Each limit runs the command a user types, in a fresh workspace, and is timed from outside
(interpreter start included). Targets (issue 36): wall <= limit + 5% and at least 90% of the
limit used; on a --subset of 800 rows at 2 minutes, at least the CV of a 3-fold x 3-epoch
`seed000_bncnn` run on the same rows (--reference trains it with `fkaggle fold-train`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fkaggle(*args: str) -> list[str]:
    config = str(REPO / "competition/competition.toml")
    return [sys.executable, "-m", "fmnist_kaggle.cli", *args, "--competition", config]


def run(limit: str, workdir: Path, device: str | None, amp: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    from fmnist_kaggle.search.autopilot import parse_time_limit

    cmd = fkaggle("auto", "--time-limit", limit, "--workdir", str(workdir), "--no-progress", "--json", *extra)
    cmd += ["--device", device] if device else []
    cmd += ["--amp", amp] if amp else []
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    (workdir / "stderr.txt").write_text(res.stderr)
    seconds = parse_time_limit(limit)
    row = {
        "limit": limit,
        "limit_s": seconds,
        "wall_s": round(wall, 1),
        "over_s": round(wall - seconds, 1),
        "exit": res.returncode,
    }
    row["honoured"] = wall <= seconds * 1.05
    row["used"] = round(wall / seconds, 3)  # share of the limit spent (target: at least 0.9)
    if res.returncode == 0:
        out = json.loads(res.stdout)
        runs = [r for r in out["leaderboard"] if r["kind"] == "run"]
        row.update(
            chosen=out["chosen"]["label"],
            cv_acc=out["cv"]["acc"],
            test_acc=(out.get("test") or {}).get("acc"),
            runs=", ".join(f"{r['name']} {r['model']} {r['epochs']}ep {r['status']} CV {r['cv_acc']}" for r in runs),
            train_s=out.get("train_s"),
            stopped=out.get("stopped"),
        )
    else:
        row["error"] = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
    return row


def reference(workdir: Path, subset: int, amp: str | None) -> dict:
    """The small-data yardstick: `seed000_bncnn`, 3 folds x 3 epochs, on the same stratified subset."""
    cmd = fkaggle("fold-train", "--model", "seed000_bncnn", "--folds", "3", "--epochs", "3", "--subset", str(subset))
    cmd += ["--run", "reference", "--workdir", str(workdir), "--no-progress", "--json"]
    cmd += ["--amp", amp] if amp else []
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    return {"reference": "seed000_bncnn 3 folds x 3 epochs", "wall_s": round(time.monotonic() - t0, 1), "cv": out["cv"]}


def _cpu() -> str:
    import re

    found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return found.group(1).strip() if found else platform.processor() or "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limits", default="5m,20m")
    ap.add_argument("--workdir", help="parent of one fresh workspace per limit (default a temporary folder)")
    ap.add_argument("--device", help="passed to fkaggle auto (default auto)")
    ap.add_argument("--amp", help="passed to fkaggle auto (off: fp32, as a CPU without bf16 trains)")
    ap.add_argument("--out", help="also write the rows as JSON here")
    ap.add_argument("--subset", type=int, default=0, help="a stratified subset of N training rows (small data)")
    ap.add_argument("--folds", type=int, help="passed to fkaggle auto (default 5)")
    ap.add_argument("--reference", action="store_true", help="also train the small-data yardstick (needs --subset)")
    args = ap.parse_args()
    parent = Path(args.workdir or tempfile.mkdtemp(prefix="fkaggle-auto-bench-"))
    import torch

    hw = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available() and args.device != "cpu"
        else f"{_cpu()}, {os.cpu_count()} cores, amp {args.amp or 'auto'}"
    )
    rows = []
    for limit in args.limits.split(","):
        workdir = parent / f"limit-{limit}"
        workdir.mkdir(parents=True, exist_ok=False)
        extra = ("--subset", str(args.subset)) if args.subset else ()
        extra += ("--folds", str(args.folds)) if args.folds else ()
        rows.append(run(limit, workdir, args.device, args.amp, extra))
        if args.reference:
            rows[-1]["reference"] = reference(workdir, args.subset, args.amp)
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    rows_used = f"a stratified subset of {args.subset} training rows" if args.subset else "all training rows"
    print(f"fkaggle auto on the real Fashion-MNIST, {rows_used} ({hw}); workspaces in {parent}\n")
    print(
        "| limit | wall | used | honoured | chosen | CV accuracy | official test "
        "| runs |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        test = f"{r['test_acc']:.4f}" if r.get("test_acc") is not None else "-"
        cv = f"{r['cv_acc']:.4f}" if "cv_acc" in r else r.get("error", "")
        print(
            f"| {r['limit']} | {r['wall_s'] / 60:.1f} min | {100 * r['used']:.0f}% "
            f"| {'yes' if r['honoured'] else 'NO'} "
            f"| {r.get('chosen', '-')} | {cv} | {test} | {r.get('runs', '')} |"
        )
        if "reference" in r:
            ref = r["reference"]
            print(f"| reference | {ref['wall_s'] / 60:.1f} min | | | {ref['reference']} | {ref['cv']['acc']:.4f} | | |")
    if args.out:
        Path(args.out).write_text(json.dumps({"hardware": hw, "subset": args.subset, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

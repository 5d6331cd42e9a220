"""`fkaggle auto` on the real Fashion-MNIST under time limits: is each limit honoured, and what
does it buy (CV and official-test accuracy of the chosen submission)?

    python bench/auto.py --limits 5m,20m,60m [--workdir /tmp/auto-bench] [--device cuda] [--out results.json]

Each limit runs the command a user types, in a fresh workspace, and is timed from outside
(interpreter start included). Targets (issue 36): wall <= limit + 5% and at least 90% of the limit used.
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


def run(limit: str, workdir: Path, device: str | None, amp: str | None = None) -> dict:
    from fmnist_kaggle.search.autopilot import parse_time_limit

    cmd = [
        sys.executable,
        "-m",
        "fmnist_kaggle.cli",
        "auto",
        "--competition",
        str(REPO / "competition/competition.toml"),
        "--time-limit",
        limit,
        "--workdir",
        str(workdir),
        "--no-progress",
        "--json",
    ]
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
        rows.append(run(limit, workdir, args.device, args.amp))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"fkaggle auto on the real Fashion-MNIST ({hw}); workspaces in {parent}\n")
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
    if args.out:
        Path(args.out).write_text(json.dumps({"hardware": hw, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""bench/gpu.sh's summary: one row per step (exit status, seconds, its result line) as a table on
stdout and as JSON, from the steps file and each step's output."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The line that carries each step's result: pytest's tally, fold-train's CV line, a table row.
RESULT = re.compile(
    r"(\d+ (passed|failed|skipped|error)|CV accuracy|^\S+\s+(off|auto|bf16|fp16)\s+\d+\s|img/s|x$|error:)",
    re.IGNORECASE,
)


def summarize(steps_tsv: Path, outputs: Path) -> list[dict]:
    rows = []
    for line in steps_tsv.read_text().splitlines():
        name, rc, seconds = line.split("\t")
        text = (outputs / f"{name}.out").read_text(errors="replace") if (outputs / f"{name}.out").exists() else ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        hits = [ln for ln in lines if RESULT.search(ln)]
        status = "ok" if rc == "0" else ("timed out" if rc in ("124", "137") else f"exit {rc}")
        rows.append({"step": name, "status": status, "seconds": int(seconds), "result": hits[-3:] or lines[-2:]})
    return rows


def main() -> None:
    steps_tsv, outputs, out_json = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    rows = summarize(steps_tsv, outputs)
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    out_json.write_text(json.dumps({"device": device, "torch": torch.__version__, "steps": rows}, indent=2) + "\n")
    print(f"GPU check on {device} (torch {torch.__version__}); full log beside {out_json}")
    print(f"{'step':<24} {'status':<10} {'s':>5}  result")
    for r in rows:
        print(f"{r['step']:<24} {r['status']:<10} {r['seconds']:>5}  {' | '.join(r['result'])[:160]}")
    sys.exit(0 if all(r["status"] == "ok" for r in rows) else 1)


if __name__ == "__main__":
    main()

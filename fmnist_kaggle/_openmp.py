"""torch's OpenMP threads sleep at a barrier instead of spinning: set before torch loads.

GNU OpenMP (torch's Linux CPU wheels) spins a waiting thread 300,000 times by default. Where the
cores are shared (a laptop with a browser open, busy processes beside a session) the thread a
barrier waits for is often descheduled and the spinner burns the slice it needed: beside two busy
processes on 2 cores, training fell to 190-480 img/s from 960-1,000 with `OMP_WAIT_POLICY=PASSIVE`
(bench/threads.py; docs/results.md "A busy machine"), while on a quiet machine the two were within
3%. PASSIVE is the standard OpenMP variable (GNU, LLVM and Intel runtimes read it). A choice the
user made (either variable) wins; once torch has loaded, its runtime has read them, so this is a
no-op then.
"""

from __future__ import annotations

import os
import sys


def set_wait_policy() -> None:
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

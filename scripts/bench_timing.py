"""Timing helpers shared by the side-by-side benchmarks (``bench_iris.py``, ``bench_diamond.py``
and their peer scripts, which run in the peer's virtualenv: standard library only)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from typing import Callable

__all__ = ["median_seconds", "print_result", "run_peer", "speed_ratios", "timed"]


def timed(fn: Callable, repeats: int, label: str, log: Callable[[str], None]):
    """One warm-up call, then ``repeats`` timed calls; returns (wall list, cpu list, last out)."""
    t0 = time.perf_counter()
    out = fn()
    log(f"{label}: warm-up {time.perf_counter() - t0:.3f}s")
    walls, cpus = [], []
    for i in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        log(f"{label}: repeat {i + 1}/{repeats} {walls[-1]:.3f}s wall, {cpus[-1]:.3f}s cpu")
    return walls, cpus, out


def median_seconds(fn: Callable, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up."""
    return statistics.median(timed(fn, repeats, "", lambda _: None)[0])


def run_peer(cmd: list[str]) -> dict:
    """Run a peer benchmark script (same environment: thread settings pass on) and parse the one
    JSON object it prints."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
    if done.returncode != 0:
        raise SystemExit(f"the peer benchmark failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def speed_ratios(ours: dict, peer: dict) -> dict:
    """> 1 means distwm is faster: peer / distwm for times, distwm / peer for ``*_per_s``."""
    return {k: (ours[k] / peer[k] if k.endswith("_per_s") else peer[k] / ours[k]) for k in ours}


def print_result(result: dict, out: str | None) -> None:
    """Print the benchmark's JSON object and, with ``out``, also write it there."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")

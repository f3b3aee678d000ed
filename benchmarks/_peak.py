"""Peak memory and time of one computation, each measured in a fresh subprocess.

Time on the CPU is the process's CPU time (user + system, ``time.process_time``) of a
one-thread process, so that other work on a shared machine does not enter the ratios; the wall
time is kept beside it. On CUDA it is the wall time after synchronising.

On the CPU the peak is the process's resident set: ``getrusage(RUSAGE_SELF).ru_maxrss`` after
the computation minus the current RSS (``/proc/self/statm``) just before it, so it counts what
the computation added at its peak. That is exact when the computation's peak exceeds every
earlier one (``ru_maxrss`` is a high-water mark); :func:`measure` says when it does not. On CUDA
it is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` minus the memory
allocated before. A fresh process per measurement keeps one computation's freed-but-cached
memory out of the next one's number.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

MIB = 2**20
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """The current resident set size in bytes."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * _PAGE


def max_rss() -> int:
    """The high-water mark of the resident set size in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Run ``fn`` once; its seconds, its added peak memory in MiB and how that was measured."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() - before
        return {"seconds": seconds, "peak_mib": peak / MIB, "how": "cuda max_memory_allocated"}
    before, high_before = rss(), max_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    high_after = max_rss()
    return {
        # one thread: CPU seconds are the compute, robust to other processes on the machine
        "seconds": cpu,
        "wall_seconds": seconds,
        "peak_mib": (high_after - before) / MIB,
        # ru_maxrss did not move: the computation stayed below an earlier high-water mark,
        # so peak_mib is only an upper bound
        "how": "rss" if high_after > high_before else "rss (upper bound)",
    }


def seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn``: wall time after synchronising on CUDA, the process's CPU
    time elsewhere (robust to other processes on a shared machine when torch runs one
    thread)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    fn()
    return time.process_time() - start


def in_subprocess(script: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run ``python script *args`` with one thread and return the JSON its last line prints,
    or ``{"error": ...}`` when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])

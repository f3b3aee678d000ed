"""Threads per process for Hessian products: 1 against 2 (or more), on an idle and a busy machine.

Times ``flatscope analyze CKPT --metrics trace --threads T`` as a subprocess (Hutch++ on the
digits CNN ``cnn:width=8``, 512 training images), alone ("idle") and while a second copy of the
same command runs beside it ("busy": two processes share the cores, as under ``pytest -n 2`` or
two analyses at once). Rounds interleave the settings; medians of the wall times are printed
with each setting's ratio to 1 thread. The ``--threads`` default of the command line follows
from this table (see ``flatscope.cli.default_threads``).

    python benchmarks/threads.py [--repeats 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from flatscope.io import save_checkpoint
from flatscope.models.zoo import build_model

MODEL = "cnn:width=8"


def command(checkpoint: Path, out: Path, threads: int) -> list[str]:
    """The timed analysis (trace only, 512 samples, no figures)."""
    return [
        sys.executable, "-m", "flatscope", "analyze", str(checkpoint),
        "--metrics", "trace", "--num-matvecs", "40", "--subset", "512", "--no-figures",
        "--quiet", "--threads", str(threads), "--out", str(out),
    ]  # fmt: skip


def timed(commands: list[list[str]]) -> float:
    """Wall seconds of the first command while the others run beside it."""
    start = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
    processes[0].wait()
    seconds = time.perf_counter() - start
    for process in processes:
        if process.wait() != 0:
            raise RuntimeError(f"{' '.join(commands[0])} failed")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = folder / "cnn.pt"
        model = build_model(MODEL, seed=0)
        save_checkpoint(checkpoint, model, model_spec=MODEL, data_spec="digits")
        times: dict[tuple[str, int], list[float]] = {}
        for repeat in range(args.repeats):
            for threads in args.threads:
                for load, copies in (("idle", 1), ("busy", 2)):
                    runs = [
                        command(checkpoint, folder / f"out-{repeat}-{threads}-{load}-{i}", threads)
                        for i in range(copies)
                    ]
                    times.setdefault((load, threads), []).append(timed(runs))
    print(f"flatscope analyze --metrics trace (40 HVPs, {MODEL}, 512 digits), "
          f"median of {args.repeats}; {torch.get_num_threads()} cores seen by torch")  # fmt: skip
    print(f"{'machine':<8} {'threads':>7} {'seconds':>8} {'vs 1 thread':>12}")
    for load in ("idle", "busy"):
        base = statistics.median(times[(load, args.threads[0])])
        for threads in args.threads:
            seconds = statistics.median(times[(load, threads)])
            print(f"{load:<8} {threads:>7} {seconds:>8.2f} {seconds / base:>12.2f}")


if __name__ == "__main__":
    main()

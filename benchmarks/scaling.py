"""Scaling of one Hessian-vector product with the number of samples and of parameters.

Two sweeps of the zoo's CNN (``cnn:width=w``: three 3x3 conv blocks, ``d`` about ``90 w^2``
parameters, work per sample about proportional to ``d``) on standard normal 1x8x8 images in
ten classes, the data in batches of 256:

- samples: ``n`` = 256 to 4,096 at ``w = 16`` (24,058 parameters);
- parameters: ``d`` from about 10k to 1M (``w`` = 10 to 105) at ``n = 512``.

Each point runs in a fresh subprocess (after the same computations on 8 samples, so that
imports and first-call caches are not counted) and measures, with ``HessianOperator``'s
defaults (graphs kept when they fit its budget):

- ``first HVP``: the first product, which builds the first-order graphs (a forward and a
  differentiable backward pass per batch) and then multiplies: the cost of a product that
  keeps no graph; its peak memory (``benchmarks/_peak.py``: RSS on the CPU,
  ``max_memory_allocated`` on CUDA) is the peak of the operator, kept graphs included;
- ``HVP``: a later product on the kept graphs (median of 3);
- ``trace`` (only with ``--trace-matvecs m > 0``): Hutch++ with ``m`` products on a fresh
  operator, which costs about one first HVP and ``m - 1`` later ones plus ``O(m^2 d)`` linear
  algebra, so it adds little to the HVP columns but ``m`` times their run time.

Times are process CPU seconds with one thread (wall time on CUDA). Points run in
``--repeats`` rounds, the order reversed every other round, and the medians are fitted by least
squares on log-log axes: ``log y = a + b log x``; the exponent ``b`` should be about 1 (linear)
for time and memory in both sweeps. A fixed part (the weights, one batch's buffers, the
interpreter's arenas) bends the fit of all points below 1 where it is not small against the
growing part, so the fit over the three largest points is printed too.

    python benchmarks/scaling.py [--repeats 2] [--device cpu] [--trace-matvecs 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peak import in_subprocess, measure, seconds  # noqa: E402

import flatscope as fs  # noqa: E402

BATCH = 256
SAMPLES = (256, 512, 1024, 2048, 4096)  # at width 16
WIDTHS = (10, 18, 33, 58, 105)  # about 10k, 30k, 100k, 300k, 1M parameters at 512 samples
QUANTITIES = ("first HVP s", "HVP s", "peak MiB", "trace s")


def _operator(width: int, samples: int, device: torch.device) -> fs.HessianOperator:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (samples,), generator=generator)
    batches = [(x[i : i + BATCH].to(device), y[i : i + BATCH].to(device))
               for i in range(0, samples, BATCH)]  # fmt: skip
    model = fs.build_model(f"cnn:width={width}", seed=0)
    return fs.HessianOperator(fs.Objective(model, nn.CrossEntropyLoss(), batches, device=device))


def _probe(op: fs.HessianOperator) -> torch.Tensor:
    return torch.randn(op.shape[0], generator=torch.Generator().manual_seed(1)).to(op.device)


def point(width: int, samples: int, device: torch.device, trace_matvecs: int) -> dict:
    """The measurements of one point (run in a fresh subprocess)."""
    warm = _operator(width, 8, device)
    warm @ _probe(warm)
    op = _operator(width, samples, device)
    v = _probe(op)
    first = measure(lambda: op @ v, device)
    result = {"d": op.shape[0], "first HVP s": first["seconds"], "peak MiB": first["peak_mib"]}
    result["how"] = first["how"]
    result["HVP s"] = statistics.median(seconds(lambda: op @ v, device) for _ in range(3))
    if trace_matvecs:
        fresh = _operator(width, samples, device)
        result["trace s"] = seconds(lambda: fs.trace(fresh, "hutchpp", trace_matvecs), device)
    return result


def exponent(x: list[float], y: list[float]) -> float:
    """The slope ``b`` of the least-squares line ``log y = a + b log x``."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _sweep(args: argparse.Namespace, points: list[tuple[int, int]]) -> dict:
    """Median measurements at each ``(width, samples)`` point over interleaved rounds."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")  # freed blocks go back at once
    runs: dict[tuple[int, int], list[dict]] = {p: [] for p in points}
    for repeat in range(args.repeats):
        for width, samples in points if repeat % 2 == 0 else points[::-1]:
            options = ["--device", args.device, "--trace-matvecs", str(args.trace_matvecs)]
            result = in_subprocess(__file__, "--point", f"{width}:{samples}", *options)
            if "error" in result:
                raise RuntimeError(f"point w={width}, n={samples}: {result['error']}")
            runs[(width, samples)].append(result)
    return {
        p: {
            "d": results[0]["d"],
            "how": results[0]["how"],
            **{q: statistics.median(r[q] for r in results) for q in QUANTITIES if q in results[0]},
        }
        for p, results in runs.items()
    }


def _report(title: str, sweep: dict, against: str) -> None:
    """The sweep's table and the exponent of each quantity against ``against`` (``"samples"``
    or ``"d"``)."""
    print(f"\n## {title}")
    quantities = [q for q in QUANTITIES if q in next(iter(sweep.values()))]
    header = " ".join(f"{q:>12s}" for q in quantities)
    print(f"{'width':>6s} {'samples':>8s} {'d':>10s} {header}  memory by")
    for (width, samples), row in sweep.items():
        values = " ".join(f"{row[q]:12.3f}" for q in quantities)
        print(f"{width:>6d} {samples:>8,} {row['d']:>10,} {values}  {row['how']}")
    xs = [samples if against == "samples" else row["d"] for (_, samples), row in sweep.items()]
    rows = list(sweep.values())
    for label, first in (("all points", 0), ("largest 3", len(rows) - 3)):
        fits = " ".join(f"{exponent(xs[first:], [r[q] for r in rows[first:]]):12.2f}"
                        for q in quantities)  # fmt: skip
        print(f"{'exponent vs ' + against:>17s}, {label:>10s} {fits}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trace-matvecs", type=int, default=0, help="0: no trace column")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if args.point:
        width, samples = map(int, args.point.split(":"))
        print(json.dumps(point(width, samples, device, args.trace_matvecs)))
        return
    trace = f", trace = Hutch++ with {args.trace_matvecs} products" if args.trace_matvecs else ""
    print(f"device {device}, 1 thread, torch {torch.__version__}, medians of {args.repeats} "
          f"interleaved rounds, batches of {BATCH}{trace}")  # fmt: skip
    _report("samples (cnn:width=16)", _sweep(args, [(16, n) for n in SAMPLES]), "samples")
    _report("parameters (512 samples)", _sweep(args, [(w, 512) for w in WIDTHS]), "d")


if __name__ == "__main__":
    main()

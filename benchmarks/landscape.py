"""Cost of a 21 x 21 loss surface against 441 plain forward passes, side by side in one run.

On the zoo's small CNN (BatchNorm, width 16) and 512 scikit-learn digits in fixed batches, each
repeat times, in alternating order,

- ``flatscope.landscape.surface_2d`` on a 21 x 21 grid of two filter-normalized directions
  (loss and accuracy at 441 points; ``--points-per-pass K`` batches K grid points per forward
  pass with ``vmap``, the default being one point at a time on the CPU), and
- 441 plain forward passes over the same batches (``model.eval()``, ``torch.no_grad()``),

and prints the medians of wall-clock and process CPU time and their ratios (the target on CPU
is at most 1.2). On a shared machine CPU time with ``--threads 1`` is the stable measure.

    python benchmarks/landscape.py [--device cpu] [--repeats 3] [--batch-size 128] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from sklearn.datasets import load_digits
from torch import nn

from flatscope.landscape import random_directions, surface_2d
from flatscope.models.zoo import build_model
from flatscope.objective import Objective

NUM_SAMPLES = 512
STEPS = 21


def _digits(batch_size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    digits = load_digits()
    x = torch.tensor(digits.images[:NUM_SAMPLES], dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target[:NUM_SAMPLES])
    return [
        (x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        for i in range(0, NUM_SAMPLES, batch_size)
    ]


def _seconds(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--points-per-pass", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model = build_model("cnn", seed=0).to(device)
    batches = _digits(args.batch_size, device)
    loss_fn = nn.CrossEntropyLoss()
    d1, d2 = random_directions(model, 2, seed=0)
    objective = Objective(model, loss_fn, batches)

    def surface() -> None:
        surface_2d(objective, d1, d2, steps=STEPS, points_per_pass=args.points_per_pass)

    def forward_passes() -> None:
        model.eval()
        with torch.no_grad():
            for _ in range(STEPS * STEPS):
                for inputs, targets in batches:
                    loss_fn(model(inputs), targets)

    surface()  # warm-up (vmap tracing, allocator)
    forward_passes()
    times: dict[str, list[tuple[float, float]]] = {"surface": [], "forward": []}
    for repeat in range(args.repeats):
        order = [("surface", surface), ("forward", forward_passes)]
        for name, fn in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(_seconds(fn, device))
    print(
        f"device={device} threads={torch.get_num_threads()} samples={NUM_SAMPLES} "
        f"batch={args.batch_size} grid={STEPS}x{STEPS} repeats={args.repeats} "
        f"points_per_pass={args.points_per_pass or 'auto'}"
    )
    for clock, index in (("wall", 0), ("cpu", 1)):
        surface_s, forward_s = (
            statistics.median(t[index] for t in times[k]) for k in ("surface", "forward")
        )
        print(
            f"{clock:>4}: surface_2d {surface_s:7.3f} s, {STEPS * STEPS} forward passes "
            f"{forward_s:7.3f} s (medians), ratio {surface_s / forward_s:.3f}"
        )
    print("target: ratio <= 1.2 on CPU (process CPU time is the robust clock on a busy machine)")


if __name__ == "__main__":
    main()

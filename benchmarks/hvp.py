"""Hessian-vector product cost, side by side in one run: gradient, flatscope, PyHessian.

On the zoo's small CNN and scikit-learn's digits (all 1797 images, fixed batches) it times

- one gradient of the mean loss over the data (``op.gradient()``),
- one HVP by flatscope (forward-over-reverse),
- one HVP by PyHessian (double backward, ``dataloader_hv_product``: the same whole-data product),
- flatscope ``matmat`` on 8 and 32 probes (per probe),

interleaving repeats and reporting medians, then the ratios HVP / gradient and
flatscope / PyHessian. Peak memory is measured on CUDA only (``--device cuda``).

    python benchmarks/hvp.py [--device cpu] [--repeats 5] [--batch-size 512] [--width 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from sklearn.datasets import load_digits
from torch import nn

import flatscope as fs
from flatscope.models.zoo import build_model


def _digits(batch_size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target)
    return [
        (x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        for i in range(0, len(y), batch_size)
    ]


def _pyhessian_product(model, loss_fn, batches) -> Callable[[torch.Tensor], None] | None:
    try:
        from pyhessian import hessian
    except ImportError:
        return None
    ph = hessian(model, loss_fn, dataloader=batches, cuda=batches[0][0].is_cuda)
    shapes = [p.shape for p in ph.params]

    def product(v: torch.Tensor) -> None:
        pieces = list(torch.split(v, [s.numel() for s in shapes]))
        ph.dataloader_hv_product([p.view(s) for p, s in zip(pieces, shapes, strict=True)])

    return product


def _time(fn: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20
    return time.perf_counter() - start, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--model", default=None, help="zoo spec; default cnn:width=WIDTH")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model or f"cnn:width={args.width}").to(device).eval()
    loss_fn = nn.CrossEntropyLoss()
    batches = _digits(args.batch_size, device)
    op = fs.HessianOperator(model, loss_fn, batches)
    d = op.shape[0]
    g = torch.Generator(device=device).manual_seed(0)
    v = torch.randn(d, device=device, generator=g)
    V8 = torch.randn(d, 8, device=device, generator=g)
    V32 = torch.randn(d, 32, device=device, generator=g)
    pyhessian_product = _pyhessian_product(model, loss_fn, batches)

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "gradient": (op.gradient, 1),
        "flatscope HVP": (lambda: op @ v, 1),
        "flatscope matmat 8 (per probe)": (lambda: op @ V8, 8),
        "flatscope matmat 32 (per probe)": (lambda: op @ V32, 32),
    }
    if pyhessian_product is not None:
        cases["PyHessian HVP"] = (lambda: pyhessian_product(v), 1)
    for fn, _ in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    memory: dict[str, float | None] = {}
    for _ in range(args.repeats):
        for name, (fn, probes) in cases.items():
            seconds, peak = _time(fn, device)
            times[name].append(seconds / probes)
            memory[name] = peak
    median = {name: statistics.median(t) for name, t in times.items()}

    print(
        f"model {args.model or f'cnn:width={args.width}'}, d = {d} parameters, "
        f"{op.num_samples} samples in {len(batches)} batches, device {device}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'case':34s} {'ms per probe':>12s} {'peak MiB':>9s}")
    for name, t in median.items():
        peak = memory[name]
        print(f"{name:34s} {1e3 * t:12.1f} {'n/a' if peak is None else f'{peak:9.0f}':>9s}")
    ratios = {
        "flatscope HVP / gradient": ("flatscope HVP", "gradient"),
        "matmat 8, per probe / gradient": ("flatscope matmat 8 (per probe)", "gradient"),
        "matmat 32, per probe / gradient": ("flatscope matmat 32 (per probe)", "gradient"),
        "flatscope HVP / PyHessian HVP": ("flatscope HVP", "PyHessian HVP"),
        "matmat 32, per probe / PyHessian": ("flatscope matmat 32 (per probe)", "PyHessian HVP"),
    }
    for label, (num, den) in ratios.items():
        if num in median and den in median:
            print(f"ratio {label:38s} {median[num] / median[den]:.2f}")


if __name__ == "__main__":
    main()

"""A GPU check in one command: exactness, product cost, throughput, memory, a ResNet-18 spectrum
and optimizer step cost, one table per section.

    python benchmarks/gpu_check.py                     # CUDA, about 3 to 5 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --tiny # the same code paths in seconds (CI)

Sections (``MODES`` are the product modes of :class:`flatscope.HessianOperator`: double backward
with columns in a loop, batched double backward, forward-over-reverse):

1. **exactness**: in float64, the gradient and the product ``H v`` of each mode on the device
   against the CPU's double backward, on a small ResNet-18 with batch norm; relative errors
   ``||x_dev - x_cpu|| / ||x_cpu||`` must stay below ``1e-10`` (float64 rounding through a
   network is about ``1e-15``), else the script exits with status 1;
2. **HVP / gradient**: one product of each mode (first-order graph kept, as flatscope does for
   one batch, and rebuilt: ``graph_budget=0``) against one gradient, medians of interleaved
   repeats (wall time after synchronising on CUDA, process CPU time on the CPU);
3. **throughput**: probe columns per second of ``op @ V`` with 1, 8, 32 and 128 columns (1, 2,
   4 with ``--tiny``), each mode;
4. **peak memory**: of one fresh operator's first product (graph building included) with 1 and
   32 columns (1 and 4 with ``--tiny``), each mode, with the chunk size the memory rule chose,
   against a gradient's (``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the in-process
   RSS high-water mark of ``benchmarks/_peak.py``, an upper bound when an earlier step peaked
   higher);
5. **spectrum**: the zoo's ResNet-18 (11M parameters) on 10,000 CIFAR-shaped samples of
   ``synthetic:shape=3x32x32``, mean cross-entropy over all of them: Hutch++ trace with its
   standard error and the top-5 eigenvalues (Lanczos) with wall times and products;
6. **optimizer step**: fSGLD / SGD and SAM / fSGLD step-time ratios, timed as
   ``benchmarks/optim_cost.py`` does (its functions).

In float32 on CUDA, PyTorch lets cuDNN convolutions use TF32 by default; the script prints the
setting, which sections 2 to 6 run under.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peak import measure, seconds  # noqa: E402
from optim_cost import interleaved_step_times, make_optimizers  # noqa: E402

import flatscope as fs  # noqa: E402

MODES = ("double_backward", "batched_double_backward", "forward")
EXACT_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Sizes:
    """What each section runs on."""

    model: str  # the network of sections 2 to 6
    image: tuple[int, int, int]
    exact_model: str  # the small float64 network of section 1
    exact_samples: int
    product_samples: int  # one batch, sections 2 to 4
    columns: tuple[int, ...]  # section 3
    peak_columns: tuple[int, ...]  # section 4
    spectrum_samples: int
    spectrum_batch: int
    trace_matvecs: int
    eigen_matvecs: int
    optim_batch: int
    optim_steps: int
    repeats: int


FULL = Sizes(
    model="resnet18", image=(3, 32, 32), exact_model="resnet18:width=8", exact_samples=64,
    product_samples=256, columns=(1, 8, 32, 128), peak_columns=(1, 32),
    spectrum_samples=10_000, spectrum_batch=1000, trace_matvecs=32, eigen_matvecs=60,
    optim_batch=128, optim_steps=50, repeats=3,
)  # fmt: skip
TINY = Sizes(
    model="cnn:in_channels=3,width=4", image=(3, 8, 8), exact_model="cnn:in_channels=3,width=4",
    exact_samples=4,
    product_samples=8, columns=(1, 2, 4), peak_columns=(1, 4),
    spectrum_samples=32, spectrum_batch=16, trace_matvecs=4, eigen_matvecs=6,
    optim_batch=8, optim_steps=2, repeats=1,
)  # fmt: skip


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print a titled table with right-aligned columns (the first left-aligned)."""
    cells = [header] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n## {title}")
    for row in cells:
        first, *rest = row
        print(
            "  ".join(
                [first.ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
            )
        )


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.3f}"
    return str(value)


def random_batch(sizes: Sizes, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` standard normal images and labels in ten classes."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, *sizes.image, generator=generator), torch.randint(
        0, 10, (n,), generator=generator
    )


def operator(model: nn.Module, data, device: torch.device, **options) -> fs.HessianOperator:
    """The Hessian of the mean cross-entropy of ``model`` over ``data`` on ``device``."""
    objective = fs.Objective(model, nn.CrossEntropyLoss(), data, device=device)
    return fs.HessianOperator(objective, **options)


# --------------------------------------------------------------------------- 1. exactness
def exactness(sizes: Sizes, device: torch.device) -> bool:
    """Float64 gradient and products of every mode on ``device`` against the CPU's."""
    model = fs.build_model(sizes.exact_model, seed=0).double()
    x, y = random_batch(sizes, sizes.exact_samples, seed=1)
    data = [(x.double(), y)]
    cpu = torch.device("cpu")
    reference = operator(model, data, cpu, hvp="double_backward")
    v = torch.randn(reference.shape[0], 2, generator=torch.Generator().manual_seed(2)).double()
    expected = {"gradient": reference.gradient(), **{mode: reference @ v for mode in MODES}}
    rows, passed = [], True
    for name, want in expected.items():
        mode = "double_backward" if name == "gradient" else name
        op = operator(model, data, device, hvp=mode)
        got = op.gradient() if name == "gradient" else op @ v.to(device)
        error = float(torch.linalg.norm(got.cpu() - want) / torch.linalg.norm(want))
        ok = error <= EXACT_TOLERANCE
        passed &= ok
        rows.append([name, error, "ok" if ok else "FAILED"])
    d = reference.shape[0]
    title = (
        f"1. float64 exactness on {device} vs the CPU ({sizes.exact_model}, d = {d:,}, "
        f"{sizes.exact_samples} samples, 2 columns; tolerance {EXACT_TOLERANCE:g})"
    )
    table(title, ["quantity", "relative error", "verdict"], rows)
    return passed


# --------------------------------------------------------------------------- 2. to 4. products
def product_cost(sizes: Sizes, device: torch.device) -> None:
    """Sections 2 (HVP / gradient) and 3 (throughput)."""
    model = fs.build_model(sizes.model, seed=0)
    x, y = random_batch(sizes, sizes.product_samples, seed=1)
    data = [(x.to(device), y.to(device))]
    ops = {mode: operator(model, data, device, hvp=mode) for mode in MODES}
    recomputed = operator(model, data, device, hvp="double_backward", graph_budget=0)
    d = recomputed.shape[0]
    V = torch.randn(d, max(sizes.columns), generator=torch.Generator().manual_seed(2)).to(device)
    single = {
        "gradient": recomputed.gradient,
        **{f"{mode}": (lambda op=op: op @ V[:, :1]) for mode, op in ops.items()},
        "double_backward, graph rebuilt": lambda: recomputed @ V[:, :1],
    }
    times = _interleaved(single, sizes.repeats, device)
    g = times["gradient"]
    table(
        f"2. one HVP / one gradient ({sizes.model}, d = {d:,}, {sizes.product_samples} samples "
        f"in one batch, {device}; median of {sizes.repeats})",
        ["case", "ms", "x gradient"],
        [[name, 1e3 * t, t / g] for name, t in times.items()],
    )
    blocks = {
        f"{mode} {k}": (lambda op=op, k=k: op @ V[:, :k])
        for mode, op in ops.items()
        for k in sizes.columns
    }
    times = _interleaved(blocks, sizes.repeats, device)
    rows = []
    for mode in MODES:
        per_probe = [times[f"{mode} {k}"] / k for k in sizes.columns]
        rows.append([mode, *[1 / t for t in per_probe], per_probe[-1] / g])
    header = [
        "mode",
        *[f"{k} col/s" for k in sizes.columns],
        f"x gradient/col at {max(sizes.columns)}",
    ]
    table(f"3. throughput: probe columns per second ({device})", header, rows)


def _interleaved(cases: dict[str, Callable], repeats: int, device: torch.device) -> dict:
    """Median seconds of each case over ``repeats`` interleaved rounds after one warm-up."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(repeats):
        order = list(cases.items())
        for name, fn in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(seconds(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(sizes: Sizes, device: torch.device) -> None:
    """Section 4: the peak memory of a fresh operator's first product, each mode."""
    model = fs.build_model(sizes.model, seed=0)
    x, y = random_batch(sizes, sizes.product_samples, seed=1)
    data = [(x.to(device), y.to(device))]
    d = sum(p.numel() for p in model.parameters())
    k_max = max(sizes.peak_columns)
    V = torch.randn(d, k_max, generator=torch.Generator().manual_seed(2)).to(device)
    operator(model, data, device).gradient()  # first-call caches out of the numbers
    gradient = measure(lambda: operator(model, data, device).gradient(), device)
    rows = [["gradient", gradient["peak_mib"], 1.0, gradient["how"]]]
    for mode in MODES:
        for k in sizes.peak_columns:
            op = operator(model, data, device, hvp=mode)
            peak = measure(lambda op=op, k=k: op @ V[:, :k], device)
            chunk = op.chunk_size(k)
            ratio = peak["peak_mib"] / gradient["peak_mib"]
            rows.append([f"{mode} {k} (chunks of {chunk})", peak["peak_mib"], ratio, peak["how"]])
            del op
    title = f"4. peak memory of one product ({sizes.model}, {sizes.product_samples} samples)"
    table(title, ["case", "MiB", "x gradient", "measured by"], rows)


# --------------------------------------------------------------------------- 5. spectrum
def spectrum(sizes: Sizes, device: torch.device) -> None:
    """Trace and top-5 eigenvalues of the ResNet-18 on CIFAR-shaped synthetic data."""
    shape = "x".join(map(str, sizes.image))
    spec = f"synthetic:n={2 * sizes.spectrum_samples},classes=10,shape={shape}"
    bundle = fs.load_data(spec, "train", subset=sizes.spectrum_samples)
    batches = [
        (x.to(device), y.to(device)) for x, y in bundle.loader(batch_size=sizes.spectrum_batch)
    ]
    model = fs.build_model(sizes.model, seed=0)
    op = operator(model, batches, device)
    start = time.perf_counter()
    estimate = fs.trace(op, "hutchpp", sizes.trace_matvecs, seed=0)
    trace_seconds = time.perf_counter() - start
    start = time.perf_counter()
    eigen = fs.eigenvalues(op, k=5, tol=1e-3, max_matvecs=sizes.eigen_matvecs, seed=0)
    eigen_seconds = time.perf_counter() - start
    values = ", ".join(f"{value:.4g}" for value in eigen.values.tolist())
    table(
        f"5. spectrum: {sizes.model} (d = {op.shape[0]:,}), {len(bundle):,} samples of {spec} "
        f"in batches of {sizes.spectrum_batch}, {device}; graphs kept: {op.graphs_kept}",
        ["estimate", "value", "products", "wall s"],
        [
            [f"trace (Hutch++, +- 1 s.e. {estimate.stderr:.4g})", estimate.value,
             estimate.num_matvecs, trace_seconds],
            [f"top-5 eigenvalues (Lanczos, tol 1e-3, converged {eigen.converged})", values,
             eigen.num_matvecs, eigen_seconds],
        ],
    )  # fmt: skip


# --------------------------------------------------------------------------- 6. optimizers
def optimizer_cost(sizes: Sizes, device: torch.device) -> None:
    """fSGLD / SGD and SAM / fSGLD step times, interleaved."""
    x, y = random_batch(sizes, sizes.optim_batch, seed=1)
    setups = make_optimizers(sizes.model, device)
    batch = (x.to(device), y.to(device))
    times = interleaved_step_times(setups, batch, device, sizes.optim_steps, warmup=1)
    median = {name: statistics.median(values) for name, values in times.items()}
    table(
        f"6. optimizer step ({sizes.model}, batch {sizes.optim_batch}, {device}; median of "
        f"{sizes.optim_steps} interleaved steps)",
        ["ratio", "value", "target"],
        [
            ["fSGLD / SGD", median["fSGLD"] / median["SGD"], "<= 1.10"],
            ["SAM / fSGLD", median["SAM"] / median["fSGLD"], ">= 1.7"],
            ["SGD ms/step", 1e3 * median["SGD"], ""],
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds on a CPU)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sizes = TINY if args.tiny else FULL
    start = time.perf_counter()
    tf32 = torch.backends.cudnn.allow_tf32 if device.type == "cuda" else "n/a"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"flatscope {fs.__version__}, torch {torch.__version__}, device {name}, "
          f"{torch.get_num_threads()} CPU threads, cuDNN TF32 {tf32}, "
          f"sizes {'tiny' if args.tiny else 'full'}")  # fmt: skip
    passed = exactness(sizes, device)
    product_cost(sizes, device)
    peak_memory(sizes, device)
    spectrum(sizes, device)
    optimizer_cost(sizes, device)
    verdict = "exactness ok" if passed else "exactness FAILED"
    print(f"\n{verdict}; total wall time {time.perf_counter() - start:.1f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

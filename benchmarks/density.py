"""Spectral density by SLQ: what reorthogonalization buys in accuracy and costs in time.

Stochastic Lanczos quadrature (``flatscope.spectral_density``) runs ``--probes`` Lanczos
chains of ``--steps`` steps side by side. It used to orthogonalize every new vector against all
previous ones in float64 (``reorthogonalize=True``); it now runs the plain three-term
recurrence (``reorthogonalize=False``). This benchmark measures both, side by side in one run.

1. Accuracy against exact spectra, over ``--seeds`` seeds: the Wasserstein-1 distance between
   SLQ's quadrature measure (averaged over probes) and the exact spectral measure (the metric of
   Chen, Trogdon, Ubaru, ICML 2021), and the L1 distance between the two densities smoothed
   by the Gaussian of the default plotting width (1% of the spectral range). Spectra: the exact
   float64 Hessians of trained networks (``mlp:hidden=24,depth=1`` and ``cnn:width=4`` from
   ``tests/linalg/_networks.py``) and a diagonal operator of the cost section's dimension with
   a network-like spectrum (10 outliers from 5 to 80, a power-law tail, a bulk near zero with
   negative eigenvalues), probed with Gaussian vectors: their distribution is rotation
   invariant, so the quadrature measures are distributed as for any matrix with that spectrum.
   Variants: ``full`` (every step orthogonalized twice against all previous vectors, float64),
   ``full float32`` (the same with the recurrence and basis in float32: half the memory and
   traffic) and ``none`` (the three-term recurrence, float64). ``w1 diff`` is the mean over
   seeds of ``|W1(full) - W1(none)|`` on the same probes: the effect of reorthogonalization
   alone, next to the probes' own error.
2. Cost at the size of the zoo's ``cnn:width=39`` (139,357 parameters, the zoo CNN closest to
   the 137k of issue 18; ``cnn:width=8`` has 6,274): the linear algebra of a density run on a
   diagonal operator of that size (its products cost next to nothing; time outside the
   products is the algebra), and the time of one step's product (``probes`` columns) on the
   CNN over 512 digits images in float32 (analyze's default), median of ``--repeats``. The
   algebra share of a run is ``algebra / (algebra + steps * product)``.

    python benchmarks/density.py [--quick] [--steps 90] [--probes 2] [--seeds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flatscope.linalg as la  # noqa: E402
from flatscope.data.datasets import load_data  # noqa: E402
from flatscope.linalg._common import probes as draw_probes  # noqa: E402
from flatscope.linalg._common import seeded_generator  # noqa: E402
from flatscope.models.zoo import build_model  # noqa: E402
from flatscope.operators import DenseOperator, HessianOperator, LinearOperator  # noqa: E402
from tests.linalg._networks import trained_hessian  # noqa: E402

F64 = torch.float64
#: name -> (reorthogonalize, dtype of the recurrence and basis)
VARIANTS = {"full": (True, F64), "full float32": (True, torch.float32), "none": (False, F64)}


class _Diagonal(LinearOperator):
    """``diag(values)``: a stand-in whose products cost next to nothing."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__((values.numel(), values.numel()), values.dtype, values.device)
        self.values = values

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.values[:, None] * V


class _Timed(LinearOperator):
    """Wraps an operator and adds up the seconds spent in its products."""

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.shape, op.dtype, op.device)
        self.op, self.seconds = op, 0.0

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.op @ V
        self.seconds += time.perf_counter() - start
        return out


def _network_like(d: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    outliers = torch.logspace(torch.log10(torch.tensor(5.0)), torch.log10(torch.tensor(80.0)), 10)
    tail = 5.0 * torch.arange(1, 201, dtype=F64) ** -0.8
    bulk = 0.01 * torch.randn(d - 210, generator=generator, dtype=F64) + 0.002
    return torch.cat([outliers.to(F64), tail, bulk]).sort().values


def _slq_measure(op: LinearOperator, steps: int, num: int, seed: int, probe: str, variant: str):
    """SLQ's quadrature measure (nodes, weights summing to one) for one of :data:`VARIANTS`,
    through ``lanczos_batched`` (the same chains as ``spectral_density``)."""
    full, dtype = VARIANTS[variant]
    V0 = draw_probes(seeded_generator(seed), op.shape[0], num, probe, F64, op.device)
    chains = la.lanczos_batched(op, steps, V0 / V0.norm(dim=0), dtype=dtype, reorthogonalize=full)
    nodes, weights = [], []
    for chain in chains:
        theta, S = chain.ritz()
        nodes.append(theta.to(F64))
        weights.append(S[0].to(F64).square() / num)
    return torch.cat(nodes).cpu(), torch.cat(weights).cpu()


def _wasserstein1(nodes: torch.Tensor, weights: torch.Tensor, exact: torch.Tensor) -> float:
    """``int |F_SLQ(t) - F_exact(t)| dt`` for two discrete measures on the real line."""
    points = torch.cat([nodes, exact])
    masses = torch.cat([weights, torch.full_like(exact, -1.0 / exact.numel())])
    order = points.argsort()
    gap = torch.cumsum(masses[order], 0)[:-1]
    return float((gap.abs() * points[order].diff()).sum())


def _smoothed_l1(nodes, weights, exact: torch.Tensor, width: float) -> float:
    """L1 distance of the two measures convolved with ``N(0, width^2)`` (exact eigenvalues are
    binned at ``width / 50`` first, which moves the smoothed density by a negligible amount)."""
    low, high = float(exact.min()) - 6 * width, float(exact.max()) + 6 * width
    bins = int((high - low) / (width / 50)) + 1
    counts = torch.histc(exact, bins, low, high)
    centers = low + (torch.arange(bins, dtype=F64) + 0.5) * (high - low) / bins
    keep = counts > 0
    exact_density = la.SpectralDensity(
        centers[keep][None], (counts[keep] / exact.numel())[None], 0, "exact"
    )
    estimate = la.SpectralDensity(nodes[None], weights[None], 0, "slq")
    grid = torch.linspace(low, high, 8001, dtype=F64)
    difference = (estimate.evaluate(grid, width) - exact_density.evaluate(grid, width)).abs()
    return float(torch.trapezoid(difference, grid))


def accuracy_table(name: str, op: LinearOperator, exact: torch.Tensor, args, probe: str) -> None:
    width = 0.01 * float(exact.max() - exact.min())
    rows = {label: ([], []) for label in VARIANTS}
    for seed in range(args.seeds):
        for label in VARIANTS:
            nodes, weights = _slq_measure(op, args.steps, args.probes, seed, probe, label)
            rows[label][0].append(_wasserstein1(nodes, weights, exact))
            rows[label][1].append(_smoothed_l1(nodes, weights, exact, width))
    scale = float(exact.abs().mean())
    print(f"\n[{name}] d = {exact.numel()}, mean |lambda| = {scale:.4g}, {probe} probes")
    print(f"{'reorthogonalization':<22}{'W1 (mean ± sd)':>24}{'smoothed L1 (mean ± sd)':>28}")
    for label, (w1, l1) in rows.items():
        print(
            f"{label:<22}{statistics.fmean(w1):>14.4g} ± {statistics.stdev(w1):<8.2g}"
            f"{statistics.fmean(l1):>18.4g} ± {statistics.stdev(l1):<8.2g}"
        )
    diff = [abs(a - b) for a, b in zip(rows["full"][0], rows["none"][0], strict=True)]
    ratio = statistics.fmean(diff) / statistics.stdev(rows["full"][0])
    print(
        f"w1 diff |full - none| mean {statistics.fmean(diff):.3g} "
        f"= {ratio:.3f} x the seed-to-seed sd of W1"
    )


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cnn(width: int) -> HessianOperator:
    net = build_model(f"cnn:width={width}").eval()
    data = load_data("digits", "train", subset=512).batches()
    return HessianOperator(net, torch.nn.CrossEntropyLoss(), data)


def cost_table(cnn: HessianOperator, args) -> None:
    d = cnn.shape[0]
    print(f"\n[cost] d = {d}, {args.probes} probes x {args.steps} steps")
    V = torch.randn(d, args.probes, generator=torch.Generator().manual_seed(0))
    product = _median_seconds(lambda: cnn @ V, args.repeats)
    print(f"one step's product on cnn:width={args.width} ({args.probes} columns): {product:.3f} s")
    diagonal = _Diagonal(_network_like(d).to(torch.float32))
    shares = {}
    print(f"{'reorthogonalization':<22}{'algebra s':>12}{'products s':>12}{'share':>9}")
    for label in VARIANTS:
        timed = _Timed(diagonal)
        start = time.perf_counter()
        _slq_measure(timed, args.steps, args.probes, 0, "rademacher", label)
        algebra = time.perf_counter() - start - timed.seconds
        products = args.steps * product
        shares[label] = algebra / (algebra + products)
        print(f"{label:<22}{algebra:>12.2f}{products:>12.1f}{shares[label]:>9.1%}")
    print(
        f"algebra share of a density run: before (full, the old default) {shares['full']:.1%}, "
        f"after (none, the new default) {shares['none']:.1%}  (target <= 20%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MLP only, 3 seeds, 30 steps")
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--probes", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--width", type=int, default=39, help="of the zoo cnn timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "flatscope-hessians"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.width = 3, 30, 15
    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    networks = [("mlp:hidden=24,depth=1", 512, True)]
    if not args.quick:
        networks.append(("cnn:width=4", 256, False))
    for model, samples, vectorize in networks:
        network = trained_hessian(
            model, "sgd", samples=samples, vectorize=vectorize, cache=args.cache
        )
        H = network.matrix
        exact = torch.linalg.eigvalsh(H)
        accuracy_table(f"{model} / sgd", DenseOperator(H), exact, args, "rademacher")
    cnn = _cnn(args.width)
    if not args.quick:
        values = _network_like(cnn.shape[0])
        accuracy_table("network-like diagonal", _Diagonal(values), values, args, "gaussian")
    cost_table(cnn, args)
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()

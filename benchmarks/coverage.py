"""Coverage of the estimators' stated 95% intervals on the exact Hessians of trained networks.

Every trace estimate states ``value ± 1.96 stderr`` as its 95% interval (and every diagonal
entry ``values[i] ± 1.96 stderr[i]``). This benchmark trains small networks with flatscope's
trainer by the demo's protocol (digits, 40% symmetric label noise; see
``tests/linalg/_networks.py``), forms their Hessians exactly in float64, and counts over
``--seeds`` seeds how often the interval holds the exact value, at 30, 100 and 300 products:

- ``mlp:hidden=24,depth=1`` trained with SGD (1,810 parameters, 512 samples);
- ``cnn:width=4`` (BatchNorm) trained with SGD and with fSGLD (1,702 parameters, 256 samples);
- with ``--large``, the demo's network ``cnn:width=8`` trained with SGD (6,274 parameters,
  256 samples; its dense Hessian takes about ten minutes on one core and is cached).

Rows: the four trace estimators at their defaults, ``deflated`` (the top-5 eigen solve at tol
1e-3 grown to half the budget, then Hutchinson on the deflated rest: ``trace(..., deflate=)``),
and the diagonal estimator (per entry).

Columns: ``cover`` is the fraction of seeds whose interval holds the truth (with 100 seeds its
binomial standard deviation at a true 95% is 2.2%; cells below 90% are marked ``<``);
``err/se`` is the root mean square error over the root mean square stated standard error (1 for
a calibrated error bar). Dense Hessians are cached in ``--cache``.

    python benchmarks/coverage.py [--quick] [--seeds 100] [--large] [--cache DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flatscope.linalg as la  # noqa: E402
from tests.linalg._networks import trained_hessian  # noqa: E402

BUDGETS = (30, 100, 300)
Z95 = 1.959963984540054
NETWORKS = (  # (model, optimizer, samples, vectorized Hessian)
    ("mlp:hidden=24,depth=1", "sgd", 512, True),
    ("cnn:width=4", "sgd", 256, False),
    ("cnn:width=4", "fsgld", 256, False),
)
LARGE = ("cnn:width=8", "sgd", 256, False)


def _trace_cell(H: torch.Tensor, estimate: Callable, budget: int, seeds: int) -> tuple:
    exact = float(H.trace())
    errors, stderrs = [], []
    for seed in range(seeds):
        result = estimate(H, budget, seed)
        errors.append(result.value - exact)
        stderrs.append(result.stderr)
    errors, stderrs = torch.tensor(errors), torch.tensor(stderrs)
    return errors, stderrs


def _diagonal_cell(H: torch.Tensor, budget: int, seeds: int) -> tuple:
    exact = H.diagonal()
    errors, stderrs = [], []
    for seed in range(seeds):
        result = la.diagonal(H, budget, seed=seed)
        errors.append(result.values - exact)
        stderrs.append(result.stderr)
    return torch.stack(errors).reshape(-1), torch.stack(stderrs).reshape(-1)


def _cell(errors: torch.Tensor, stderrs: torch.Tensor) -> str:
    covered = float((errors.abs() <= Z95 * stderrs).double().mean())
    ratio = math.sqrt(float(errors.square().mean()) / max(float(stderrs.square().mean()), 1e-300))
    mark = "<" if covered < 0.9 else " "
    return f"{mark}{covered:5.1%} {ratio:6.2f}"


def _deflated(H: torch.Tensor, budget: int, seed: int) -> la.TraceEstimate:
    """Top-5 eigenvalues (tol 1e-3) from half the budget, Hutchinson on the deflated rest."""
    pairs = la.eigenvalues(H, 5, tol=1e-3, seed=seed, min_subspace=budget // 2)
    rest = max(budget - pairs.num_matvecs, 2)
    return la.trace(H, "hutchinson", rest, seed, deflate=pairs)


def estimators() -> dict[str, Callable]:
    """The rows of the table: name -> ``f(H, budget, seed)`` returning a trace estimate."""
    rows = {
        method: (lambda H, m, seed, method=method: la.trace(H, method, m, seed))
        for method in ("hutchinson", "hutchpp", "na_hutchpp", "xtrace")
    }
    return {**rows, "deflated": _deflated}


def coverage_table(name: str, H: torch.Tensor, budgets: tuple[int, ...], seeds: int) -> None:
    print(f"\n[{name}] d = {H.shape[0]}, tr H = {float(H.trace()):.6g}, {seeds} seeds")
    print(f"{'estimator':<14}" + "".join(f"{f'{m} HVPs':>16}" for m in budgets))
    print(f"{'':<14}" + "".join(f"{'cover  err/se':>16}" for _ in budgets))
    for label, estimate in estimators().items():
        cells = [_cell(*_trace_cell(H, estimate, m, seeds)) for m in budgets]
        print(f"{label:<14}" + "".join(f"{c:>16}" for c in cells))
    cells = [_cell(*_diagonal_cell(H, m, seeds)) for m in budgets]
    print(f"{'diagonal':<14}" + "".join(f"{c:>16}" for c in cells) + "   (per entry)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the MLP only, 30 and 100 HVPs")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--large", action="store_true", help="also the demo's cnn:width=8")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "flatscope-hessians"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    networks = NETWORKS[:1] if args.quick else NETWORKS + ((LARGE,) if args.large else ())
    budgets = BUDGETS[:2] if args.quick else BUDGETS
    print(
        f"coverage of value ± 1.96 stderr over {args.seeds} seeds (binomial sd at 95%: "
        f"{math.sqrt(0.95 * 0.05 / args.seeds):.1%}); '<' marks coverage below 90%"
    )
    for model, optimizer, samples, vectorize in networks:
        start = time.perf_counter()
        network = trained_hessian(
            model, optimizer, samples=samples, vectorize=vectorize, cache=args.cache
        )
        print(f"({network.name}: trained, dense Hessian in {time.perf_counter() - start:.0f} s)")
        coverage_table(network.name, network.matrix, budgets, args.seeds)
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()

"""Randomized estimators against PyHessian, side by side in one run, on exact Hessians.

Two cases, each with its dense Hessian as the truth:

- ``digits``: an MLP (64 -> hidden -> 10, ReLU, float64) trained briefly with full-batch Adam on
  all 1797 images of scikit-learn's digits; the Hessian of the mean cross-entropy over all
  images, computed densely with ``torch.func`` (``vmap`` of ``jvp(grad(loss))`` over the
  identity).
- ``synthetic``: ``Q diag(lambda) Q^T`` with 10 outliers from 1 to 100 in magnitude (the third
  largest negative) and a bulk near zero, presented to PyHessian as the quadratic loss
  ``w^T A w / 2``.

For each case it prints

1. the median relative trace error over ``--seeds`` seeds at 30/100/300 Hessian-vector products
   (HVPs) for PyHessian's ``trace`` (the real ``pyhessian.hessian(...).trace``, seeded through
   the global RNG with ``torch.manual_seed(seed)``; its first ``n`` samples at ``maxIter=300``
   are exactly its run with ``maxIter=n``, so one run per seed serves all budgets, with
   ``tol=-inf`` so that it never stops early) and for flatscope's hutchinson, hutchpp,
   na_hutchpp and xtrace (on the dense matrix), plus the fraction of seeds whose truth lies
   within 3 reported standard errors; also PyHessian's default rule (``maxIter=100, tol=1e-3``).
   PyHessian runs on the quadratic loss ``w^T H w / 2`` whose Hessian is exactly the dense
   ``H`` (its own probes, autograd HVPs and averaging; one of its HVPs on the network is checked
   against ``H``), because 15,000 whole-dataset HVPs on the network take many minutes on a
   CPU; ``--pyhessian-trace-on model`` runs them on the network instead;
2. HVPs and accuracy of the top-5 eigenvalues by PyHessian's power iteration
   (``eigenvalues(top_n=5)``, default ``tol=1e-3``; HVPs counted by wrapping its
   ``hessian_vector_product``) versus flatscope's thick-restart Lanczos at ``tol=1e-6`` and
   ARPACK (``method="scipy"``) for reference;
3. the time of flatscope's spectral density (SLQ, 4 probes x 90 steps through
   ``HessianOperator`` on the digits case) next to PyHessian's ``density`` (1 probe x 90
   steps), which fails on current PyTorch after its Lanczos loop.

    python benchmarks/estimators.py [--seeds 50] [--hidden 24] [--train-steps 300]
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flatscope.linalg as la  # noqa: E402
from flatscope.operators import DenseOperator, HessianOperator, unflatten  # noqa: E402
from tests.linalg._networks import trained_hessian, trained_network  # noqa: E402

F64 = torch.float64
BUDGETS = (30, 100, 300)
EIGEN_SEEDS = 3
FLATSCOPE_METHODS = ("hutchinson", "hutchpp", "na_hutchpp", "xtrace")


# ----------------------------------------------------------------------------- problems
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    return torch.tensor(digits.data, dtype=F64) / 16.0, torch.tensor(digits.target)


def _trained_mlp(hidden: int, steps: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).to(F64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def _dense_hessian(loss: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """The exact Hessian, column block by column block: ``vmap`` of ``jvp(grad(loss))``."""

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(grad(loss), (w,), (v,))[1]

    identity = torch.eye(w.numel(), dtype=w.dtype)
    columns = [vmap(hvp, 1, 1)(identity[:, i : i + 64]) for i in range(0, w.numel(), 64)]
    H = torch.cat(columns, dim=1)
    return (H + H.mT) / 2


class _Quadratic(nn.Module):
    """A "model" whose output is its weight vector, so that PyHessian sees ``w^T A w / 2``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=F64))

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.w


def _synthetic(d: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    outliers = torch.logspace(0, 2, 10, dtype=F64)
    outliers[-3] *= -1  # -35.9: among the five largest |lambda| but not the five largest lambda
    bulk = 0.02 * torch.randn(d - 10, generator=generator, dtype=F64) + 0.005
    Q = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=F64)).Q
    A = (Q * torch.cat([outliers, bulk])) @ Q.mT
    return (A + A.mT) / 2


# ----------------------------------------------------------------------------- PyHessian
def _pyhessian(model: nn.Module, loss_fn: Callable, data: tuple) -> object:
    from pyhessian import hessian

    return hessian(model, loss_fn, data=data, cuda=False)


def _quadratic_pyhessian(A: torch.Tensor) -> Callable[[], object]:
    """PyHessian on the loss ``w^T A w / 2``: its own probes, HVPs (autograd) and stopping rule
    applied to exactly the matrix ``A``."""
    quadratic = _Quadratic(A.shape[0])
    dummy = (torch.zeros(1), torch.zeros(1))
    return lambda: _pyhessian(quadratic, lambda out, _: 0.5 * out @ (A @ out), dummy)


def _check_pyhessian_product(ph: object, H: torch.Tensor) -> None:
    """One HVP by PyHessian on the network against the dense Hessian."""
    module = importlib.import_module("pyhessian.hessian")
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(0), dtype=F64)
    pieces = torch.split(v, [p.numel() for p in ph.params])
    Hv = module.hessian_vector_product(
        ph.gradsH, ph.params, [q.view_as(p) for q, p in zip(pieces, ph.params, strict=True)]
    )
    flat = torch.cat([h.reshape(-1) for h in Hv])
    error = float((flat - H @ v).norm() / (H @ v).norm())
    print(f"PyHessian's HVP on the network vs the dense Hessian: relative difference {error:.1e}")


def _count_pyhessian_hvps() -> list[int]:
    """Wrap PyHessian's single-batch HVP so that calls are counted; returns the counter."""
    module = importlib.import_module("pyhessian.hessian")
    counter = [0]
    original = module.hessian_vector_product

    def counted(gradsH, params, v):
        counter[0] += 1
        return original(gradsH, params, v)

    module.hessian_vector_product = counted
    return counter


# ----------------------------------------------------------------------------- tables
def _median(values: list[float]) -> float:
    return statistics.median(values)


def trace_table(name: str, H: torch.Tensor, make_pyhessian: Callable[[], object], seeds: int):
    exact = float(H.trace())
    print(f"\n[{name}] trace: d={H.shape[0]}, tr H = {exact:.6g}, {seeds} seeds")
    print(f"{'estimator':<22}" + "".join(f"{f'{m} HVPs':>22}" for m in BUDGETS))
    print(f"{'':<22}" + "".join(f"{'median rel err  cov':>22}" for _ in BUDGETS))
    rows: dict[str, dict[int, float]] = {}

    ph = make_pyhessian()
    samples = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        samples.append(ph.trace(maxIter=max(BUDGETS), tol=-math.inf))
    rows["pyhessian"] = {
        m: _median([abs(float(np.mean(s[:m])) - exact) / abs(exact) for s in samples])
        for m in BUDGETS
    }
    print(
        f"{'pyhessian trace':<22}" + "".join(f"{rows['pyhessian'][m]:>17.2e}    -" for m in BUDGETS)
    )

    op = DenseOperator(H)
    for method in FLATSCOPE_METHODS:
        rows[method] = {}
        cells = []
        for m in BUDGETS:
            estimates = [la.trace(op, method=method, num_matvecs=m, seed=s) for s in range(seeds)]
            errors = [abs(e.value - exact) / abs(exact) for e in estimates]
            covered = sum(abs(e.value - exact) <= 3 * e.stderr for e in estimates) / seeds
            rows[method][m] = _median(errors)
            cells.append(f"{rows[method][m]:>17.2e} {covered:4.0%}")
        print(f"{'flatscope ' + method:<22}" + "".join(cells))

    used, errors = [], []
    for seed in range(seeds):
        torch.manual_seed(seed)
        run = ph.trace()  # PyHessian's defaults: maxIter=100, tol=1e-3
        used.append(len(run))
        errors.append(abs(float(np.mean(run)) - exact) / abs(exact))
    print(
        f"{'pyhessian default rule':<22} median {_median(used):.0f} HVPs (min {min(used)}, "
        f"max {max(used)}), median rel err {_median(errors):.2e}"
    )
    best = min(FLATSCOPE_METHODS, key=lambda k: rows[k][100])
    ratio = rows["pyhessian"][100] / rows[best][100]
    print(f"at 100 HVPs: best flatscope ({best}) error is {ratio:.1f}x lower than PyHessian's")
    return ratio


def eigen_table(name: str, H: torch.Tensor, make_pyhessian: Callable[[], object], op_factory):
    exact = torch.linalg.eigvalsh(H)
    by_magnitude = exact[exact.abs().argsort(descending=True)][:5]
    largest = exact.flip(0)[:5]
    print(f"\n[{name}] top-5 eigenvalues: {', '.join(f'{v:.6g}' for v in largest.tolist())}")
    if not torch.equal(by_magnitude.sort().values, largest.sort().values):
        print("  (the 5 largest |lambda| differ from the 5 largest lambda; PyHessian is scored")
        print(f"   against the former: {', '.join(f'{v:.6g}' for v in by_magnitude.tolist())})")
    print(f"{'method':<34}{'HVPs':>8}{'max rel err':>14}")

    def relative(values: torch.Tensor, reference: torch.Tensor) -> float:
        found = values.sort(descending=True).values
        target = reference.sort(descending=True).values
        return float(((found - target).abs() / target.abs()).max())

    counter = _count_pyhessian_hvps()
    ph_hvps, ph_errors = [], []
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # PyHessian draws its start vectors with torch.randn
    try:
        for seed in range(EIGEN_SEEDS):
            ph = make_pyhessian()
            torch.manual_seed(seed)
            counter[0] = 0
            values, _ = ph.eigenvalues(top_n=5)
            ph_hvps.append(counter[0])
            ph_errors.append(relative(torch.tensor(values, dtype=F64), by_magnitude))
    finally:
        torch.set_default_dtype(default_dtype)
    print(
        f"{'pyhessian power iteration tol=1e-3':<34}{_median(ph_hvps):>8.0f}"
        f"{_median(ph_errors):>14.2e}   (median of {EIGEN_SEEDS} seeds)"
    )
    results = {}
    for label, kwargs in [
        ("flatscope lanczos tol=1e-6", {"tol": 1e-6}),
        ("flatscope lanczos tol=1e-4", {"tol": 1e-4}),
        ("scipy eigsh (ARPACK) tol=1e-6", {"tol": 1e-6, "method": "scipy"}),
    ]:
        hvps, errors = [], []
        for seed in range(EIGEN_SEEDS):
            op = op_factory()
            result = la.eigenvalues(op, k=5, seed=seed, **kwargs)
            hvps.append(op.num_matvecs)
            errors.append(relative(result.values, largest))
        results[label] = (_median(hvps), _median(errors))
        print(
            f"{label:<34}{_median(hvps):>8.0f}{_median(errors):>14.2e}"
            f"   (median of {EIGEN_SEEDS} seeds)"
        )
    lanczos_hvps, lanczos_error = results["flatscope lanczos tol=1e-6"]
    print(
        f"flatscope reaches {lanczos_error:.1e} relative error with "
        f"{lanczos_hvps / _median(ph_hvps):.2f}x PyHessian's HVPs"
    )
    return lanczos_hvps / _median(ph_hvps), lanczos_error


def density_timing(op_factory, make_pyhessian: Callable[[], object]) -> None:
    print("\n[digits] spectral density")
    op = op_factory()
    start = time.perf_counter()
    density = la.spectral_density(op, num_steps=90, num_probes=4)
    ours = (time.perf_counter() - start) / density.num_matvecs
    print(
        f"flatscope slq (4 probes x 90 steps, side by side): {ours * density.num_matvecs:.2f} s, "
        f"{density.num_matvecs} HVPs, {ours:.3f} s per HVP"
    )
    ph = make_pyhessian()
    start = time.perf_counter()
    try:
        ph.density(iter=90, n_v=1)
        outcome = "ran"
    except Exception as err:  # report whatever PyHessian raises on this PyTorch
        outcome = f"failed after its Lanczos loop: {type(err).__name__}: {str(err)[:60]}"
    theirs = (time.perf_counter() - start) / 90
    print(
        f"pyhessian density (1 probe x 90 steps): {theirs * 90:.2f} s, {theirs:.3f} s per HVP, "
        f"{outcome}"
    )
    print(f"time per HVP, PyHessian / flatscope: {theirs / ours:.1f}")


# ----------------------------------------------------------------------------- block size
def block_size_table(name: str, op_factory, reference: torch.Tensor, k: int = 5) -> None:
    """Products, seconds and accuracy of the top-``k`` search per block size, at analyze's
    tolerance 1e-3 and at 1e-6 (medians over ``EIGEN_SEEDS`` seeds)."""
    print(f"\n[{name}] top-{k} eigenvalues by block Lanczos, per block size")
    print(f"{'tol':>7}{'block':>7}{'HVPs':>7}{'seconds':>10}{'max rel err':>14}{'converged':>11}")
    blocks = (1, 2, 3, k)
    for tol in (1e-3, 1e-6):
        runs: dict[int, list] = {block: [] for block in blocks}
        for seed in range(EIGEN_SEEDS):
            for block in blocks:  # interleaved, so that a busy machine slows every block alike
                op = op_factory()
                start = time.perf_counter()
                result = la.eigenvalues(op, k, tol=tol, seed=seed, block_size=block)
                error = float(((result.values - reference) / reference).abs().max())
                seconds = time.perf_counter() - start
                runs[block].append((op.num_matvecs, seconds, error, result.converged))
        for block, rows in runs.items():
            hvps, seconds, errors, converged = zip(*rows, strict=True)
            print(
                f"{tol:>7.0e}{block:>7}{_median(hvps):>7.0f}{_median(seconds):>10.2f}"
                f"{_median(errors):>14.1e}{sum(converged):>8}/{EIGEN_SEEDS}"
            )


# ----------------------------------------------------------------------------- sharing
def _scored(estimates: list, exact: float) -> tuple[float, float]:
    """Median relative error and coverage of ``value ± 1.96 stderr``."""
    errors = [abs(e.value - exact) / abs(exact) for e in estimates]
    covered = sum(abs(e.value - exact) <= 1.96 * e.stderr for e in estimates) / len(estimates)
    return _median(errors), covered


def sharing_table(name: str, H: torch.Tensor, seeds: int, k: int = 5, tol: float = 1e-3):
    """Trace and top-``k`` eigenvalues from one budget (the eigen solve's Krylov space deflates
    the trace) against today's separate runs (analyze: block size ``k``, then a trace)."""
    exact = float(H.trace())
    print(f"\n[{name}] trace + top-{k} eigenvalues (tol {tol:g}), d = {H.shape[0]}, {seeds} seeds")
    print(f"{'run':<46}{'HVPs':>6}{'median rel err':>16}{'cover 95%':>11}")
    rows = {}
    for block in (k, 1):
        runs = [la.eigenvalues(H, k, tol=tol, seed=s, block_size=block) for s in range(seeds)]
        eig_hvps = _median([run.num_matvecs for run in runs])
        for method in ("hutchpp", "xtrace"):
            estimates = [la.trace(H, method, 100, seed=s) for s in range(seeds)]
            rows[block, method] = (eig_hvps + 100, *_scored(estimates, exact))
            hvps, error, covered = rows[block, method]
            label = f"separate: eig (block {block}) + {method}(100)"
            print(f"{label:<46}{hvps:>6.0f}{error:>16.2e}{covered:>11.0%}")
    shared = {}
    for total in (50, 60, 80, 100, 130):
        for fraction in (0.5, 0.7, 0.85):
            estimates, hvps = [], []
            for s in range(seeds):
                eig = la.eigenvalues(H, k, tol=tol, seed=s, min_subspace=int(fraction * total))
                budget = max(total - eig.num_matvecs, 4)
                estimates.append(la.trace(H, "hutchinson", budget, seed=s, deflate=eig))
                hvps.append(eig.num_matvecs + estimates[-1].num_matvecs)
            error, covered = _scored(estimates, exact)
            shared[total, fraction] = (_median(hvps), error)
            label = f"shared: eig ({fraction:.0%} of the budget) + hutchinson"
            print(f"{label:<46}{_median(hvps):>6.0f}{error:>16.2e}{covered:>11.0%}")
    today_hvps, today = rows[k, "hutchpp"][:2]  # what analyze ran: block k, Hutch++
    best = min(error for _, error, _ in rows.values())
    cheapest = min((hvps for hvps, error in shared.values() if error <= today), default=None)
    at_equal = min(
        (error for hvps, error in shared.values() if hvps <= today_hvps), default=float("nan")
    )
    if cheapest is None:
        print("no shared run reached today's accuracy")
    else:
        print(
            f"today's accuracy (eig + hutchpp(100), {today:.2e}) with {cheapest:.0f} instead of "
            f"{today_hvps:.0f} HVPs: {cheapest / today_hvps:.2f}x (target <= 0.6)"
        )
    print(
        f"at <= {today_hvps:.0f} HVPs the best shared error is {at_equal / best:.2f}x the best "
        f"separate estimator's at 100 (target <= 0.5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--synthetic-dim", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pyhessian-trace-on",
        choices=("quadratic", "model"),
        default="quadratic",
        help="run PyHessian's 50 x 300 trace HVPs on w^T H w / 2 with the dense H (fast), or on "
        "the network over all of digits (several minutes)",
    )
    parser.add_argument(
        "--sections",
        default="pyhessian,blocks,sharing",
        help="comma-separated: pyhessian (trace, eigenvalues and density against PyHessian), "
        "blocks (block size of the eigen solver), sharing (trace deflated by the eigen solve)",
    )
    parser.add_argument("--cnn", default="cnn:width=8", help="the digits CNN (a zoo spec)")
    parser.add_argument("--cnn-samples", type=int, default=256)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "flatscope-hessians"
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(args.threads)
    total = time.perf_counter()

    x, y = _digits()
    model = _trained_mlp(args.hidden, args.train_steps, x, y)
    loss_fn = nn.CrossEntropyLoss()
    params = {n: p.detach() for n, p in model.named_parameters()}
    w = torch.cat([p.reshape(-1) for p in params.values()])

    def loss(v: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, unflatten(v, params), (x,)), y)

    start = time.perf_counter()
    H = _dense_hessian(loss, w)
    accuracy = float((model(x).argmax(1) == y).double().mean())
    print(
        f"digits MLP: {w.numel()} parameters, train loss {float(loss(w)):.4f}, "
        f"accuracy {accuracy:.3f}; dense Hessian in {time.perf_counter() - start:.1f} s"
    )

    def digits_pyhessian() -> object:
        return _pyhessian(model, loss_fn, (x, y))

    def digits_operator() -> HessianOperator:
        return HessianOperator(model, loss_fn, (x, y), dtype=F64)

    section = time.perf_counter()

    def elapsed() -> None:
        nonlocal section
        print(f"(section took {time.perf_counter() - section:.0f} s)")
        section = time.perf_counter()

    if "pyhessian" in sections:
        _check_pyhessian_product(digits_pyhessian(), H)
        A = _synthetic(args.synthetic_dim)
        on_model = args.pyhessian_trace_on == "model"
        trace_ratio = trace_table(
            "digits", H, digits_pyhessian if on_model else _quadratic_pyhessian(H), args.seeds
        )
        elapsed()
        trace_table("synthetic", A, _quadratic_pyhessian(A), args.seeds)
        elapsed()
        eigen_ratio, eigen_error = eigen_table("digits", H, digits_pyhessian, digits_operator)
        eigen_table("synthetic", A, _quadratic_pyhessian(A), lambda: DenseOperator(A))
        elapsed()
        density_timing(digits_operator, digits_pyhessian)
        elapsed()
        print("\nTargets (digits):")
        print(
            f"  trace at 100 HVPs, PyHessian error / best flatscope error: {trace_ratio:.1f} (>= 5)"
        )
        print(
            f"  top-5 eigenvalues: flatscope HVPs / PyHessian HVPs = {eigen_ratio:.2f} (<= 0.5) "
            f"at relative error {eigen_error:.1e} (<= 1e-6)"
        )
    if "blocks" in sections:
        cnn = trained_network(args.cnn, samples=args.cnn_samples)
        print(f"\ndigits CNN {cnn.name}: trained; Hessian over {args.cnn_samples} samples")
        for name, factory in [
            ("digits MLP (HessianOperator)", digits_operator),
            (f"digits CNN {args.cnn} (HessianOperator)", cnn.operator),
        ]:
            reference = la.eigenvalues(factory(), 5, tol=1e-10, subspace_size=60).values
            block_size_table(name, factory, reference)
        elapsed()
    if "sharing" in sections:
        start = time.perf_counter()
        cnn_H = trained_hessian(args.cnn, samples=args.cnn_samples, cache=args.cache).matrix
        print(
            f"\ndigits CNN {args.cnn}: {cnn_H.shape[0]} parameters; trained, dense Hessian over "
            f"{args.cnn_samples} samples in {time.perf_counter() - start:.0f} s"
        )
        sharing_table("digits MLP", H, args.seeds)
        sharing_table(f"digits CNN {args.cnn}", cnn_H, args.seeds)
        elapsed()
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()

"""One product budget for the trace and the eigenvalues: ``analyze --metrics trace,eigenvalues``
before (separate analyses) and after (one analysis, the trace deflating the eigen search).

Networks trained by the demo's protocol (``tests/linalg/_networks.py``: digits with 40% label
noise), with their exact float64 Hessians formed column by column: ``mlp:hidden=24,depth=1``
(1,810 parameters, 512 samples) and the demo's ``cnn:width=8`` (6,274 parameters, 256
samples). Every run is a real
:func:`flatscope.analyze` in float64 on one batch, over ``--seeds`` seeds:

- ``separate``: ``analyze(..., "eigenvalues")`` plus ``analyze(..., "trace")`` with Hutch++
  (analyze's default) or XTrace (today's best estimator per product) at ``--num-matvecs``;
  their products add up;
- ``shared N``: ``analyze(..., "trace,eigenvalues", num_matvecs=N)``: the search for the top 5
  eigenvalues (tol 1e-3) grows its Krylov space to ``N / 2`` vectors and the trace takes it
  exactly, Hutch++ estimating the deflated rest with the remaining products.

Columns: median total products of the pair, median relative error of ``hessian_trace``, the
fraction of seeds whose ``value ± 1.96 stderr`` holds the exact trace, the median of
``|error| / stderr``, and the worst relative error of the 5 eigenvalues (median over seeds).
Targets (issue 16): today's accuracy (separate, Hutch++) with <= 0.6x the total products, or at
equal total products a trace error <= 0.5x today's best separate estimator's.

Section ``blocks`` (issue 18.3): products and accuracy of analyze's top-5 search per block size
on the same Hessians. Section ``modes``: CPU time per column of the two double-backward column
modes (``loop``, ``batched``) at 8 and 32 columns on these networks and on the zoo's
``cnn:width=39`` (139,357 parameters, 512 digits), interleaved repeats, and the largest
relative difference between their products.

    OMP_NUM_THREADS=1 python benchmarks/shared_products.py [--seeds 30] [--sections ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flatscope.linalg as la  # noqa: E402
from flatscope.app.analyze import analyze  # noqa: E402
from flatscope.data.datasets import load_data  # noqa: E402
from flatscope.models.zoo import build_model  # noqa: E402
from flatscope.operators import HessianOperator  # noqa: E402
from tests.linalg._networks import trained_network  # noqa: E402

NETWORKS = (("mlp:hidden=24,depth=1", 512), ("cnn:width=8", 256))
SHARED_BUDGETS = (40, 60, 80, 100, 120)
TOP_K, EIG_TOL = 5, 1e-3
Z95 = 1.959963984540054
F64 = torch.float64


def _median(values) -> float:
    return float(statistics.median(values))


class Problem:
    """A trained network, its analysis data and its exact Hessian's trace and top eigenvalues."""

    def __init__(self, spec: str, samples: int) -> None:
        self.network = trained_network(spec, samples=samples)
        op = self.operator()
        d = op.shape[0]
        # every column of H by the operator in float64 (the operator is tested against
        # torch.autograd.functional.hessian; this is faster at d = 6,274)
        H = torch.cat([op @ torch.eye(d, dtype=F64)[:, i : i + 512] for i in range(0, d, 512)], 1)
        self.name, self.d, self.H = spec, d, (H + H.mT) / 2
        self.trace = float(self.H.trace())
        self.top = torch.linalg.eigvalsh(self.H).flip(0)[:TOP_K]

    def operator(self, hvp: str = "auto") -> HessianOperator:
        net = self.network
        return HessianOperator(net.model, net.loss_fn, [(net.inputs, net.targets)], hvp=hvp)

    def analyze(self, metrics: str, seed: int, **settings) -> dict:
        net = self.network
        report = analyze(
            net.model,
            net.loss_fn,
            [(net.inputs, net.targets)],
            metrics,
            progress=False,
            seed=seed,
            dtype="float64",
            top_k=TOP_K,
            eig_tol=EIG_TOL,
            **settings,
        )
        return report.metrics


class Row:
    """Per-seed outcomes of one way to get the pair."""

    def __init__(self, label: str) -> None:
        self.label, self.products, self.errors, self.z, self.eig_errors = label, [], [], [], []

    def add(self, problem: Problem, products: int, trace: dict, eig: dict) -> None:
        error = trace["value"] - problem.trace
        self.products.append(products)
        self.errors.append(abs(error) / abs(problem.trace))
        self.z.append(abs(error) / trace["stderr"] if trace["stderr"] else float("inf"))
        values = torch.tensor(eig["values"], dtype=torch.float64)
        self.eig_errors.append(float(((values - problem.top) / problem.top).abs().max()))

    @property
    def error(self) -> float:
        return _median(self.errors)

    @property
    def hvps(self) -> float:
        return _median(self.products)

    def line(self) -> str:
        cover = sum(z <= Z95 for z in self.z) / len(self.z)
        return (
            f"{self.label:<34}{self.hvps:>7.0f}{self.error:>13.2e}{cover:>9.0%}"
            f"{_median(self.z):>9.2f}{_median(self.eig_errors):>12.1e}"
        )


def sharing_table(problem: Problem, seeds: int, num_matvecs: int) -> None:
    print(
        f"\n[{problem.name}] d = {problem.d}, tr H = {problem.trace:.6g}, top-{TOP_K} at tol "
        f"{EIG_TOL:g}, {seeds} seeds, analyze in float64"
    )
    print(f"{'run':<34}{'HVPs':>7}{'median err':>13}{'cover':>9}{'|z| med':>9}{'eig err':>12}")
    separate = {
        method: Row(f"separate: eig + {method}({num_matvecs})") for method in ("hutchpp", "xtrace")
    }
    shared = {n: Row(f"shared: trace,eigenvalues N={n}") for n in SHARED_BUDGETS}
    for seed in range(seeds):
        eig = problem.analyze("eigenvalues", seed)["top_eigenvalues"]
        for method, row in separate.items():
            trace = problem.analyze("trace", seed, trace_method=method, num_matvecs=num_matvecs)
            trace = trace["hessian_trace"]
            row.add(problem, eig["num_matvecs"] + trace["num_matvecs"], trace, eig)
        for n, row in shared.items():
            metrics = problem.analyze("trace,eigenvalues", seed, num_matvecs=n)
            trace, pair = metrics["hessian_trace"], metrics["top_eigenvalues"]
            total = trace["deflation"]["total_matvecs"]
            if total != pair["num_matvecs"] + trace["num_matvecs"]:
                raise AssertionError("the pair's products do not add up")
            row.add(problem, total, trace, pair)
    for row in [*separate.values(), *shared.values()]:
        print(row.line())
    today, best = separate["hutchpp"], min(separate.values(), key=lambda row: row.error)
    reached = [row.hvps for row in shared.values() if row.error <= today.error]
    if reached:
        ratio = min(reached) / today.hvps
        verdict = "met" if ratio <= 0.6 else "not met"
        print(
            f"today's accuracy ({today.error:.2e} at {today.hvps:.0f} HVPs) with "
            f"{min(reached):.0f} HVPs: {ratio:.2f}x the products (target <= 0.6: {verdict})"
        )
    else:
        print("no shared budget reached today's accuracy")
    equal = [row.error for row in shared.values() if row.hvps <= today.hvps]
    ratio = min(equal) / best.error if equal else float("nan")
    print(
        f"at <= {today.hvps:.0f} HVPs the shared error is {ratio:.2f}x the best separate "
        f"estimator's ({best.label.split(' + ')[1]}) (target <= 0.5: "
        f"{'met' if ratio <= 0.5 else 'not met'})"
    )


def block_table(problem: Problem, seeds: int) -> None:
    """analyze's top-5 search per block size (issue 18.3), on the operator as analyze builds it."""
    print(f"\n[{problem.name}] top-{TOP_K} at tol {EIG_TOL:g} per block size, {seeds} seeds")
    print(f"{'block':>6}{'HVPs':>7}{'max rel err':>13}{'converged':>11}")
    for block in (1, 2, TOP_K):
        runs = [
            la.eigenvalues(problem.operator(), TOP_K, tol=EIG_TOL, seed=s, block_size=block)
            for s in range(seeds)
        ]
        errors = [float(((r.values - problem.top) / problem.top).abs().max()) for r in runs]
        converged = sum(r.converged for r in runs)
        hvps = _median([r.num_matvecs for r in runs])
        print(f"{block:>6}{hvps:>7.0f}{_median(errors):>13.1e}{converged:>8}/{seeds}")


def _large_cnn_operator(hvp: str) -> HessianOperator:
    bundle = load_data("digits", "train", subset=512, seed=0, batch_size=512)
    model = build_model("cnn:width=39", seed=0)
    return HessianOperator(model, torch.nn.CrossEntropyLoss(), bundle.batches(), hvp=hvp)


def modes_table(problems: list[Problem], repeats: int) -> None:
    """CPU time per column of the loop and batched double backward (kept graph, one batch)."""
    print(f"\ncolumn modes of double backward, CPU time per column (median of {repeats})")
    header = f"{'columns':>8}{'loop s':>10}{'batched s':>11}{'batched/loop':>14}"
    print(f"{'network':<24}{header}{'max rel diff':>14}")
    cases = [(p.name, p.operator) for p in problems]
    cases.append(("cnn:width=39 (float32)", _large_cnn_operator))
    for name, make in cases:
        ops = {
            mode: make(hvp)
            for mode, hvp in (("loop", "double_backward"), ("batched", "batched_double_backward"))
        }
        d = ops["loop"].shape[0]
        for columns in (8, 32):
            V = torch.randn(d, columns, generator=torch.Generator().manual_seed(1)).to(
                ops["loop"].dtype
            )
            products = {mode: op @ V for mode, op in ops.items()}  # builds the kept graphs
            times = {mode: [] for mode in ops}
            for _ in range(repeats):
                for mode, op in ops.items():  # interleaved
                    start = time.process_time()
                    op @ V
                    times[mode].append((time.process_time() - start) / columns)
            loop, batched = _median(times["loop"]), _median(times["batched"])
            diff = float(
                (
                    (products["loop"] - products["batched"]).norm(dim=0)
                    / products["loop"].norm(dim=0)
                ).max()
            )
            ratio = batched / loop
            print(f"{name:<24}{columns:>8}{loop:>10.4f}{batched:>11.4f}{ratio:>14.2f}{diff:>14.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--num-matvecs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sections", default="sharing,blocks,modes")
    parser.add_argument("--networks", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--cnn", default="cnn:width=8", help="the CNN's zoo spec")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = set(args.sections.split(","))
    chosen = set(args.networks.split(","))
    started = time.perf_counter()
    networks = [(args.cnn if spec.startswith("cnn") else spec, n) for spec, n in NETWORKS]
    problems = [Problem(spec, n) for spec, n in networks if spec.split(":")[0] in chosen]
    print(f"(networks and exact Hessians ready in {time.perf_counter() - started:.0f} s)")
    for problem in problems:
        if "sharing" in sections:
            sharing_table(problem, args.seeds, args.num_matvecs)
        if "blocks" in sections:
            block_table(problem, min(args.seeds, 10))
    if "modes" in sections:
        modes_table(problems, args.repeats)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

"""Cross-library agreement: flatscope, hessian-eigenthings and curvlinops on the same model and
data, against the exact dense Hessian, with time and peak memory side by side.

Two problems, both in float64 with equal-size batches (hessian-eigenthings averages batch
Hessians without weights, so equal sizes make all three the Hessian of the same mean loss):

``mlp-digits``  the zoo's ``mlp:hidden=32,depth=2`` (3,466 parameters, seeded weights) on the
                first 1,792 scikit-learn digits in 7 batches of 256, cross-entropy.
``gpt2-lm``     a GPT-2-shaped causal LM (vocabulary 96, width 16, 2 layers, seeded weights)
                on 32 random sequences of 16 tokens in 4 batches of 8, next-token
                cross-entropy: flatscope with ``CausalLMLogits`` and ``causal_lm``, the other two
                with a plain shifted ``cross_entropy`` of the same logits (not
                hessian-eigenthings' ``hf_lm_loss``: the model's ``labels=`` loss casts the
                logits to float32, which would cap any float64 comparison near 1e-7). The model
                uses eager attention: with PyTorch's fused attention, the CPU default,
                hessian-eigenthings' double backward and curvlinops' forward-mode products both
                fail (fused kernels have no second derivatives); flatscope switches to the math
                kernel itself.

For each library, three measurements, each in a fresh subprocess (one thread): one HVP with a
fixed random vector (relative difference from the dense ``H v``), the 5 largest eigenvalues
(largest relative error against ``eigvalsh`` of the dense Hessian, and the HVPs spent: flatscope's
Lanczos to ``tol=1e-6`` with block size 1, as ``flatscope analyze`` runs it, and block Lanczos
with block size 5 (``flatscope, block 5``); hessian-eigenthings' Lanczos, ``which="LA"``, 60 steps,
``tol=1e-6``; curvlinops through ``scipy.sparse.linalg.eigsh(which="LA", tol=1e-6)`` on its
``to_scipy()`` operator, as curvlinops documents) and the trace by Hutch++ with 60 HVPs (value,
standard error where the library gives one, error against the exact trace). The dense reference
is ``torch.autograd.functional.hessian`` of the mean loss over all batches. Peak memory is the
RSS high-water mark above the RSS before the library built its operator (so its own setup
checks count), time the CPU seconds of the step in the one-thread process after one untimed
product (``benchmarks/_peak.py``).
Ratios are library / flatscope.

    python benchmarks/cross_library.py [--problems mlp-digits,gpt2-lm]

Needs ``pip install "hessian-eigenthings==1.0.0a5"`` and curvlinops. ``pip install
curvlinops-for-pytorch`` pulls backpack-for-pytorch, whose torchvision requirement replaces a CPU
torch with a CUDA build; install it without that:
``pip install --no-deps curvlinops-for-pytorch backpack-for-pytorch einconv unfoldNd`` then
``pip install einops opt-einsum linear_operator``. A library that cannot be imported or run is
reported with the reason in the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peak import MIB, in_subprocess, max_rss, measure, rss  # noqa: E402

STEPS = ("hvp", "eigen", "trace")
#: The table's rows: (row name, module it needs, steps measured).
ROWS = (
    ("flatscope", "flatscope", STEPS),
    ("flatscope, block 5", "flatscope", ("eigen",)),
    ("hessian-eigenthings", "hessian_eigenthings", STEPS),
    ("curvlinops", "curvlinops", STEPS),
)
PROBLEMS = ("mlp-digits", "gpt2-lm")
TOP_K, EIG_TOL, TRACE_MATVECS, HE_LANCZOS_STEPS = 5, 1e-6, 60, 60


# ----------------------------------------------------------------------------- the problems


class Problem:
    """A model in eval mode, equal-size float64 batches and flatscope's loss for them."""

    def __init__(self, name: str) -> None:
        torch.set_default_dtype(torch.float64)
        self.name = name
        if name == "mlp-digits":
            self._digits()
        else:
            self._gpt2()
        self.model.eval()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.dimension = sum(p.numel() for p in self.params)

    def _digits(self) -> None:
        from sklearn.datasets import load_digits

        from flatscope.models import build_model

        digits = load_digits()
        x = torch.tensor(digits.images[:1792] / 16.0).unsqueeze(1)
        y = torch.tensor(digits.target[:1792])
        self.model = build_model("mlp:hidden=32,depth=2", seed=0).double()
        self.batches = list(zip(x.split(256), y.split(256), strict=True))
        self.loss_fn = F.cross_entropy

    def _gpt2(self) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        from flatscope.models.hf import CausalLMLogits
        from flatscope.models.losses import build_loss

        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=96, n_embd=16, n_layer=2, n_head=2, n_positions=16, bos_token_id=0,
            eos_token_id=0, attn_implementation="eager",
        )  # fmt: skip
        self.model = CausalLMLogits(GPT2LMHeadModel(config).double().eval())
        ids = torch.randint(0, 96, (32, 16), generator=torch.Generator().manual_seed(1))
        self.batches = [(chunk, chunk) for chunk in ids.split(8)]
        self.loss_fn = build_loss("causal_lm")

    def flat_loss(self, weights: torch.Tensor) -> torch.Tensor:
        """The mean loss over all batches at the flat parameter vector ``weights``."""
        names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        shapes = [p.shape for p in self.params]
        pieces = torch.split(weights, [math.prod(s) for s in shapes])
        tensors = {n: w.view(s) for n, w, s in zip(names, pieces, shapes, strict=True)}
        total = sum(
            self.loss_fn(torch.func.functional_call(self.model, tensors, (x,)), y) * len(y)
            for x, y in self.batches
        )
        return total / sum(len(y) for _, y in self.batches)

    def probe(self) -> torch.Tensor:
        return torch.randn(self.dimension, generator=torch.Generator().manual_seed(7))


class _Counted:
    """Counts the products of a ``v -> A v`` callable."""

    def __init__(self, product: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.product, self.count = product, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.count += 1 if v.ndim == 1 else v.shape[1]
        return self.product(v)


# ---------------------------------------------------------------------------- the libraries


def _flatscope(problem: Problem, step: str, block_size: int = 1) -> dict[str, Any]:
    import flatscope as fs

    op = fs.HessianOperator(problem.model, problem.loss_fn, problem.batches)
    warm = {"warm": lambda: op @ problem.probe().flip(0)}
    if step == "hvp":
        v = problem.probe()
        return {"run": lambda: op @ v, **warm}

    def eigen() -> dict[str, Any]:
        result = fs.eigenvalues(op, TOP_K, "largest", EIG_TOL, 2000, seed=0, block_size=block_size)
        return {"values": result.values.tolist(), "matvecs": result.num_matvecs}

    def trace() -> dict[str, Any]:
        estimate = fs.trace(op, "hutchpp", TRACE_MATVECS, seed=0)
        return {"value": estimate.value, "stderr": estimate.stderr}

    return {"run": eigen if step == "eigen" else trace, **warm}


def _hessian_eigenthings(problem: Problem, step: str) -> dict[str, Any]:
    import hessian_eigenthings as he

    loss = F.cross_entropy if problem.name == "mlp-digits" else _shifted_cross_entropy
    op = he.HessianOperator(problem.model, problem.batches, he.supervised_loss(loss))
    warm = {"warm": lambda: op.matvec(problem.probe().flip(0))}
    counted = _Counted(op.matvec)
    op.matvec = counted  # count the products the algorithms ask for
    if step == "hvp":
        v = problem.probe()
        return {"run": lambda: counted(v), **warm}

    def eigen() -> dict[str, Any]:
        result = he.lanczos(op, k=TOP_K, max_iter=HE_LANCZOS_STEPS, tol=EIG_TOL, which="LA", seed=0)
        values = sorted(torch.as_tensor(result.eigenvalues).tolist())
        return {"values": values, "matvecs": counted.count}

    def trace() -> dict[str, Any]:
        estimate = he.trace(op, num_matvecs=TRACE_MATVECS, method="hutch++", seed=0)
        return {"value": float(estimate.estimate), "stderr": float(estimate.stderr)}

    return {"run": eigen if step == "eigen" else trace, **warm}


class _MeanLoss(torch.nn.Module):
    """A loss module with ``reduction = "mean"``, which curvlinops reads to weight batches."""

    reduction = "mean"

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, targets)


def _shifted_cross_entropy(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def _curvlinops(problem: Problem, step: str) -> dict[str, Any]:
    import curvlinops
    from scipy.sparse.linalg import LinearOperator, eigsh

    loss = F.cross_entropy if problem.name == "mlp-digits" else _shifted_cross_entropy
    H = curvlinops.HessianLinearOperator(
        problem.model, _MeanLoss(loss), problem.params, problem.batches
    )
    warm = {"warm": lambda: H @ problem.probe().flip(0)}
    if step == "hvp":
        v = problem.probe()
        return {"run": lambda: H @ v, **warm}

    def eigen() -> dict[str, Any]:
        scipy_op = H.to_scipy()
        counted = _Counted(scipy_op.matvec)
        op = LinearOperator(scipy_op.shape, matvec=counted, dtype=scipy_op.dtype)
        values = eigsh(op, k=TOP_K, which="LA", tol=EIG_TOL, return_eigenvectors=False)
        return {"values": sorted(values.tolist()), "matvecs": counted.count}

    def trace() -> dict[str, Any]:
        torch.manual_seed(0)
        return {"value": float(curvlinops.hutchpp_trace(H, TRACE_MATVECS)), "stderr": None}

    return {"run": eigen if step == "eigen" else trace, **warm}


SETUPS = {
    "flatscope": _flatscope,
    "flatscope, block 5": lambda problem, step: _flatscope(problem, step, block_size=TOP_K),
    "hessian-eigenthings": _hessian_eigenthings,
    "curvlinops": _curvlinops,
}


# ------------------------------------------------------------------------------- workers


def _reference(problem: Problem, out: Path) -> dict[str, Any]:
    weights = torch.cat([p.detach().reshape(-1) for p in problem.params])
    measured: dict[str, Any] = {}

    def dense() -> None:
        measured["H"] = torch.autograd.functional.hessian(problem.flat_loss, weights)

    with sdpa_kernel(SDPBackend.MATH):  # in case a model uses fused attention (no 2nd derivative)
        cost = measure(dense, torch.device("cpu"))
    H = measured["H"]
    H = (H + H.T) / 2
    torch.save(H @ problem.probe(), out / f"{problem.name}-reference-hv.pt")
    eigenvalues = torch.linalg.eigvalsh(H)
    return {
        "values": eigenvalues[-TOP_K:].tolist(),
        "trace": float(H.trace()),
        "dimension": problem.dimension,
        **cost,
    }


def worker(library: str, step: str, problem_name: str, out: Path) -> dict[str, Any]:
    """One measurement in this process (the dense reference when ``library`` is reference)."""
    torch.set_num_threads(1)
    problem = Problem(problem_name)
    if library == "reference":
        return _reference(problem, out)
    before = rss()
    setup = SETUPS[library](problem, step)  # the library's operator, with its own checks
    setup["warm"]()  # one product first: first-call costs are setup, not the step
    measured: dict[str, Any] = {}

    def run() -> None:
        measured["result"] = setup["run"]()

    cost = measure(run, torch.device("cpu"))
    # peak over building the operator and the step, above the memory before either
    cost["peak_mib"] = (max_rss() - before) / MIB
    result = measured["result"]
    if step == "hvp":
        product = torch.as_tensor(result).reshape(-1)
        torch.save(product, out / f"{problem_name}-{library}-hv.pt")
        return cost
    return {**result, **cost}


# ------------------------------------------------------------------------------ the table


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base <= 0:
        return "n/a"
    return f"{value / base:.2f}"


def _accuracy(
    step: str, result: dict[str, Any], reference: dict[str, Any], name: str, library: str, out: Path
) -> list[str]:
    """The step's accuracy cells against the dense reference."""
    if step == "hvp":
        hv = torch.load(out / f"{name}-{library}-hv.pt")
        return [f"{_relative(hv, torch.load(out / f'{name}-reference-hv.pt')):.1e}"]
    if step == "eigen":
        top = torch.tensor(sorted(result["values"])[-TOP_K:], dtype=torch.float64)
        exact = torch.tensor(reference["values"], dtype=torch.float64)
        error = float(((top - exact).abs() / exact.abs()).max())
        return [f"{error:.2e}", str(result["matvecs"])]
    stderr = "" if result["stderr"] is None else f" ± {result['stderr']:.3g}"
    error = abs(result["value"] - reference["trace"]) / abs(reference["trace"])
    return [f"{result['value']:.5g}{stderr}", f"{error:.1e}"]


ACCURACY_COLUMNS = {
    "hvp": ["||Hv - Hv_exact|| / ||Hv_exact||"],
    "eigen": [f"top-{TOP_K} max rel. error", "HVPs"],
    "trace": [f"Hutch++ ({TRACE_MATVECS} HVPs)", "rel. error"],
}
TITLES = {"hvp": "one HVP", "eigen": f"top-{TOP_K} eigenvalues", "trace": "trace"}


def _problem_table(name: str, results: dict[str, dict[str, Any]], out: Path) -> None:
    from flatscope.app.compare import format_table

    reference = results["reference"]
    if "error" in reference:
        print(f"\n{name}: the dense reference failed: {reference['error']}")
        return
    print(
        f"\n== {name}: {reference['dimension']} parameters; exact trace {reference['trace']:.6g};"
        f" exact top-{TOP_K} {', '.join(f'{v:.6g}' for v in reference['values'])}"
        f" (dense Hessian: {reference['seconds']:.1f} CPU s)"
    )
    for step in STEPS:
        base = results["flatscope"][step]
        rows = []
        for library, _, steps in ROWS:
            if step not in steps:
                continue
            result = results[library][step]
            if "error" in result:
                rows.append([library, f"could not run: {result['error']}"])
                continue
            cells = _accuracy(step, result, reference, name, library, out)
            cells += [f"{result['seconds']:.3f}", f"{result['peak_mib']:.1f}"]
            if "error" not in base:
                cells += [
                    _ratio(result["seconds"], base["seconds"]),
                    _ratio(result["peak_mib"], base["peak_mib"]),
                ]
            rows.append([library, *cells])
        header = ["library", *ACCURACY_COLUMNS[step], "CPU s", "peak MiB"]
        header += ["time / flatscope", "memory / flatscope"]
        width = len(header)
        rows = [row + [""] * (width - len(row)) for row in rows]
        print(f"\n{TITLES[step]}")
        print(format_table(header, rows, markdown=False))


def _available(module: str) -> str | None:
    """Why ``module`` cannot be imported here, or ``None``."""
    try:
        __import__(module)
    except Exception as error:  # noqa: BLE001 - report whatever stops the import
        return f"import {module} failed: {type(error).__name__}: {error}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument(
        "--worker", nargs=4, metavar=("LIBRARY", "STEP", "PROBLEM", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        library, step, problem, out = args.worker
        print(json.dumps(worker(library, step, problem, Path(out))))
        return
    missing = {library: _available(module) for library, module, _ in ROWS}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.problems.split(","):
            results: dict[str, Any] = {
                "reference": in_subprocess(__file__, "--worker", "reference", "-", name, directory)
            }
            for library, _, steps in ROWS:
                results[library] = {
                    step: {"error": missing[library]}
                    if missing[library]
                    else in_subprocess(__file__, "--worker", library, step, name, directory)
                    for step in steps
                }
            _problem_table(name, results, Path(directory))


if __name__ == "__main__":
    main()

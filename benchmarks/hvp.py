"""Hessian-vector product cost and memory, side by side in one run: gradient, flatscope, PyHessian.

Two problems, each as ONE batch (the case PyHessian keeps a graph for):

- ``cnn``: the zoo's digits CNN (``cnn``, 24,058 parameters) on all 1,797 digits;
- ``resnet``: a thin ResNet-18 (``resnet18:width=20``, 1,094,750 parameters) on
  ``--resnet-samples`` CIFAR-shaped random images (3 x 32 x 32, 10 classes).

Cases, timed in interleaved repeats (process CPU time on the CPU, with ``--threads`` torch
threads; wall time with synchronisation on CUDA), reported as medians per probe column and as
ratios:

- ``gradient``: ``Objective.gradient()``;
- ``flatscope HVP kept`` / ``recomputed``: ``HessianOperator(objective) @ v`` with the
  first-order graph kept between products (the default) or rebuilt each time
  (``graph_budget=0``); on the CPU products are double backward (reverse-over-reverse);
- ``PyHessian HVP cached`` / ``recomputed``: PyHessian 0.1's single-batch mode (one graph built
  by ``loss.backward(create_graph=True)``, products by ``hessian_vector_product``) and its
  ``dataloader_hv_product``; without PyHessian installed (``pip install pyhessian==0.1``, the
  ``pyhessian`` extra) the same cached double backward written inline stands in, and the table
  says so;
- ``curvlinops HVP`` / ``hessian-eigenthings HVP``: ``HessianLinearOperator @ v`` of
  curvlinops and ``HessianOperator.matvec`` of hessian-eigenthings, when installed (both redo the
  forward and first backward pass for every product);
- ``matmat 8`` / ``matmat 32``: ``op @ V`` with 8 and 32 columns (the default column mode of the
  device: a loop on the CPU), and ``batched 8`` / ``forward 8`` for the other modes
  (``hvp="batched_double_backward"``, ``hvp="forward"``).

Peak memory of one call of each case, relative to a gradient's: on the CPU the resident-set
high-water mark of a fresh subprocess (``/proc/self/clear_refs`` resets it after the setup; glibc
returns large blocks at once with ``MALLOC_MMAP_THRESHOLD_``), on CUDA
``torch.cuda.max_memory_allocated``. The activation memory ``A`` that flatscope measures on its
first product is printed with them, and the memory per column of the batched and forward modes
in units of ``A`` (what ``flatscope.operators.hessian.COLUMN_COST`` assumes). On the problems of
``--estimator-problems`` (the ResNet by default) the same is measured for one run of each
estimator at ``--estimator-matvecs`` products (issue 18.4): Hutchinson, Hutch++ and XTrace
traces, the top-5 eigenvalues (Lanczos, at most that many products) and an SLQ density (4 probes).

Every flatscope case is printed as a ratio to each peer's single HVP (PyHessian cached and
recomputed, curvlinops, hessian-eigenthings) that is installed.

Targets (issue 16 and 18): one HVP <= 1.0x PyHessian's cached HVP and <= 2.2x a gradient; per
probe at 32 columns <= 0.6x PyHessian's HVP.

    python benchmarks/hvp.py [--problems cnn,resnet] [--repeats 3] [--device cpu] [--threads 1]
        [--resnet-samples 32] [--estimator-matvecs 64] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from sklearn.datasets import load_digits
from torch import nn

import flatscope as fs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peak import seconds  # noqa: E402

TIMED = {  # case: probe columns
    "gradient": 1,
    "flatscope HVP kept": 1,
    "flatscope HVP recomputed": 1,
    "PyHessian HVP cached": 1,
    "PyHessian HVP recomputed": 1,
    "matmat 8": 8,
    "matmat 32": 32,
    "batched 8": 8,
    "forward 8": 8,
    "curvlinops HVP": 1,
    "hessian-eigenthings HVP": 1,
}
PEERS = ("PyHessian HVP cached", "PyHessian HVP recomputed", "curvlinops HVP",
         "hessian-eigenthings HVP")  # fmt: skip
MEMORY = ("gradient", "flatscope HVP kept", "flatscope HVP recomputed", *PEERS, "matmat 32",
          "batched 8", "forward 8", "batched 1", "batched 8 unchunked", "forward 1",
          "forward 8 unchunked")  # fmt: skip
ESTIMATORS = ("Hutchinson", "Hutch++", "XTrace", "eigenvalues", "density")  # peak memory only


@dataclass
class Problem:
    name: str
    spec: str
    model: nn.Module
    batch: tuple[torch.Tensor, torch.Tensor]


def _problem(name: str, device: torch.device, resnet_samples: int) -> Problem:
    torch.manual_seed(0)
    if name == "cnn":
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
        y = torch.tensor(digits.target)
        spec = "cnn"
    else:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(resnet_samples, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (resnet_samples,), generator=generator)
        spec = "resnet18:width=20"
    model = fs.build_model(spec, seed=0).to(device).eval()
    return Problem(name, spec, model, (x.to(device), y.to(device)))


def _pyhessian(problem: Problem, cached: bool) -> tuple[Callable[[torch.Tensor], object], str]:
    """One HVP of PyHessian's (or of the inline cached reference) on the problem's batch."""
    model, loss_fn = problem.model, nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]

    def pieces(v: torch.Tensor) -> list[torch.Tensor]:
        return [t.view_as(p) for t, p in zip(torch.split(v, sizes), params, strict=True)]

    state: dict[str, object] = {}  # built by the first call, as flatscope's kept graph is

    try:
        from pyhessian import hessian
        from pyhessian.utils import hessian_vector_product
    except ImportError:
        if not cached:
            return None, "inline"

        def inline(v: torch.Tensor) -> object:
            if "grads" not in state:
                loss = loss_fn(model(problem.batch[0]), problem.batch[1])
                state["grads"] = torch.autograd.grad(loss, params, create_graph=True)
            return torch.autograd.grad(state["grads"], params, pieces(v), retain_graph=True)

        return inline, "inline cached double backward (PyHessian is not installed)"
    cuda = problem.batch[0].is_cuda

    def product(v: torch.Tensor) -> object:
        if "ph" not in state:
            if cached:
                state["ph"] = hessian(model, loss_fn, data=problem.batch, cuda=cuda)
            else:
                state["ph"] = hessian(model, loss_fn, dataloader=[problem.batch], cuda=cuda)
        ph = state["ph"]
        if cached:
            return hessian_vector_product(ph.gradsH, ph.params, pieces(v))
        return ph.dataloader_hv_product(pieces(v))

    return product, "PyHessian 0.1"


def _peer(problem: Problem, name: str) -> Callable[[torch.Tensor], object] | None:
    """One HVP of curvlinops' or hessian-eigenthings' operator on the problem's batch (both
    recompute the forward and first backward pass per product), or None when not installed."""
    model, params = problem.model, [p for p in problem.model.parameters() if p.requires_grad]
    try:
        if name == "curvlinops HVP":
            import curvlinops

            loss = nn.CrossEntropyLoss()
            H = curvlinops.HessianLinearOperator(model, loss, params, [problem.batch])
            return lambda v: H @ v
        import hessian_eigenthings as he

        loss = he.supervised_loss(nn.functional.cross_entropy)
        op = he.HessianOperator(model, [problem.batch], loss)
        return op.matvec
    except ImportError:
        return None


def _estimator(op: fs.HessianOperator, name: str, matvecs: int) -> Callable[[], object]:
    """One estimator run on ``op`` spending about ``matvecs`` products."""
    if name == "eigenvalues":
        return lambda: fs.eigenvalues(op, k=5, tol=1e-12, max_matvecs=matvecs, seed=0)
    if name == "density":
        return lambda: fs.spectral_density(op, num_steps=matvecs // 4, num_probes=4, seed=0)
    method = {"Hutchinson": "hutchinson", "Hutch++": "hutchpp", "XTrace": "xtrace"}[name]
    return lambda: fs.trace(op, method, matvecs, seed=0)


def _cases(
    problem: Problem, names: tuple[str, ...], matvecs: int = 0
) -> tuple[dict[str, Callable], str]:
    """Zero-argument callables, one per case, and the name of the PyHessian reference."""
    objective = fs.Objective(problem.model, nn.CrossEntropyLoss(), [problem.batch])
    d = objective.dim
    device = objective.device
    g = torch.Generator(device=device).manual_seed(0)
    V = torch.randn(d, 32, device=device, generator=g)
    v = V[:, 0].contiguous()
    reference = "n/a"

    def operator(**options) -> fs.HessianOperator:
        return fs.HessianOperator(objective, **options)

    builders: dict[str, Callable[[], Callable]] = {
        "gradient": lambda: objective.gradient,
        "flatscope HVP kept": lambda: (lambda op: lambda: op @ v)(operator()),
        "flatscope HVP recomputed": lambda: (lambda op: lambda: op @ v)(operator(graph_budget=0)),
        "matmat 8": lambda: (lambda op: lambda: op @ V[:, :8])(operator()),
        "matmat 32": lambda: (lambda op: lambda: op @ V)(operator()),
        "batched 8": lambda: (lambda op: lambda: op @ V[:, :8])(
            operator(hvp="batched_double_backward")
        ),
        "batched 1": lambda: (lambda op: lambda: op @ V[:, :1])(
            operator(hvp="batched_double_backward")
        ),
        "forward 8": lambda: (lambda op: lambda: op @ V[:, :8])(operator(hvp="forward")),
        "forward 1": lambda: (lambda op: lambda: op @ V[:, :1])(operator(hvp="forward")),
        "forward 8 unchunked": lambda: (lambda op: lambda: op @ V[:, :8])(
            operator(hvp="forward", probe_batch_size=8)
        ),
        "batched 8 unchunked": lambda: (lambda op: lambda: op @ V[:, :8])(
            operator(hvp="batched_double_backward", probe_batch_size=8)
        ),
    }
    cases = {}
    for name in names:
        if name.startswith("PyHessian"):
            product, reference = _pyhessian(problem, cached=name.endswith("cached"))
        elif name in PEERS:
            product = _peer(problem, name)
        elif name in ESTIMATORS:
            cases[name] = _estimator(operator(), name, matvecs)
            continue
        if name in PEERS:
            if product is not None:
                cases[name] = lambda product=product: product(v)
        else:
            cases[name] = builders[name]()
    return cases, reference


# --------------------------------------------------------------------------- time
def _time(problem: Problem, repeats: int, device: torch.device) -> tuple[dict[str, float], str]:
    cases, reference = _cases(problem, tuple(TIMED))
    for fn in cases.values():  # warm-up: builds and keeps the graphs, fixes the chunk sizes
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(repeats):
        order = list(cases.items())
        for name, fn in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(seconds(fn, device) / TIMED[name])
    return {name: statistics.median(t) for name, t in times.items()}, reference


# --------------------------------------------------------------------------- memory
def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(
    problem: Problem, case: str, device: torch.device, matvecs: int
) -> dict[str, float]:
    """Peak bytes of one call of ``case`` beyond what the setup holds (run in a subprocess,
    after the same case on two samples, so that imports and first-call caches are not
    counted)."""
    tiny = Problem(problem.name, problem.spec, problem.model, tuple(t[:2] for t in problem.batch))
    for fn in _cases(tiny, (case,), matvecs)[0].values():
        fn()
    problem.model.zero_grad(set_to_none=True)  # PyHessian leaves gradients with graphs
    cases, _ = _cases(problem, (case,), matvecs)
    (fn,) = cases.values()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return {"peak": torch.cuda.max_memory_allocated() - base}
    base = _rss_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the high-water mark starts again from the current RSS
    fn()
    return {"peak": _rss_bytes("VmHWM") - base}


def _activation_bytes(problem: Problem) -> int:
    """``A`` as flatscope measures it on its first product."""
    op = fs.HessianOperator(
        fs.Objective(problem.model, nn.CrossEntropyLoss(), [problem.batch]), hvp="forward"
    )
    op @ torch.zeros(op.shape[0], 1, device=op.device)
    return op.activation_bytes


def _memory(args: argparse.Namespace, problem: Problem, cases: tuple[str, ...]) -> dict:
    """Peak bytes of each case, each in a fresh subprocess."""
    peaks = {}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    for case in cases:
        command = [sys.executable, __file__, "--memory-child", f"{problem.name}:{case}"]
        command += ["--device", args.device, "--threads", str(args.threads)]
        command += ["--resnet-samples", str(args.resnet_samples)]
        command += ["--estimator-matvecs", str(args.estimator_matvecs)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            peaks[case] = float("nan")
            print(f"  {case}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        peaks[case] = json.loads(done.stdout.strip().splitlines()[-1])["peak"]
    return peaks


# --------------------------------------------------------------------------- report
def _report(problem: Problem, median: dict[str, float], reference: str, peaks, A: int) -> None:
    d = sum(p.numel() for p in problem.model.parameters())
    n = problem.batch[1].shape[0]
    print(f"\n## {problem.spec}: d = {d:,} parameters, {n} samples in one batch")
    print(f"PyHessian reference: {reference}")
    g = median["gradient"]
    print(f"{'case':28s} {'ms/probe':>10s} {'x gradient':>11s}")
    for name, t in median.items():
        print(f"{name:28s} {1e3 * t:10.1f} {t / g:11.2f}")
    targets = {("flatscope HVP kept", "PyHessian HVP cached"): 1.0,
               ("matmat 32", "PyHessian HVP cached"): 0.6}  # fmt: skip
    checks = [("HVP kept / gradient", median["flatscope HVP kept"], g, 2.2)]
    for peer in PEERS:  # every flatscope case against every peer's single HVP
        for case in ("flatscope HVP kept", "flatscope HVP recomputed", "matmat 32"):
            short = case.removeprefix("flatscope ").replace(" 32", " 32 per probe")
            label = f"{short} / {peer.replace(' HVP', '')}"
            checks.append((label, median[case], median.get(peer), targets.get((case, peer))))
    for label, num, den, target in checks:
        if den is None:
            continue
        ratio = num / den
        verdict = (
            ""
            if target is None
            else f"  target <= {target}: " + ("met" if ratio <= target else "NOT met")
        )
        print(f"ratio {label:48s} {ratio:5.2f}{verdict}")
    if peaks:
        base = peaks["gradient"]
        print(f"peak memory (A = {A / 2**20:.1f} MiB of activations measured by flatscope)")
        print(f"{'case':28s} {'MiB':>8s} {'x gradient':>11s}")
        for name, peak in peaks.items():
            print(f"{name:28s} {peak / 2**20:8.1f} {peak / base:11.2f}")
        for mode in ("batched", "forward"):
            one, eight = peaks[f"{mode} 1"], peaks[f"{mode} 8 unchunked"]
            print(
                f"{mode}: {one / A:.2f} A for one column, {(eight - one) / 7 / A:.2f} A per "
                f"further column; the gradient {base / A:.2f} A"
            )


def _estimator_report(problem: Problem, peaks: dict, args: argparse.Namespace) -> None:
    """Peak memory of each estimator at a fixed number of products, beside a gradient's."""
    d = sum(p.numel() for p in problem.model.parameters())
    m = args.estimator_matvecs
    print(f"peak memory per estimator at {m} products (eigenvalues: top 5, at most {m}; "
          f"density: 4 SLQ probes x {m // 4} steps)")  # fmt: skip
    print(f"{'estimator':28s} {'MiB':>8s} {'x gradient':>11s} {'bytes/param':>12s}")
    for name, peak in peaks.items():
        print(f"{name:28s} {peak / 2**20:8.1f} {peak / peaks['gradient']:11.2f} {peak / d:12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--problems", default="cnn,resnet")
    parser.add_argument("--resnet-samples", type=int, default=32)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--estimator-problems", default="resnet", help="problems with the estimators' memory"
    )
    parser.add_argument("--estimator-matvecs", type=int, default=64, help="products each")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_child:
        name, case = args.memory_child.split(":", 1)
        problem = _problem(name, device, args.resnet_samples)
        peak = _memory_child(problem, case, device, args.estimator_matvecs)
        print(json.dumps(peak))
        return
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"medians of {args.repeats} interleaved repeats "
        f"({'wall' if device.type == 'cuda' else 'process CPU'} time)"
    )
    for name in args.problems.split(","):
        problem = _problem(name, device, args.resnet_samples)
        median, reference = _time(problem, args.repeats, device)
        installed = tuple(case for case in MEMORY if case not in PEERS or case in median)
        peaks = None if args.no_memory else _memory(args, problem, installed)
        _report(problem, median, reference, peaks, _activation_bytes(problem))
        if not args.no_memory and name in args.estimator_problems.split(","):
            _estimator_report(problem, _memory(args, problem, ("gradient", *ESTIMATORS)), args)


if __name__ == "__main__":
    main()

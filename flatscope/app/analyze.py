"""One call from a model, a loss and data to a flatness report: :func:`analyze`.

The analysis builds one :class:`~flatscope.operators.hessian.HessianOperator` (the Hessian of
the mean loss over all of ``data``) and runs the requested metrics on it, each written to the
report as soon as it is done (see :mod:`flatscope.io.report`):

==============  ===========================================================================
metric          report entries
==============  ===========================================================================
(always)        ``loss``: the mean loss ``L(w)``; ``gradient_norm``: ``||grad L(w)||_2``
``trace``       ``hessian_trace``: ``tr H`` by :func:`flatscope.linalg.trace` with its standard
                error and the trace of each parameter tensor's diagonal block (``per_block``)
``eigenvalues`` ``top_eigenvalues`` (``top_k`` largest) and, if ``bottom_k > 0``,
                ``bottom_eigenvalues`` (most negative) by block Lanczos
                (:func:`flatscope.linalg.eigenvalues`); each value ``theta`` comes with its
                residual norm ``||H y - theta y||``, which bounds the distance from ``theta`` to
                the nearest eigenvalue of ``H`` (Parlett, *The Symmetric Eigenvalue Problem*,
                Thm. 4.5.1), so it is the value's error bar
``density``     ``spectral_density``: stochastic Lanczos quadrature nodes and weights
                (:func:`flatscope.linalg.spectral_density`)
``diagonal``    ``hessian_diagonal``: Hutchinson estimate of ``diag H``
                (:func:`flatscope.linalg.diagonal`), stored as a summary (sum, mean, min, max
                and per-block mean, min, max); the full ``values`` and ``stderr`` lists are
                added only when ``d <= DIAGONAL_FULL_LIMIT`` parameters, to keep reports small
``sharpness``   ``sharpness``: ``{"average": ..., "worst_case": ...}`` from
                :func:`flatscope.landscape.sharpness.average_sharpness` (``sigma``, with its
                second-order prediction ``(sigma^2 / 2) tr H``) and
                :func:`~flatscope.landscape.sharpness.worst_case_sharpness` (``rho``)
==============  ===========================================================================

Every estimator is seeded with the same ``seed``, so ``flatscope.trace(op, method,
num_matvecs, seed)`` on the same operator reproduces the report's ``hessian_trace``. With
``out`` the report lives in ``out/report.json``; ``resume=True`` keeps the finished metrics of
a report made from the same inputs and settings and computes only the missing ones, which
gives the same numbers as one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flatscope.data.datasets import DataBundle
from flatscope.errors import FlatscopeError, OutputError
from flatscope.io.checkpoint import LoadedCheckpoint
from flatscope.io.report import Report
from flatscope.linalg import diagonal, eigenvalues, spectral_density, trace
from flatscope.linalg.trace import METHODS as TRACE_METHODS
from flatscope.models.losses import LossFn, build_loss
from flatscope.models.losses import loss_spec as canonical_loss_spec
from flatscope.operators.base import LinearOperator
from flatscope.operators.distributed import barrier, get_rank, shard_batches
from flatscope.operators.hessian import HessianOperator
from flatscope.operators.params import select_parameters
from flatscope.progress import Progress

__all__ = [
    "AnalysisError",
    "AnalysisSettings",
    "DEFAULT_METRICS",
    "DIAGONAL_FULL_LIMIT",
    "METRICS",
    "REPORT_NAME",
    "analyze",
    "parse_metrics",
    "check_output_dir",
    "summary",
]

#: Metric groups a user asks for, and the report entries each one writes, in run order.
METRICS: dict[str, tuple[str, ...]] = {
    "trace": ("hessian_trace",),
    "eigenvalues": ("top_eigenvalues", "bottom_eigenvalues"),
    "density": ("spectral_density",),
    "diagonal": ("hessian_diagonal",),
    "sharpness": ("sharpness",),
}
DEFAULT_METRICS = ("trace", "eigenvalues", "density")
#: ``hessian_diagonal`` keeps every entry only up to this many parameters.
DIAGONAL_FULL_LIMIT = 10_000
#: Perturbations of average-case sharpness and ascent steps of worst-case sharpness.
SHARPNESS_SAMPLES = 32
SHARPNESS_STEPS = 20
REPORT_NAME = "report.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class AnalysisError(FlatscopeError, ValueError):
    """Analysis inputs that cannot work: an unknown metric, a bad setting, a non-finite loss."""


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """Everything besides model, loss and data that determines an analysis' numbers.

    Attributes:
        seed: seeds every estimator's probes.
        dtype: ``"float32"`` or ``"float64"``, the dtype of every Hessian product.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; ``None`` for the model's device.
        params: parameter names or globs to analyse (``None``: all trainable parameters).
        trace_method: a method of :func:`flatscope.linalg.trace` (``hutchpp``, ``hutchinson``,
            ``na_hutchpp``, ``xtrace``).
        num_matvecs: Hessian-vector products of the trace and the diagonal estimates.
        top_k, bottom_k: how many largest and most negative eigenvalues to find.
        eig_tol: eigenvalues stop when every residual is at most ``eig_tol * max|theta|``.
        eig_max_matvecs: product budget of each eigenvalue search.
        density_steps, density_probes: Lanczos steps per probe and probes of the density.
        sharpness_sigma: standard deviation of the Gaussian weight perturbation.
        sharpness_rho: radius of the l2 ball of worst-case sharpness.
    """

    seed: int = 0
    dtype: str = "float32"
    device: str | None = None
    params: tuple[str, ...] | None = None
    trace_method: str = "hutchpp"
    num_matvecs: int = 100
    top_k: int = 5
    bottom_k: int = 0
    eig_tol: float = 1e-3
    eig_max_matvecs: int = 500
    density_steps: int = 90
    density_probes: int = 2
    sharpness_sigma: float = 0.01
    sharpness_rho: float = 0.05

    def __post_init__(self) -> None:
        for name, minimum in (
            ("seed", 0),
            ("num_matvecs", 2),
            ("top_k", 1),
            ("bottom_k", 0),
            ("eig_max_matvecs", 1),
            ("density_steps", 1),
            ("density_probes", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise AnalysisError(f"{_flag(name)} must be an integer >= {minimum}, got {value!r}")
        for name in ("eig_tol", "sharpness_sigma", "sharpness_rho"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise AnalysisError(f"{_flag(name)} must be a positive number, got {value!r}")
            if not math.isfinite(value):
                raise AnalysisError(f"{_flag(name)} must be finite, got {value!r}")
        if self.trace_method not in TRACE_METHODS:
            raise AnalysisError(
                f"unknown {_flag('trace_method')} {self.trace_method!r}; choose one of "
                f"{', '.join(TRACE_METHODS)}"
            )
        if self.dtype not in DTYPES:
            raise AnalysisError(
                f"{_flag('dtype')} must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        if isinstance(self.params, str):
            object.__setattr__(self, "params", (self.params,))
        elif self.params is not None:
            object.__setattr__(self, "params", tuple(self.params))
        if self.device is not None:
            object.__setattr__(self, "device", str(_check_device(self.device)))

    def to_dict(self) -> dict[str, Any]:
        """The settings as the report stores them."""
        out = dataclasses.asdict(self)
        out["params"] = None if self.params is None else list(self.params)
        return out


def _check_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise AnalysisError(f"unknown {_flag('device')} {device!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AnalysisError(
                f"device {str(device)!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AnalysisError(
                f"device {str(device)!r} does not exist: {torch.cuda.device_count()} GPU(s) found"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise AnalysisError("device 'mps' was requested but MPS is not available; use cpu")
    elif device.type != "cpu":
        raise AnalysisError(f"unsupported {_flag('device')} {str(device)!r}; use cpu or cuda")
    return device


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """Validate metric names (a list or a comma-separated string; ``"all"`` selects every one).

    Returns the names in run order (the order of :data:`METRICS`), without duplicates.
    """
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [str(name).strip() for name in names if str(name).strip()]
    if not names:
        raise AnalysisError(f"no metrics given; choose from {', '.join(METRICS)} or all")
    if "all" in names:
        return tuple(METRICS)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise AnalysisError(
            f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)} or all"
        )
    return tuple(name for name in METRICS if name in names)


def check_output_dir(out: str | os.PathLike) -> Path:
    """Check, without creating anything, that ``out`` can become a directory holding a report.

    Raises:
        OutputError: ``out`` or one of its ancestors is a file, the nearest existing ancestor
            is not writable, or ``out/report.json`` is a directory.
    """
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write to {out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: {existing} is not writable")
    if (out / REPORT_NAME).is_dir():
        raise OutputError(f"cannot write {out / REPORT_NAME}: it is a directory")
    return out


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {out}: {err.strerror or err}") from err


# ----------------------------------------------------------------------------- the inputs


def _weights_sha256(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checkpoint_header(checkpoint: LoadedCheckpoint | None, model: nn.Module) -> dict[str, Any]:
    if checkpoint is None:
        return {"path": None, "sha256": _weights_sha256(model), "layout": None}
    return {
        "path": str(checkpoint.path),
        "sha256": checkpoint.sha256,
        "layout": checkpoint.layout,
    }


def _data_header(data: Any, data_spec: str | None) -> tuple[Any, dict[str, Any]]:
    """The batches the operator reads, and the report's description of them."""
    if isinstance(data, DataBundle):
        header = {
            "spec": data_spec or data.spec,
            "split": data.split,
            "subset": None if data.indices is None else len(data),
            "seed": data.seed,
            "batch_size": data.batch_size,
            "label_noise": None if data.label_noise is None else data.label_noise.spec,
        }
        # under torch.distributed each rank takes every world-th batch: the operator's
        # all-reduced weighted sums then cover every sample once
        return shard_batches(data.batches()), header
    return data, {"spec": data_spec or "custom"}


def _loss(loss_fn: str | LossFn, spec: str | None) -> tuple[LossFn, str]:
    if isinstance(loss_fn, str):
        return build_loss(loss_fn), spec or canonical_loss_spec(loss_fn)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a loss spec or a callable, got {type(loss_fn).__name__}")
    name = getattr(loss_fn, "__qualname__", None) or type(loss_fn).__qualname__
    return loss_fn, spec or name


def _operator(
    model: nn.Module, loss_fn: LossFn, batches: Any, s: AnalysisSettings
) -> HessianOperator:
    try:
        select_parameters(model, s.params)
    except ValueError as err:
        raise AnalysisError(f"{_flag('params')}: {err}") from None
    return HessianOperator(
        model, loss_fn, batches, s.params, device=s.device, dtype=DTYPES[s.dtype]
    )


def _check_finite(what: str, value: float) -> None:
    if not math.isfinite(value):
        raise AnalysisError(
            f"the {what} on the data is {value}: the weights or the data hold extreme values "
            "(a diverged run?) or the loss does not fit the model's outputs"
        )


# ------------------------------------------------------------------------------- runners


class _Ticking(LinearOperator):
    """The operator with a progress tick per product batch (``k`` columns advance ``k``)."""

    def __init__(self, operator: LinearOperator, progress: Progress) -> None:
        super().__init__(operator.shape, operator.dtype, operator.device, operator.blocks)
        self.operator = operator
        self.progress = progress

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.operator @ V
        self.progress.update(V.shape[1])
        return out


@dataclasses.dataclass
class _Context:
    model: nn.Module
    loss_fn: LossFn
    batches: Any
    operator: HessianOperator
    settings: AnalysisSettings
    progress: bool

    def run(self, label: str, total: int | None, compute: Callable[[LinearOperator], Any]) -> Any:
        with Progress(label, total, enabled=self.progress) as bar:
            return compute(_Ticking(self.operator, bar))


def _run_trace(ctx: _Context) -> dict[str, Any]:
    s = ctx.settings
    return ctx.run(
        "hessian_trace",
        s.num_matvecs,
        lambda op: trace(op, s.trace_method, s.num_matvecs, s.seed).to_dict(),
    )


def _run_eigenvalues(ctx: _Context, k: int, which: str) -> dict[str, Any]:
    s = ctx.settings
    k = min(k, ctx.operator.shape[0])

    def compute(op: LinearOperator) -> dict[str, Any]:
        result = eigenvalues(op, k, which, s.eig_tol, s.eig_max_matvecs, s.seed).to_dict()
        return {**result, "tol": s.eig_tol}

    return ctx.run(f"{which} eigenvalues", s.eig_max_matvecs, compute)


def _run_density(ctx: _Context) -> dict[str, Any]:
    s = ctx.settings
    return ctx.run(
        "spectral_density",
        s.density_steps * s.density_probes,
        lambda op: spectral_density(op, s.density_steps, s.density_probes, s.seed).to_dict(),
    )


def _diagonal_summary(values: torch.Tensor, stderr: torch.Tensor, blocks: Mapping[str, slice]):
    def stats(x: torch.Tensor) -> dict[str, float]:
        return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}

    out: dict[str, Any] = {"dimension": values.numel(), "sum": float(values.sum())}
    out.update(stats(values))
    out["per_block"] = {name: stats(values[block]) for name, block in blocks.items()}
    if values.numel() <= DIAGONAL_FULL_LIMIT:
        out["values"], out["stderr"] = values.tolist(), stderr.tolist()
    return out


def _run_diagonal(ctx: _Context) -> dict[str, Any]:
    s = ctx.settings

    def compute(op: LinearOperator) -> dict[str, Any]:
        estimate = diagonal(op, s.num_matvecs, s.seed)
        summary = _diagonal_summary(estimate.values, estimate.stderr, ctx.operator.blocks)
        return {**summary, "num_matvecs": estimate.num_matvecs}

    return ctx.run("hessian_diagonal", s.num_matvecs, compute)


def _run_sharpness(ctx: _Context) -> dict[str, Any]:
    from flatscope.landscape.sharpness import average_sharpness, worst_case_sharpness

    s = ctx.settings
    common = {
        "seed": s.seed,
        "params": s.params,
        "device": s.device,
        "dtype": DTYPES[s.dtype],
    }
    with Progress("sharpness", None, unit="", enabled=ctx.progress):
        average = average_sharpness(
            ctx.model,
            ctx.loss_fn,
            ctx.batches,
            s.sharpness_sigma,
            num_samples=SHARPNESS_SAMPLES,
            trace_method=s.trace_method,
            trace_matvecs=s.num_matvecs,
            **common,
        )
        worst = worst_case_sharpness(
            ctx.model, ctx.loss_fn, ctx.batches, s.sharpness_rho, steps=SHARPNESS_STEPS, **common
        )
    return {"average": average.to_dict(), "worst_case": worst.to_dict()}


_RUNNERS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "hessian_trace": _run_trace,
    "top_eigenvalues": lambda ctx: _run_eigenvalues(ctx, ctx.settings.top_k, "largest"),
    "bottom_eigenvalues": lambda ctx: _run_eigenvalues(ctx, ctx.settings.bottom_k, "smallest"),
    "spectral_density": _run_density,
    "hessian_diagonal": _run_diagonal,
    "sharpness": _run_sharpness,
}


def _entries(metrics: Sequence[str], settings: AnalysisSettings) -> list[str]:
    entries = [entry for name in metrics for entry in METRICS[name]]
    if settings.bottom_k == 0 and "bottom_eigenvalues" in entries:
        entries.remove("bottom_eigenvalues")
    return entries


# ------------------------------------------------------------------------------ analyze


def analyze(
    model: nn.Module,
    loss_fn: str | LossFn,
    data: DataBundle | Any,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    figures: bool = True,
    progress: bool = True,
    checkpoint: LoadedCheckpoint | None = None,
    model_spec: str | None = None,
    data_spec: str | None = None,
    loss_spec: str | None = None,
    **settings: Any,
) -> Report:
    """Analyse the flatness of ``model`` at its current weights and return the report.

    Args:
        model: the network (left unchanged; products run in eval mode).
        loss_fn: a loss spec (``"cross_entropy"``, ``"mse"``, ``"pkg.mod:fn"``) or a callable
            ``loss_fn(outputs, targets)`` returning the batch-mean loss.
        data: a :class:`~flatscope.data.datasets.DataBundle` (from
            :func:`~flatscope.data.datasets.load_data`), a ``DataLoader`` without shuffling, a
            list of ``(inputs, targets)`` batches or one such tuple.
        metrics: names from :data:`METRICS` (or ``"all"``), as a list or a comma-separated
            string. ``loss`` and ``gradient_norm`` are always recorded.
        out: a directory for ``report.json`` and the figures; ``None`` keeps the report in
            memory. Its writability is checked before anything is computed.
        resume: keep the finished metrics of ``out/report.json`` if it was made from the same
            checkpoint (or weights), model, data, loss and settings; otherwise
            :class:`~flatscope.errors.ReportError`. Without it an old report is replaced.
        figures: with ``out``, render the figures of
            :func:`flatscope.plotting.report_figures.render_report` after the metrics.
        progress: draw progress bars on stderr (only when it is a terminal).
        checkpoint: the checkpoint the weights came from, recorded in the report; without it
            the report records the SHA-256 of the weights.
        model_spec, data_spec, loss_spec: how the report names the model, data and loss
            (defaults: the checkpoint's model spec or the model's class; the bundle's spec or
            ``"custom"``; the loss spec or the callable's name).
        **settings: fields of :class:`AnalysisSettings` (``seed``, ``dtype``, ``num_matvecs``,
            ``top_k``, ...).

    Raises:
        AnalysisError: unknown metric or bad setting, a ``--params`` pattern matching nothing,
            a non-finite loss or gradient. OutputError: ``out`` cannot be written.
            ReportError: ``resume`` against a report made from other inputs.
    """
    try:
        config = AnalysisSettings(**settings)
    except TypeError as err:
        names = ", ".join(field.name for field in dataclasses.fields(AnalysisSettings))
        raise TypeError(f"analyze() got an unknown setting ({err}); settings are {names}") from None
    entries = _entries(parse_metrics(metrics), config)
    out = None if out is None else check_output_dir(out)
    loss_fn, loss_name = _loss(loss_fn, loss_spec)
    batches, data_info = _data_header(data, data_spec)
    operator = _operator(model, loss_fn, batches, config)
    if config.device is None:
        config = dataclasses.replace(config, device=str(operator.device))

    started = time.perf_counter()
    loss = operator.loss()
    _check_finite("loss", loss)
    loss_seconds = time.perf_counter() - started

    header = {
        "checkpoint": _checkpoint_header(checkpoint, model),
        "model": model_spec
        or (checkpoint.model_spec if checkpoint is not None else None)
        or f"{type(model).__module__}.{type(model).__qualname__}",
        "data": {**data_info, "num_samples": operator.num_samples},
        "loss": loss_name,
        "settings": config.to_dict(),
    }
    path = None if out is None else out / REPORT_NAME
    writer = get_rank() == 0  # under torch.distributed only rank 0 writes files
    if path is not None and resume and path.exists():
        report = Report.resume_or_new(path, header)
        barrier()  # every rank has read the finished metrics before rank 0 adds any
        if not writer:
            report.path = None
    else:
        if out is not None and writer:
            _make_dir(out)
        report = Report.new(header, path if writer else None)

    if not report.has_metric("loss"):
        report.set_metric("loss", loss, loss_seconds)
    if not report.has_metric("gradient_norm"):
        started = time.perf_counter()
        gradient_norm = float(operator.gradient().norm())
        _check_finite("gradient norm", gradient_norm)
        report.set_metric("gradient_norm", gradient_norm, time.perf_counter() - started)
    context = _Context(model, loss_fn, batches, operator, config, progress and writer)
    for entry in entries:
        if report.has_metric(entry):
            continue
        started = time.perf_counter()
        value = _RUNNERS[entry](context)
        report.set_metric(entry, value, time.perf_counter() - started)
    if out is not None and figures and writer:
        from flatscope.plotting.report_figures import render_report

        render_report(report, out)
    return report


# ------------------------------------------------------------------------------ summary


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _pm(value: Any, error: Any) -> str:
    return _number(value) + ("" if error is None else f" ± {_number(error)}")


def _describe(name: str, entry: Any) -> tuple[str, Any]:
    """One line of text and the products spent for a report entry."""
    if name in ("loss", "gradient_norm"):
        return _number(entry), None
    if name == "hessian_trace":
        return f"{_pm(entry['value'], entry['stderr'])}  ({entry['method']})", entry["num_matvecs"]
    if name in ("top_eigenvalues", "bottom_eigenvalues"):
        values = ", ".join(_number(v) for v in entry["values"])
        note = "" if entry["converged"] else ", not converged"
        residual = _number(max(entry["residuals"], default=None))
        return f"{values}  (residuals <= {residual}{note})", entry["num_matvecs"]
    if name == "spectral_density":
        nodes = torch.tensor(entry["nodes"], dtype=torch.float64)
        used = nodes[torch.tensor(entry["weights"], dtype=torch.float64) > 0]
        shape = f"{nodes.shape[0]} probes x {nodes.shape[1]} steps"
        support = f"[{_number(float(used.min()))}, {_number(float(used.max()))}]"
        return f"support {support}  ({shape})", entry["num_matvecs"]
    if name == "hessian_diagonal":
        text = f"sum {_number(entry['sum'])}, min {_number(entry['min'])}, max "
        return text + _number(entry["max"]), entry["num_matvecs"]
    if name == "sharpness":
        average, worst = entry["average"], entry["worst_case"]
        text = (
            f"avg {_pm(average['value'], average['stderr'])} (sigma {_number(average['sigma'])}, "
            f"2nd order {_number(average['second_order'])}); worst {_number(worst['value'])} "
            f"(rho {_number(worst['rho'])})"
        )
        return text, average["trace_num_matvecs"]
    return "(see report)", None


def summary(report: Report | Mapping[str, Any]) -> str:
    """A short table of a report's metrics with the products and seconds each one took."""
    document = report.to_dict() if isinstance(report, Report) else report
    data = document["data"]
    lines = [
        f"flatscope analysis of {document['checkpoint'].get('path') or 'an in-memory model'}",
        f"model {document['model']}; data {data['spec']} ({data['num_samples']} samples); "
        f"loss {document['loss']}",
        f"{'metric':<19} {'value':<56} {'HVPs':>5} {'seconds':>8}",
    ]
    for name, entry in document["metrics"].items():
        text, products = _describe(name, entry)
        seconds = document["timings"].get(name)
        lines.append(
            f"{name:<19} {text:<56} {'' if products is None else products:>5} "
            f"{'' if seconds is None else f'{seconds:.2f}':>8}"
        )
    return "\n".join(lines)

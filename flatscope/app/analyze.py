"""One call from a model, a loss and data to a flatness report: :func:`analyze`.

The analysis builds one curvature operator of the mean loss over all of ``data``, as the
``curvature`` setting asks: the Hessian (:class:`~flatscope.operators.hessian.HessianOperator`,
the default), the generalized Gauss-Newton matrix (:class:`~flatscope.operators.ggn.GGNOperator`,
with the closed-form output Hessian for the ``cross_entropy`` and ``causal_lm`` losses) or the
empirical Fisher (:class:`~flatscope.operators.fisher.EmpiricalFisherOperator`), and runs the
requested metrics of the registry (:mod:`flatscope.metrics`: ``trace``, ``eigenvalues``,
``density``, ``diagonal``, ``sharpness``; the loss and the gradient norm always) on it, each
report entry written as soon as it is done (see :mod:`flatscope.io.report`). Each metric's
module documents its entries.

Every estimator is seeded with the same ``seed``, so ``flatscope.trace(op, method,
num_matvecs, seed)`` on the same operator reproduces the report's ``hessian_trace``. When the
analysis computes the largest eigenvalues too, the two share one budget: the eigen search runs
first, grows its Krylov space to half of ``num_matvecs`` and the trace deflates it
(``flatscope.trace(op, method, entry["num_matvecs"], seed, deflate=search)``, see
:mod:`flatscope.metrics.trace`); the eigen search uses block size 1, which reached analyze's
tolerance in the fewest products (``benchmarks/shared_products.py --sections blocks``). With
``out`` the report lives in ``out/report.json``; ``resume=True`` keeps the finished metrics of
a report made from the same inputs and settings and computes only the missing ones, which
gives the same numbers as one uninterrupted run of the same metrics (a trace finished by an
analysis without the eigenvalues is kept undeflated, as its entry says).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from flatscope.app.inputs import load_checkpoint_inputs
from flatscope.data.datasets import DataBundle
from flatscope.io.checkpoint import LoadedCheckpoint
from flatscope.io.output import check_output_dir, make_output_dir
from flatscope.io.report import Report
from flatscope.io.run_folder import REPORT_NAME
from flatscope.metrics import (
    REGISTRY,
    AnalysisContext,
    AnalysisError,
    AnalysisSettings,
    default_metrics,
    entries_of,
    metric_of,
    parse_metrics,
)
from flatscope.metrics.budget import check_problem_size
from flatscope.metrics.settings import flag
from flatscope.models.losses import LOSSES, LossFn, build_loss
from flatscope.models.losses import loss_spec as canonical_loss_spec
from flatscope.objective import Objective
from flatscope.operators.curvature import CurvatureOperator
from flatscope.operators.distributed import barrier, get_rank, shard_batches
from flatscope.operators.fisher import EmpiricalFisherOperator
from flatscope.operators.ggn import GGNOperator
from flatscope.operators.hessian import HessianOperator
from flatscope.operators.output_hessian import (
    OutputHessian,
    causal_lm_output_hessian,
    cross_entropy_output_hessian,
)
from flatscope.operators.params import select_parameters

__all__ = ["analyze", "analyze_checkpoint", "summary"]


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


def _tensors_sha256(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 of tensors' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _data_header(data: Any, data_spec: str | None) -> tuple[Any, dict[str, Any]]:
    """The batches the operator reads, and the report's description of them.

    For a :class:`DataBundle` the description says where every number came from: the split
    and its size, the seeded subset (its size, seed and the SHA-256 of the sample positions in
    the split), the label noise (canonical spec and its seed) and the SHA-256 of the targets
    analysed, in order, so two reports on different noisy labels or samples never look alike.
    """
    if not isinstance(data, DataBundle):
        return data, {"spec": data_spec or "custom"}
    batches = data.batches()
    noise = data.label_noise
    header = {
        "spec": data_spec or data.spec,
        "split": data.split,
        "split_size": len(data) if data.indices is None else data.split_size,
        "subset": None if data.indices is None else len(data),
        "seed": data.seed,
        "indices_sha256": None if data.indices is None else _tensors_sha256([data.indices]),
        "batch_size": data.batch_size,
        "label_noise": None if noise is None else noise.spec,
        "label_noise_seed": None if noise is None else noise.seed,
        "labels_sha256": _tensors_sha256(targets for _, targets in batches),
    }
    # under torch.distributed each rank takes every world-th batch: the operator's
    # all-reduced weighted sums then cover every sample once
    return shard_batches(batches), header


def _loss(loss_fn: str | LossFn, spec: str | None) -> tuple[LossFn, str]:
    if isinstance(loss_fn, str):
        return build_loss(loss_fn), spec or canonical_loss_spec(loss_fn)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a loss spec or a callable, got {type(loss_fn).__name__}")
    name = getattr(loss_fn, "__qualname__", None) or type(loss_fn).__qualname__
    return loss_fn, spec or name


def _output_hessian(loss_fn: str | LossFn) -> OutputHessian | None:
    """The closed-form output Hessian of a built-in softmax cross-entropy loss named by its
    spec, else ``None`` (autograd; a callable is never taken for a built-in by its name): it
    keeps no graph of the vocabulary-sized logits (:mod:`flatscope.operators.output_hessian`)."""
    if not isinstance(loss_fn, str):
        return None
    parsed = LOSSES.parse(loss_fn)
    if parsed.is_import:
        return None
    if parsed.name == "cross_entropy":
        return cross_entropy_output_hessian()
    if parsed.name == "causal_lm":
        return causal_lm_output_hessian(dict(parsed.kwargs).get("reduction", "token"))
    return None


def _operator(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    s: AnalysisSettings,
    output_hessian: OutputHessian | None,
) -> CurvatureOperator:
    """The curvature of the analysis's one objective (one sample-counting pass), which the
    sharpness metric reuses through ``operator.objective``."""
    try:
        select_parameters(model, s.params)
    except ValueError as err:
        raise AnalysisError(f"{flag('params')}: {err}") from None
    objective = Objective(model, loss_fn, batches, s.params, device=s.device, dtype=s.torch_dtype)
    if s.curvature == "ggn":
        return GGNOperator(objective, output_hessian=output_hessian)
    if s.curvature == "fisher":
        return EmpiricalFisherOperator(objective)
    return HessianOperator(objective)


# ------------------------------------------------------------------------------ analyze


def analyze(
    model: nn.Module,
    loss_fn: str | LossFn,
    data: DataBundle | Any,
    metrics: str | Iterable[str] | None = None,
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
        metrics: names from :data:`flatscope.metrics.REGISTRY` (or ``"all"``), as a list or
            a comma-separated string; ``None`` runs the default ones (trace, eigenvalues,
            density). ``loss`` and ``gradient_norm`` are always recorded.
        out: a directory for ``report.json`` and the figures; ``None`` keeps the report in
            memory. Its writability is checked before anything is computed.
        resume: keep the finished metrics of ``out/report.json`` if it was made from the same
            checkpoint (or weights), model, data, loss and settings; otherwise
            :class:`~flatscope.errors.ReportError`. Without it an old report is replaced.
        figures: with ``out``, render the figures of
            :func:`flatscope.app.plot.render_report` after the metrics.
        progress: show progress on stderr (redrawn bars on a terminal, a line every tenth or
            30 seconds elsewhere) and, for analyses expected to take 10 seconds or more, the
            cost estimate once the first products are timed (:mod:`flatscope.metrics.budget`).
        checkpoint: the checkpoint the weights came from, recorded in the report; without it
            the report records the SHA-256 of the weights.
        model_spec, data_spec, loss_spec: how the report names the model, data and loss
            (defaults: the checkpoint's model spec or the model's class; the bundle's spec or
            ``"custom"``; the loss spec or the callable's name).
        **settings: fields of :class:`~flatscope.metrics.settings.AnalysisSettings` (``seed``,
            ``dtype``, ``budget``, ``num_matvecs``, ``top_k``, ...); the ``budget`` preset sets
            the product budgets not given one by one.

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
    chosen = default_metrics() if metrics is None else parse_metrics(metrics)
    entries = entries_of(chosen, config)
    out = None if out is None else check_output_dir(out, REPORT_NAME)
    output_hessian = None if config.curvature != "ggn" else _output_hessian(loss_fn)
    loss_fn, loss_name = _loss(loss_fn, loss_spec)
    batches, data_info = _data_header(data, data_spec)
    operator = _operator(model, loss_fn, batches, config, output_hessian)
    check_problem_size(config, entries, operator.shape[0], config.torch_dtype, operator.device)
    if config.device is None:
        config = dataclasses.replace(config, device=str(operator.device))

    writer = get_rank() == 0  # under torch.distributed only rank 0 writes files
    context = AnalysisContext(
        model, loss_fn, batches, operator, config, progress and writer, entries=tuple(entries)
    )
    started = time.perf_counter()
    loss = REGISTRY["loss"].compute("loss", context)  # a non-finite loss fails before any file
    loss_seconds = time.perf_counter() - started

    header = {
        "checkpoint": _checkpoint_header(checkpoint, model),
        "model": model_spec
        or (checkpoint.model_spec if checkpoint is not None else None)
        or f"{type(model).__module__}.{type(model).__qualname__}",
        "data": {**data_info, "num_samples": operator.num_samples},
        "num_params": operator.shape[0],  # the parameters analysed
        "loss": loss_name,
        "settings": config.to_dict(),
    }
    path = None if out is None else out / REPORT_NAME
    if path is not None and resume and path.exists():
        defaults = {
            f"settings.{field.name}": field.default
            for field in dataclasses.fields(AnalysisSettings)
            if field.default is not dataclasses.MISSING
        }
        report = Report.resume_or_new(path, header, defaults)
        barrier()  # every rank has read the finished metrics before rank 0 adds any
        if not writer:
            report.path = None
    else:
        if out is not None and writer:
            make_output_dir(out)
        report = Report.new(header, path if writer else None)

    if not report.has_metric("loss"):
        report.set_metric("loss", loss, loss_seconds)
    pending = [entry for entry in compute_order(entries) if not report.has_metric(entry)]
    # the products each entry plans to spend: timed by the first products, the cost estimate
    context.plan = {entry: metric_of(entry).budget(entry, config) for entry in pending}
    for entry in pending:
        started = time.perf_counter()
        value = metric_of(entry).compute(entry, context)
        report.set_metric(entry, value, time.perf_counter() - started)
    if out is not None and figures and writer:
        from flatscope.app.plot import render_report

        render_report(report, out)
    return report


def compute_order(entries: list[str]) -> list[str]:
    """``entries`` with each one's :attr:`~flatscope.metrics.Metric.reuses` computed before it
    (the eigen search before the trace that deflates it), so that every entry's time and
    progress bar are its own."""
    ordered: list[str] = []
    for entry in entries:
        reused = [e for e in metric_of(entry).reuses if e in entries and e not in ordered]
        ordered += [*reused, *([] if entry in ordered else [entry])]
    return ordered


def analyze_checkpoint(
    path: str | os.PathLike,
    metrics: str | Iterable[str] | None = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    figures: bool = True,
    progress: bool = True,
    **settings: Any,
) -> Report:
    """:func:`analyze` of a checkpoint file, read as
    :func:`flatscope.app.inputs.load_checkpoint_inputs` reads it.

    Args:
        path: the checkpoint.
        metrics, out, resume, figures, progress, settings: as for :func:`analyze` (the
            ``seed`` setting also draws the data subset).
        inputs: keywords of :func:`~flatscope.app.inputs.load_checkpoint_inputs` (``model``,
            ``data``, ``split``, ``subset``, ``batch_size``, ``loss``, ...).
    """
    loaded = load_checkpoint_inputs(path, seed=settings.get("seed", 0), **(inputs or {}))
    return analyze(
        loaded.model,
        loaded.loss,
        loaded.data,
        metrics,
        out=out,
        resume=resume,
        figures=figures,
        progress=progress,
        checkpoint=loaded.checkpoint,
        model_spec=loaded.model_spec,
        **settings,
    )


# ------------------------------------------------------------------------------ summary


def summary(report: Report | Mapping[str, Any]) -> str:
    """A short table of a report's metrics with the products and seconds each one took."""
    document = report.to_dict() if isinstance(report, Report) else report
    lines = [
        f"flatscope analysis of {document['checkpoint'].get('path') or 'an in-memory model'}",
        f"model {document['model']}; loss {document['loss']}; curvature "
        f"{(document.get('settings') or {}).get('curvature', 'hessian')}",
        *data_lines(document["data"]),
        f"{'metric':<21} {'value':<56} {'HVPs':>5} {'seconds':>8}",
    ]
    for name, entry in document["metrics"].items():
        metric = metric_of(name)
        text = "(see report)" if metric is None else metric.describe(name, entry)
        products = None if metric is None else metric.products(name, entry)
        seconds = document["timings"].get(name)
        lines.append(
            f"{name:<21} {text:<56} {'' if products is None else products:>5} "
            f"{'' if seconds is None else f'{seconds:.2f}':>8}"
        )
    for name, entry in document["metrics"].items():
        metric = metric_of(name)
        lines += [] if metric is None else metric.details(name, entry)
    return "\n".join(lines)


def data_lines(data: Mapping[str, Any]) -> list[str]:
    """The report's data header in words: which samples of which split, with which labels
    (for example ``256 of 1,079 samples (seeded subset, seed 0)``)."""
    count = data.get("num_samples")
    samples = f"{count:,} samples" if isinstance(count, int) else "samples"
    total = data.get("split_size")
    if data.get("subset") is not None and isinstance(total, int):
        samples = f"{samples.removesuffix(' samples')} of {total:,} samples (seeded subset, seed "
        samples += f"{data.get('seed')}, indices sha256 {str(data.get('indices_sha256'))[:12]})"
    elif isinstance(total, int):
        samples += " (the whole split)"
    split = f", {data['split']} split" if data.get("split") else ""
    lines = [f"data {data['spec']}{split}: {samples}"]
    if "labels_sha256" in data:
        noise = data.get("label_noise")
        kind = "no synthetic noise" if noise is None else f"noise {noise}"
        lines.append(f"labels: {kind}, sha256 {str(data['labels_sha256'])[:12]}")
    return lines

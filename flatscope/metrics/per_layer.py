"""Per-layer curvature: the trace and the top eigenvalue of each layer's diagonal block.

Parameters are grouped into layers by their dotted names (``model.layers.3.mlp.up.weight``):
with ``layer_depth = N > 0`` by the first ``N`` parts (``N = 3``: ``model.layers.3``); with
``layer_depth = 0`` up to the first part that is an index (``model.layers.3``, ``features.0``)
or, for a name without one, the module that owns the parameter (``fc`` for ``fc.weight``).
For the group ``g`` of coordinates, with ``C`` the analysis's curvature matrix (the Hessian, or
the GGN or Fisher by ``--curvature``) and ``C_gg`` its diagonal block:

- ``trace``: ``tr C_gg`` with its standard error, from :func:`flatscope.linalg.trace` on ``C``
  with the layers as its blocks (``tr C = sum_g tr C_gg``, so every layer's trace comes from the
  same products; with the same seed and budget the values are the sums of the trace metric's
  per-tensor traces);
- ``top_eigenvalue``: ``lambda_max(C_gg)`` with its residual bound, by Lanczos
  (:func:`flatscope.linalg.eigenvalues`) on the restricted operator ``v -> (C [0; v; 0])_g``
  (each of its products is one product with ``C``). By Cauchy interlacing
  ``lambda_max(C_gg) <= lambda_max(C)``.

Layer-wise traces of transformer blocks show where curvature concentrates across depth (Zhang,
Chen, Ding, Sun, Luo, "Why Transformers Need Adam: A Hessian Perspective", NeurIPS 2024).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flatscope.io.tables import as_number, format_number, format_table
from flatscope.linalg import eigenvalues, trace
from flatscope.metrics.base import AnalysisContext, Cell, Metric
from flatscope.metrics.settings import AnalysisSettings
from flatscope.operators.base import LinearOperator

__all__ = ["PerLayerMetric", "layer_of", "layer_blocks"]


def layer_of(name: str, depth: int) -> str:
    """The layer a parameter belongs to (see the module docs for ``depth``)."""
    parts = name.split(".")
    if depth > 0:
        return ".".join(parts[:depth])
    for index, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return ".".join(parts[:-1]) or name


def layer_blocks(blocks: Mapping[str, slice], depth: int) -> dict[str, slice]:
    """``{layer: slice}`` over the flat coordinates, from per-parameter ``blocks`` in flat
    order; a layer whose parameters are not adjacent gets one entry per run (``name#2``)."""
    layers: dict[str, slice] = {}
    previous = None
    for name, block in blocks.items():
        layer = layer_of(name, depth)
        if layer == previous:
            key = list(layers)[-1]
            layers[key] = slice(layers[key].start, block.stop)
            continue
        key, run = layer, 1
        while key in layers:
            run += 1
            key = f"{layer}#{run}"
        layers[key] = block
        previous = layer
    return layers


class _Grouped(LinearOperator):
    """``C`` with other blocks, or its diagonal block on ``index`` (``v -> (C [0; v; 0])_g``)."""

    symmetric = True

    def __init__(
        self,
        operator: LinearOperator,
        blocks: dict[str, slice] | None = None,
        index: slice | None = None,
    ) -> None:
        d = operator.shape[0] if index is None else index.stop - index.start
        super().__init__((d, d), operator.dtype, operator.device, blocks)
        self.operator, self.index = operator, index

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return self.operator @ V
        full = V.new_zeros(self.operator.shape[0], V.shape[1])
        full[self.index] = V
        return (self.operator @ full)[self.index]


class PerLayerMetric(Metric):
    """``per_layer``: ``{"layer_depth", "method", "num_matvecs", "layers": {layer: {"size",
    "trace", "trace_stderr", "top_eigenvalue", "residual", "converged"}}}``."""

    name = "per_layer"
    entries = ("per_layer",)
    help = "trace and top eigenvalue of each layer's diagonal block (layers by --layer-depth)"
    order = 27
    settings = ("layer_depth", "trace_method", "num_matvecs", "eig_tol", "eig_max_matvecs")

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs + settings.eig_max_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        layers = layer_blocks(context.operator.blocks or {}, s.layer_depth)

        def measure(op: LinearOperator) -> dict[str, Any]:
            estimate = trace(_Grouped(op, layers), s.trace_method, s.num_matvecs, s.seed)
            spent, out = estimate.num_matvecs, {}
            for layer, index in layers.items():
                block = _Grouped(op, index=index)
                top = eigenvalues(block, 1, "largest", s.eig_tol, s.eig_max_matvecs, s.seed)
                spent += top.num_matvecs
                value, stderr = estimate.per_block[layer]
                out[layer] = {
                    "size": index.stop - index.start,
                    "trace": value,
                    "trace_stderr": stderr,
                    "top_eigenvalue": float(top.values[0]),
                    "residual": float(top.residuals[0]),
                    "converged": top.converged,
                }
            return {"layers": out, "num_matvecs": spent}

        result = context.run("per-layer curvature", None, measure)
        return {"layer_depth": s.layer_depth, "method": s.trace_method, **result}

    def describe(self, entry: str, value: Any) -> str:
        layers = value.get("layers") or {}
        if not layers:
            return "no layers"
        sharpest = max(layers, key=lambda k: as_number(layers[k]["top_eigenvalue"]) or -1e300)
        top = format_number(as_number(layers[sharpest]["top_eigenvalue"]))
        return f"{len(layers)} layers; largest block lambda_max {top} ({sharpest})"

    def details(self, entry: str, value: Any) -> list[str]:
        layers = value.get("layers") if isinstance(value, Mapping) else None
        if not isinstance(layers, Mapping) or not layers:
            return []
        cells = self.block_rows(entry, value)
        header = ["layer", "parameters", "block trace", "block lambda_max"]
        body = [
            [
                layer,
                f"{layers[layer].get('size', 0):,}",
                format_number(*cells[f"trace[{layer}]"]),
                format_number(cells[f"lambda_max[{layer}]"][0]),
            ]
            for layer in layers
        ]
        return ["", f"{entry} ({value.get('method')}):", format_table(header, body, False)]

    def block_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        layers = value.get("layers") if isinstance(value, Mapping) else None
        if not isinstance(layers, Mapping):
            return {}
        rows: dict[str, Cell] = {}
        for layer, numbers in layers.items():
            rows[f"trace[{layer}]"] = (
                as_number(numbers.get("trace")),
                as_number(numbers.get("trace_stderr")),
            )
            rows[f"lambda_max[{layer}]"] = (
                as_number(numbers.get("top_eigenvalue")),
                as_number(numbers.get("residual")),
            )
        return rows


METRIC = PerLayerMetric()

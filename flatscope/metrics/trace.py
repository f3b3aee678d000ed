"""The Hessian trace ``tr H`` with its standard error, and per-block traces.

``hessian_trace`` holds :func:`flatscope.linalg.trace`'s estimate by the chosen method
(Hutch++ by default, Meyer, Musco, Musco, Woodruff, SOSA 2021) with its standard error, and the
trace of each parameter tensor's diagonal Hessian block (``per_block``), which the same products
give for free (``tr H = sum_b tr H_bb``). ``verify`` claims "flatter" on the trace by the
one-sided z-test of :mod:`flatscope.metrics.criteria`; XTrace's error estimate runs low
(Epperly, Tropp, Webber, SIMAX 2024), so a verdict on an XTrace trace carries a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flatscope.io.tables import as_number, format_number
from flatscope.linalg import trace
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, estimate_of, z_criterion
from flatscope.metrics.settings import AnalysisSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TraceMetric", "compare_trace"]


def compare_trace(
    metrics: Mapping[str, Any], reference: Mapping[str, Any], label: str, confidence: float
) -> Criterion:
    """``tr H < tr H_R`` by the one-sided z-test on the reports' ``hessian_trace``."""
    mine, theirs = metrics.get("hessian_trace"), reference.get("hessian_trace")
    return z_criterion("trace", estimate_of(mine), estimate_of(theirs), label, confidence)


class TraceMetric(Metric):
    """``hessian_trace``: ``{"value", "stderr", "method", "num_matvecs", "per_block"}``."""

    name = "trace"
    entries = ("hessian_trace",)
    help = "Hessian trace with its standard error and per-block traces"
    order = 10
    settings = ("trace_method", "num_matvecs")
    default = True

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings

        def estimate(op: Any) -> dict[str, Any]:
            return trace(op, s.trace_method, s.num_matvecs, s.seed).to_dict()

        return context.run("hessian_trace", s.num_matvecs, estimate)

    def describe(self, entry: str, value: Any) -> str:
        number = format_number(as_number(value["value"]), as_number(value["stderr"]))
        return f"{number}  ({value['method']})"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return {"trace": estimate_of(value)}

    def block_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        blocks = value.get("per_block") if isinstance(value, Mapping) else None
        if not isinstance(blocks, Mapping):
            return {}
        return {f"trace[{name}]": (as_number(v), as_number(s)) for name, (v, s) in blocks.items()}

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        return [compare_trace(metrics, reference, label, settings.confidence)]

    def figures(self, metrics: Mapping[str, Any]) -> dict[str, Figure]:
        from flatscope.plotting.report_figures import trace_figure

        figure = trace_figure(metrics)
        return {} if figure is None else {"trace_per_block": figure}


METRIC = TraceMetric()

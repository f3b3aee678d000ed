"""The Hessian trace ``tr H`` with its standard error, and per-block traces.

``hessian_trace`` holds :func:`flatscope.linalg.trace`'s estimate by the chosen method
(Hutch++ by default, Meyer, Musco, Musco, Woodruff, SOSA 2021) with its standard error, and the
trace of each parameter tensor's diagonal Hessian block (``per_block``), which the same products
give for free (``tr H = sum_b tr H_bb``). ``verify`` claims "flatter" on the trace by the
one-sided z-test of :mod:`flatscope.metrics.criteria`; XTrace's error estimate runs low
(Epperly, Tropp, Webber, SIMAX 2024), so a verdict on an XTrace trace carries a note.

**One budget with the eigenvalues.** When the analysis computes the largest eigenvalues too,
the trace deflates their search (Gambhir, Stathopoulos, Orginos, SIAM J. Sci. Comput. 2017;
Chen and Hallman, SIAM J. Matrix Anal. Appl. 2023): the Lanczos search keeps growing its
Krylov space ``Q`` to ``DEFLATION_SHARE * num_matvecs`` vectors
(:func:`flatscope.metrics.eigenvalues.deflation_subspace`), ``tr(Q^T H Q)`` comes exactly from
the products the search holds, and the chosen method estimates ``tr(P' H P')``,
``P' = I - Q Q^T``, with the rest of the budget. ``num_matvecs`` then buys the pair: the search
and the trace together spend ``num_matvecs`` products, more only when the eigenvalues need more
than their share to converge (the trace then still gets the method's minimum). A Krylov space
holds its products already (Hutch++'s sketch needs a second product per vector) and captures the
top of the spectrum well; how much that buys depends on the spectrum's tail
(``benchmarks/shared_products.py``: on the demo-protocol MLP the pair matched the separate runs'
trace error per product, with the eigenvalues converged to 1e-15 besides). The standard error is
the deflated estimate's (exact given ``Q``). The entry's ``num_matvecs`` counts the trace's own
products, ``deflation`` the shared search (``num_matvecs``) and the pair's ``total_matvecs``.
A resumed analysis that finished the eigenvalues but not the trace runs the same (seeded)
search again, so its trace equals the uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flatscope.io.tables import as_number, format_number
from flatscope.linalg import trace
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, estimate_of, z_criterion
from flatscope.metrics.eigenvalues import eigen_search, shares_with_trace
from flatscope.metrics.settings import TRACE_MIN_MATVECS, AnalysisSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TraceMetric", "compare_trace"]


def compare_trace(
    metrics: Mapping[str, Any], reference: Mapping[str, Any], label: str, confidence: float
) -> Criterion:
    """``tr H < tr H_R`` by the one-sided z-test on the reports' ``hessian_trace``."""
    mine, theirs = metrics.get("hessian_trace"), reference.get("hessian_trace")
    return z_criterion("trace", estimate_of(mine), estimate_of(theirs), label, confidence)


def hessian_trace_entry(context: AnalysisContext) -> dict[str, Any]:
    """The analysis's ``hessian_trace`` entry, estimated once per analysis (the sharpness
    metric's second-order prediction takes it too): deflated by the eigen search when the
    analysis computes eigenvalues (:func:`shares_with_trace`), plain otherwise."""
    return context.once("hessian_trace", lambda: _estimate(context))


def _estimate(context: AnalysisContext) -> dict[str, Any]:
    s = context.settings
    if not shares_with_trace(context):

        def estimate(op: Any) -> dict[str, Any]:
            return {
                **trace(op, s.trace_method, s.num_matvecs, s.seed).to_dict(),
                "deflation": None,
            }

        return context.run("hessian_trace", s.num_matvecs, estimate)

    search, _ = eigen_search(context, "largest")
    rest = max(s.num_matvecs - search.num_matvecs, TRACE_MIN_MATVECS[s.trace_method])

    def deflated(op: Any) -> dict[str, Any]:
        result = trace(op, s.trace_method, rest, s.seed, deflate=search)
        deflation = {
            "entry": "top_eigenvalues",
            "found": int(search.values.shape[0]),
            "subspace": result.deflation_rank,
            "num_matvecs": search.num_matvecs,
            "total_matvecs": search.num_matvecs + result.num_matvecs,
        }
        return {**result.to_dict(), "deflation": deflation}

    return context.run("hessian_trace (deflated)", rest, deflated)


class TraceMetric(Metric):
    """``hessian_trace``: ``{"value", "stderr", "method", "num_matvecs", "per_block",
    "deflation_rank", "deflation"}``; ``deflation`` is ``None`` or ``{"entry", "found",
    "subspace", "num_matvecs", "total_matvecs"}`` (see the module docs)."""

    name = "trace"
    entries = ("hessian_trace",)
    help = "Hessian trace with its standard error and per-block traces"
    order = 10
    settings = ("trace_method", "num_matvecs")
    default = True
    reuses = ("top_eigenvalues",)

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        return hessian_trace_entry(context)

    def describe(self, entry: str, value: Any) -> str:
        number = format_number(as_number(value["value"]), as_number(value["stderr"]))
        deflation = value.get("deflation")
        if not isinstance(deflation, Mapping):
            return f"{number}  ({value['method']})"
        return f"{number}  ({value['method']}, deflated by {deflation['subspace']} eigen vectors)"

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

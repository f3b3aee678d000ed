"""The spectral density of the Hessian by stochastic Lanczos quadrature.

``spectral_density`` stores the Gauss quadrature nodes and weights of every probe
(:func:`flatscope.linalg.spectral_density`; Ubaru, Chen, Saad, SIMAX 2017; Ghorbani, Krishnan,
Xiao, ICML 2019). The figure smooths them with a Gaussian kernel on a log scale, which shows the
bulk near zero and the isolated outliers together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from flatscope.io.tables import format_number
from flatscope.linalg import spectral_density
from flatscope.metrics.base import AnalysisContext, Metric
from flatscope.metrics.settings import AnalysisSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DensityMetric"]


class DensityMetric(Metric):
    """``spectral_density``: ``{"nodes", "weights", "num_matvecs", ...}`` per probe."""

    name = "density"
    entries = ("spectral_density",)
    help = "spectral density by stochastic Lanczos quadrature"
    order = 30
    settings = ("density_steps", "density_probes")
    default = True

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.density_steps * settings.density_probes

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings

        def estimate(op: Any) -> dict[str, Any]:
            return spectral_density(op, s.density_steps, s.density_probes, s.seed).to_dict()

        return context.run("spectral_density", self.budget(entry, s), estimate)

    def describe(self, entry: str, value: Any) -> str:
        nodes = torch.tensor(value["nodes"], dtype=torch.float64)
        used = nodes[torch.tensor(value["weights"], dtype=torch.float64) > 0]
        shape = f"{nodes.shape[0]} probes x {nodes.shape[1]} steps"
        low, high = format_number(float(used.min())), format_number(float(used.max()))
        return f"support [{low}, {high}]  ({shape})"

    def figures(self, metrics: Mapping[str, Any]) -> dict[str, Figure]:
        from flatscope.plotting.report_figures import density_figure

        figure = density_figure(metrics)
        return {} if figure is None else {"spectral_density": figure}


METRIC = DensityMetric()

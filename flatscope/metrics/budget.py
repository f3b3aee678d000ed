"""What an analysis can hold and what it will cost.

**Cost.** Each metric declares the Hessian-vector products it plans to spend at most
(:meth:`~flatscope.metrics.base.Metric.budget`; the ``--budget`` presets of
:data:`~flatscope.metrics.settings.BUDGETS` set them together). Once the first products have
been timed, :func:`estimate_cost` turns those budgets into time: the first product also builds
the first-order graphs that the later ones reuse, so it counts once at its own time and every
other product at the time of the one after it. The budgets of eigenvalue searches are upper
bounds (they stop when converged), so is the estimate; other work (the loss, sharpness' loss
evaluations) is not in it.

**Size.** Checked against the parameters analysed and the device's memory before any product
(the settings' own limits are checked by :class:`~flatscope.metrics.settings.AnalysisSettings`).

- Eigenvalue counts cannot exceed the number of parameters analysed ``d``.
- The vectors an estimator holds at once must fit in the memory of the device. Counted in
  vectors of ``d`` entries: a trace estimate about ``3 m`` for ``m`` products (probes, sketch,
  products; Meyer et al. 2021, Epperly et al. 2024), the diagonal ``2 m`` (probes and products),
  block Lanczos ``2 s + 2 k`` for a basis of ``s = max(2k + 1, 30, 3k)`` vectors and its
  products (:func:`flatscope.linalg.eigenvalues` with ``block_size = k``), SLQ one float64
  basis of ``steps`` vectors per probe (full reorthogonalization).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from flatscope.metrics.settings import AnalysisError, flag
from flatscope.progress import format_seconds

__all__ = [
    "ESTIMATE_SECONDS",
    "CostEstimate",
    "check_problem_size",
    "device_memory",
    "estimate_cost",
]

#: The cost estimate is shown for analyses expected to take at least this long.
ESTIMATE_SECONDS = 10.0


@dataclass(frozen=True)
class CostEstimate:
    """The expected products and seconds of each planned entry and in total.

    Attributes:
        products: ``{entry: products}``, the entries' budgets.
        entry_seconds: ``{entry: seconds}``, the first entry's including the first product.
        first_seconds: the first product's time (it also builds the kept graphs).
        product_seconds: the time of a product after it.
    """

    products: dict[str, int]
    entry_seconds: dict[str, float]
    first_seconds: float
    product_seconds: float

    @property
    def seconds(self) -> float:
        """The expected total time."""
        return sum(self.entry_seconds.values())

    def text(self) -> str:
        """The estimate as a small table, one line per entry and the total."""
        lines = [
            f"estimated cost: {format_seconds(self.product_seconds)} per Hessian-vector product "
            f"(the first, which builds the graphs: {format_seconds(self.first_seconds)}); "
            "eigenvalue searches may stop before their budget"
        ]
        rows = [*self.products.items(), ("total", sum(self.products.values()))]
        for name, count in rows:
            seconds = self.seconds if name == "total" else self.entry_seconds[name]
            lines.append(f"  {name:<24} {count:>9,} HVPs  {format_seconds(seconds):>8}")
        return "\n".join(lines)


def estimate_cost(
    plan: Mapping[str, int | None], first_seconds: float, product_seconds: float
) -> CostEstimate:
    """The cost of the planned entries' budgets (module docs): the first product at
    ``first_seconds``, every other at ``product_seconds``. Entries without products
    (budget ``None`` or 0) are left out."""
    products = {entry: count for entry, count in plan.items() if count}
    seconds, first = {}, True
    for entry, count in products.items():
        seconds[entry] = (
            (first_seconds + (count - 1) * product_seconds) if first else (count * product_seconds)
        )
        first = False
    return CostEstimate(products, seconds, first_seconds, product_seconds)


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of ``device`` (physical memory for the CPU), or ``None`` if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _held_vectors(settings: Any, entry: str, d: int) -> tuple[int, str]:
    """Vectors of ``d`` entries an entry's estimator holds at once, and the option to lower."""
    if entry in ("hessian_trace", "sharpness"):
        return 3 * settings.num_matvecs, "--num-matvecs"
    if entry == "hessian_diagonal":
        return 2 * settings.num_matvecs, "--num-matvecs"
    if entry in ("top_eigenvalues", "bottom_eigenvalues"):
        k = settings.top_k if entry == "top_eigenvalues" else settings.bottom_k
        basis = min(d, max(2 * k + 1, 30, 3 * k))
        return 2 * basis + 2 * k, "--top-k" if entry == "top_eigenvalues" else "--bottom-k"
    if entry == "spectral_density":
        return settings.density_probes * min(settings.density_steps, d), "--density-steps"
    return 0, ""


def check_problem_size(
    settings: Any, entries: Iterable[str], d: int, dtype: torch.dtype, device: torch.device
) -> None:
    """Refuse, before any product, eigenvalue counts above ``d`` and estimates whose vectors
    cannot fit in the memory of ``device`` (module docs).

    Raises:
        AnalysisError: the count or the estimate, and the option to lower.
    """
    entries = list(entries)
    for name, k in (("top_k", settings.top_k), ("bottom_k", settings.bottom_k)):
        entry = name.replace("_k", "_eigenvalues")
        if entry in entries and k > d:
            raise AnalysisError(f"{flag(name)} is {k}, more than the {d:,} parameters analysed")
    available = device_memory(device)
    if available is None:
        return
    for entry in entries:
        vectors, option = _held_vectors(settings, entry, d)
        itemsize = 8 if entry == "spectral_density" else torch.empty((), dtype=dtype).itemsize
        needed = vectors * d * itemsize
        if needed > available:
            raise AnalysisError(
                f"{entry} would hold about {needed / 2**30:,.1f} GiB ({vectors:,} vectors of "
                f"{d:,} parameters) on a {device.type} with {available / 2**30:,.1f} GiB; lower "
                f"{option}, or analyse fewer parameters with --params"
            )

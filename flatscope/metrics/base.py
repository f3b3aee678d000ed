"""What a metric is: one object that computes its report entries and knows how to show them.

A :class:`Metric` owns, for the report entries it writes:

- how to compute each one from an :class:`AnalysisContext` (the Hessian operator over the
  analysed data and the settings), and how many Hessian-vector products it plans to spend;
- its summary line (``flatscope analyze``), its table rows with error bars (``flatscope
  compare``) and the headline rows that comparisons over seeds test, the claims it lets
  ``flatscope verify`` decide, and its figures (drawn by :mod:`flatscope.plotting` from the
  stored numbers alone).

Metrics live one per module in :mod:`flatscope.metrics` and register themselves there; adding a
metric is adding a module (see :mod:`flatscope.metrics`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from flatscope.distributed import is_distributed
from flatscope.metrics.budget import ESTIMATE_SECONDS, estimate_cost
from flatscope.metrics.criteria import Criterion, z_critical
from flatscope.metrics.settings import AnalysisError, AnalysisSettings, flag
from flatscope.operators.base import LinearOperator
from flatscope.progress import Progress

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AnalysisContext", "Cell", "Metric", "VerifySettings"]

#: ``(value, error)`` of one number in a table; ``error`` is ``None`` for exact numbers.
Cell = tuple[float | None, float | None]


@dataclasses.dataclass(frozen=True)
class VerifySettings:
    """How ``flatscope verify`` decides its claims.

    Attributes:
        grad_tol: the gradient criterion's tolerance, relative to ``max(loss, 1)``.
        neg_tol: the negative-curvature criterion's tolerance, relative to ``lambda_max``.
        confidence: the level of the one-sided tests, in ``[0.5, 1)``.
        sharpness: also compare average-case sharpness.
    """

    grad_tol: float = 0.1
    neg_tol: float = 0.05
    confidence: float = 0.95
    sharpness: bool = False

    def __post_init__(self) -> None:
        for name in ("grad_tol", "neg_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise AnalysisError(f"{flag(name)} must be a non-negative number, got {value!r}")
            if not math.isfinite(value):
                raise AnalysisError(f"{flag(name)} must be finite, got {value!r}")
        try:
            z_critical(self.confidence)
        except ValueError as err:
            raise AnalysisError(str(err)) from None


def _columns_per_call(operator: LinearOperator, k: int) -> int:
    """How many of ``k`` columns to multiply in one call so that the progress moves as columns
    complete at no extra cost.

    A Hessian whose columns run in a loop on kept first-order graphs (the CPU's mode) costs the
    same one column at a time; one that chunks its columns by memory (batched and
    forward-over-reverse modes) gets its own chunks. Every other operator gets all of them: a
    Hessian that rebuilds its graphs on every call, the GGN (a forward pass per call) and the
    Fisher (per-sample gradients per call, shared by the columns) would pay per call, and on
    several ranks, whose kept graphs may differ, the calls must not.
    """
    chunk_size = getattr(operator, "chunk_size", None)
    if chunk_size is None or is_distributed():
        return k
    mode = getattr(operator, "hvp_mode", None)
    if mode == "forward":
        return chunk_size(k)
    if getattr(operator, "graphs_kept", None) is not True:
        return k
    return 1 if getattr(operator, "column_mode", None) == "loop" else chunk_size(k)


class _Ticking(LinearOperator):
    """The operator with a progress tick per product, which also times the products for the
    analysis's cost estimate (:meth:`AnalysisContext.record`).

    Its columns run in calls of :func:`_columns_per_call` columns, the first product of an
    analysis alone: it also builds the graphs the later products reuse, so the one after it
    is the first whose time tells the cost of the rest.
    """

    def __init__(
        self, operator: LinearOperator, progress: Progress, context: AnalysisContext
    ) -> None:
        super().__init__(operator.shape, operator.dtype, operator.device, operator.blocks)
        self.operator = operator
        self.progress = progress
        self.context = context

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        k, done, parts = V.shape[1], 0, []
        while done < k:
            size = 1 if self.context.products == 0 else _columns_per_call(self.operator, k - done)
            started = time.perf_counter()
            parts.append(self.operator @ V[:, done : done + size])
            done += size
            self.context.record(size, time.perf_counter() - started, self.progress)
            self.progress.update(size)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


@dataclasses.dataclass
class AnalysisContext:
    """What a metric computes from: the analysed model, loss and data, the Hessian operator
    over all of that data, and the settings.

    Attributes:
        model, loss_fn, batches: the analysis' inputs (``batches`` as the operator reads them).
        operator: the Hessian of the mean loss over ``batches``.
        settings: the analysis settings.
        progress: whether to show progress (and the cost estimate).
        plan: ``{entry: products}`` the analysis will compute (each metric's
            :meth:`Metric.budget`); with the first products' times it makes the cost estimate.
        entries: the report entries this analysis computes (finished ones included, so that a
            resumed analysis shares products as the uninterrupted one did).
        shared: results computed once per analysis (see :meth:`once`).
        products: the Hessian-vector products done so far through :meth:`run`.
    """

    model: torch.nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batches: Any
    operator: LinearOperator
    settings: AnalysisSettings
    progress: bool = False
    plan: dict[str, int] = dataclasses.field(default_factory=dict)
    entries: tuple[str, ...] = ()
    shared: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    products: int = 0
    _first_seconds: float | None = dataclasses.field(default=None, repr=False)
    _estimated: bool = dataclasses.field(default=False, repr=False)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for in this analysis, then its stored
        result: metrics that need the same estimate (the scaled trace, for example) share it."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def run(self, label: str, total: int | None, compute: Callable[[LinearOperator], Any]) -> Any:
        """``compute(operator)`` with a progress bar that advances with every product."""
        with Progress(label, total, enabled=self.progress) as bar:
            return compute(_Ticking(self.operator, bar, self))

    def record(self, columns: int, seconds: float, bar: Progress) -> None:
        """Count ``columns`` products that took ``seconds``. The call after the first product
        times the cost of the rest: then the estimate of :attr:`plan` is written through
        ``bar``, once, when the analysis is expected to take at least
        :data:`~flatscope.metrics.budget.ESTIMATE_SECONDS`."""
        self.products += columns
        if self._first_seconds is None:
            self._first_seconds = seconds
            return
        if self._estimated:
            return
        self._estimated = True
        estimate = estimate_cost(self.plan, self._first_seconds, seconds / columns)
        if estimate.seconds >= ESTIMATE_SECONDS:
            bar.message(estimate.text())


class Metric:
    """One family of report entries (see the module docs); subclasses fill in the parts.

    Class attributes:
        name: what a user asks for (``--metrics trace``).
        entries: the report entries it writes, in the order they are computed.
        help: one line for ``--help``.
        order: where it runs and is listed among the metrics (lower first).
        default: part of an analysis when no metrics are named.
        always: part of every analysis (loss and gradient norm).
        reuses: report entries whose products it reuses when the analysis computes them too;
            analyze computes those first (the trace deflates the eigen search's space).
        settings: the fields of :class:`AnalysisSettings` it reads besides the common ones
            (seed, dtype, device, params); a command offers only the options its metrics read.
    """

    name: ClassVar[str]
    entries: ClassVar[tuple[str, ...]]
    help: ClassVar[str]
    order: ClassVar[int]
    settings: ClassVar[tuple[str, ...]] = ()
    default: ClassVar[bool] = False
    always: ClassVar[bool] = False
    reuses: ClassVar[tuple[str, ...]] = ()

    def wanted(self, entry: str, settings: AnalysisSettings) -> bool:
        """Whether the settings ask for ``entry`` (for example ``bottom_k = 0`` skips one)."""
        return True

    def budget(self, entry: str, settings: AnalysisSettings) -> int | None:
        """The Hessian-vector products ``entry`` plans to spend at most (``None``: none)."""
        return None

    def compute(self, entry: str, context: AnalysisContext) -> Any:
        """The report value of ``entry``: a number or a dict of JSON-able values."""
        raise NotImplementedError

    def describe(self, entry: str, value: Any) -> str:
        """One line of text for the summary table."""
        return "(see report)"

    def details(self, entry: str, value: Any) -> list[str]:
        """Lines printed under the summary table (a per-layer table, say); none by default."""
        return []

    def products(self, entry: str, value: Any) -> int | None:
        """The Hessian-vector products a stored value cost, when it says."""
        return value.get("num_matvecs") if isinstance(value, Mapping) else None

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        """``{row name: (value, error)}`` for comparison tables."""
        return {}

    def seed_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        """The rows that optimizer-level comparisons test over seeds (``compare --group``,
        ``verify --group``): by default the first of :meth:`rows`, the entry's headline."""
        return dict(list(self.rows(entry, value).items())[:1])

    def block_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        """Per-parameter-block rows (long, so only in markdown tables)."""
        return {}

    def minimum_criteria(
        self, metrics: Mapping[str, Any], settings: VerifySettings
    ) -> list[Criterion]:
        """Claims that the subject is a minimum, decided from its own report."""
        return []

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        """Claims that the subject is flatter than the reference labelled ``label``."""
        return []

    def figures(self, metrics: Mapping[str, Any]) -> dict[str, Figure]:
        """``{file stem: figure}`` of the report's numbers (empty when it lacks them)."""
        return {}

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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch

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
class AnalysisContext:
    """What a metric computes from: the analysed model, loss and data, the Hessian operator
    over all of that data, and the settings.

    Attributes:
        model, loss_fn, batches: the analysis' inputs (``batches`` as the operator reads them).
        operator: the Hessian of the mean loss over ``batches``.
        settings: the analysis settings.
        progress: whether to draw progress bars.
        entries: the report entries this analysis computes (finished ones included, so that a
            resumed analysis shares products as the uninterrupted one did).
        shared: results computed once per analysis (see :meth:`once`).
    """

    model: torch.nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batches: Any
    operator: LinearOperator
    settings: AnalysisSettings
    progress: bool = False
    entries: tuple[str, ...] = ()
    shared: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for in this analysis, then its stored
        result: metrics that need the same estimate (the scaled trace, for example) share it."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def run(self, label: str, total: int | None, compute: Callable[[LinearOperator], Any]) -> Any:
        """``compute(operator)`` with a progress bar that advances with every product."""
        with Progress(label, total, enabled=self.progress) as bar:
            return compute(_Ticking(self.operator, bar))


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

"""The metric registry: every number an analysis can compute, one module per metric.

Each module of this package other than the infrastructure (``base``, ``budget``, ``criteria``,
``settings``) defines one :class:`~flatscope.metrics.base.Metric` and binds it to the name
``METRIC``; the registry imports them all and orders them by ``Metric.order``. Adding a metric
is adding a module: analyze runs it, the summary prints it, compare tabulates it, verify asks it
for its claims and ``flatscope plot`` draws its figures.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from typing import Any

from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import FAIL, NOT_ESTABLISHED, PASS, Criterion
from flatscope.metrics.settings import COMMON_SETTINGS, AnalysisError, AnalysisSettings

__all__ = [
    "FAIL",
    "NOT_ESTABLISHED",
    "PASS",
    "REGISTRY",
    "AnalysisContext",
    "AnalysisError",
    "AnalysisSettings",
    "Cell",
    "Criterion",
    "Metric",
    "VerifySettings",
    "default_metrics",
    "entries_of",
    "metric_of",
    "ordered_entries",
    "parse_metrics",
    "settings_of",
]

_INFRASTRUCTURE = frozenset({"base", "budget", "criteria", "settings"})


def _discover() -> dict[str, Metric]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        if module.name in _INFRASTRUCTURE or module.name.startswith("_"):
            continue
        metric = importlib.import_module(f"{__name__}.{module.name}").METRIC
        found.append(metric)
    found.sort(key=lambda metric: metric.order)
    return {metric.name: metric for metric in found}


#: Every metric by the name users ask for, in run order.
REGISTRY: dict[str, Metric] = _discover()
_OWNERS = {entry: metric for metric in REGISTRY.values() for entry in metric.entries}
_ORDER = {entry: index for index, entry in enumerate(_OWNERS)}


def metric_of(entry: str) -> Metric | None:
    """The metric that writes the report entry ``entry`` (``None`` for an unknown one)."""
    return _OWNERS.get(entry)


def ordered_entries(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(entry, value)`` of a report's metrics that a registered metric owns, in run order."""
    found = [(entry, value) for entry, value in metrics.items() if entry in _ORDER]
    return sorted(found, key=lambda item: _ORDER[item[0]])


def default_metrics() -> tuple[str, ...]:
    """The metrics an analysis runs when none are named."""
    return tuple(name for name, metric in REGISTRY.items() if metric.default)


def _choices() -> str:
    return ", ".join(name for name, metric in REGISTRY.items() if not metric.always)


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """Validate metric names (a list or a comma-separated string; ``"all"`` selects every one).

    Returns the names in run order, without duplicates; metrics that every analysis computes
    (loss and gradient norm) are not listed.

    Raises:
        AnalysisError: no name, or an unknown one.
    """
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [str(name).strip() for name in names if str(name).strip()]
    optional = [name for name, metric in REGISTRY.items() if not metric.always]
    if not names:
        raise AnalysisError(f"no metrics given; choose from {_choices()} or all")
    if "all" in names:
        return tuple(optional)
    unknown = [name for name in names if name not in optional]
    if unknown:
        raise AnalysisError(f"unknown metric {unknown[0]!r}; choose from {_choices()} or all")
    return tuple(name for name in optional if name in names)


def entries_of(metrics: Iterable[str], settings: AnalysisSettings) -> list[str]:
    """The report entries an analysis of ``metrics`` computes, in run order: those of every
    always-on metric, then those of the named ones that the settings ask for."""
    wanted = set(metrics)
    return [
        entry
        for name, metric in REGISTRY.items()
        if metric.always or name in wanted
        for entry in metric.entries
        if metric.wanted(entry, settings)
    ]


def settings_of(metrics: Iterable[str]) -> tuple[str, ...]:
    """The :class:`AnalysisSettings` fields an analysis of ``metrics`` reads: the common ones
    and each named metric's own, in the dataclass's order."""
    names = set(COMMON_SETTINGS).union(*(REGISTRY[name].settings for name in metrics))
    return tuple(f.name for f in dataclasses.fields(AnalysisSettings) if f.name in names)

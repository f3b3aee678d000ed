"""The shape of a report's header and metrics, checked once when a report is read.

:meth:`flatscope.io.report.Report.load` calls :func:`validate_document`, so every command that
reads reports (``plot``, ``compare``, ``verify``, ``analyze --resume``, ``trajectory``) refuses
the same malformed files with the same one-line :class:`~flatscope.errors.ReportError`, instead
of drawing, comparing or judging wrong numbers.

Rules: every number is a JSON number or ``null`` (a report stores NaN and infinities as
``null``; the strings ``"NaN"`` and ``"Infinity"`` are not numbers); counts are non-negative
integers; ``values`` and ``residuals`` of an eigenvalue entry have one entry each; the
``nodes`` and ``weights`` of a spectral density are two non-empty tables of the same shape with
finite entries, non-negative weights and a positive weight in every row; a diagonal's
``values`` and ``stderr`` have ``dimension`` entries. Metrics this flatscope does not know are
kept unchecked (a newer minor version may add them); the fields of a known metric are
checked when present, and the ones every reader needs are required.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flatscope.errors import ReportError

__all__ = ["validate_document", "validate_metrics"]

Check = Callable[[Any, str], None]


def _join(where: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{where}[{name}]"
    return f"{where}.{name}" if where else name


def _fail(where: str, value: Any, expected: str) -> ReportError:
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 40:
        shown = shown[:37] + "..."
    note = " (reports store NaN and infinities as null)" if isinstance(value, str) else ""
    return ReportError(f"{where} is {shown}, not {expected}{note}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any, where: str) -> None:
    """A JSON number or ``null``."""
    if value is not None and not _is_number(value):
        raise _fail(where, value, "a number")


def finite(value: Any, where: str) -> None:
    """A JSON number (``null`` is not allowed)."""
    if not _is_number(value):
        raise _fail(where, value, "a number")


def count(value: Any, where: str) -> None:
    """A non-negative integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(where, value, "a count (an integer >= 0)")


def text(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _fail(where, value, "a string")


def flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _fail(where, value, "true or false")


def optional(check: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return checked


def listing(check: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _fail(where, value, "a list")
        for index, item in enumerate(value):
            check(item, _join(where, index))

    return checked


def pair(check: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        listing(check)(value, where)
        if len(value) != 2:
            raise ReportError(f"{where} has {len(value)} entries, not 2 (value, stderr)")

    return checked


def mapping(check: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, value, "an object")
        for key, item in value.items():
            check(item, _join(where, key))

    return checked


def fields(
    required: Mapping[str, Check], optional_fields: Mapping[str, Check] | None = None
) -> Check:
    """An object with the ``required`` fields and, when present, the optional ones."""

    def checked(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, value, "an object")
        missing = [name for name in required if name not in value]
        if missing:
            raise ReportError(f"{where or 'it'} lacks {', '.join(missing)}")
        for name, check in {**(optional_fields or {}), **required}.items():
            if name in value:
                check(value[name], _join(where, name))

    return checked


def _same_length(first: str, second: str) -> Check:
    def checked(value: dict, where: str) -> None:
        if first in value and second in value and len(value[first]) != len(value[second]):
            raise ReportError(
                f"{where} has {len(value[first])} {first} but {len(value[second])} {second}"
            )

    return checked


def _density_tables(value: dict, where: str) -> None:
    nodes, weights = value["nodes"], value["weights"]
    shapes = [(len(table), {len(row) for row in table}) for table in (nodes, weights)]
    if not nodes or shapes[0][1] != {len(nodes[0])} or not nodes[0] or shapes[0] != shapes[1]:
        raise ReportError(
            f"{where}: nodes and weights must be two non-empty tables of the same shape "
            "(one row per probe)"
        )
    for index, row in enumerate(weights):
        if min(row) < 0 or not max(row) > 0:
            raise ReportError(
                f"{where}.weights[{index}] must be non-negative with a positive entry"
            )


def _diagonal_lengths(value: dict, where: str) -> None:
    for name in ("values", "stderr"):
        if name in value and "dimension" in value and len(value[name]) != value["dimension"]:
            raise ReportError(
                f"{where} has {len(value[name])} {name} for dimension {value['dimension']}"
            )


def _all(*checks: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        for check in checks:
            check(value, where)

    return checked


_EIGEN = _all(
    fields(
        {"values": listing(number), "residuals": listing(number)},
        {"num_matvecs": count, "converged": flag, "method": text, "tol": number},
    ),
    _same_length("values", "residuals"),
)
_STATS = {"mean": number, "min": number, "max": number}

_TRACE = fields(
    {"value": number},
    {
        "stderr": number,
        "method": text,
        "num_matvecs": count,
        "per_block": optional(mapping(pair(number))),
    },
)
_SHARPNESS = fields(
    {
        "average": fields(
            {"value": number},
            {"stderr": number, "sigma": number, "second_order": number, "loss": number},
        ),
        "worst_case": fields({"value": number}, {"rho": number, "loss": number}),
    }
)

#: The checked metrics of ``flatscope.report/1`` (the scaled ones since ``1.1``).
METRIC_CHECKS: dict[str, Check] = {
    "loss": number,
    "gradient_norm": number,
    "hessian_trace": _TRACE,
    "scaled_trace": _TRACE,
    "normalized_trace": _TRACE,
    "top_eigenvalues": _EIGEN,
    "bottom_eigenvalues": _EIGEN,
    "scaled_top_eigenvalue": _EIGEN,
    "spectral_density": _all(
        fields(
            {"nodes": listing(listing(finite)), "weights": listing(listing(finite))},
            {"num_matvecs": count, "method": text},
        ),
        _density_tables,
    ),
    "hessian_diagonal": _all(
        fields(
            {"sum": number},
            {
                "dimension": count,
                **_STATS,
                "num_matvecs": count,
                "per_block": mapping(fields({}, _STATS)),
                "values": listing(number),
                "stderr": listing(number),
            },
        ),
        _diagonal_lengths,
    ),
    "sharpness": _SHARPNESS,
    "adaptive_sharpness": _SHARPNESS,
}

_HEADER = fields(
    {
        "model": text,
        "loss": text,
        "checkpoint": fields({"path": optional(text), "sha256": optional(text)}),
        "data": fields(
            {"spec": text, "num_samples": optional(count)},
            {
                "split_size": optional(count),
                "indices_sha256": optional(text),
                "label_noise": optional(text),
                "label_noise_seed": optional(count),
                "labels_sha256": optional(text),
            },
        ),
        "timings": mapping(number),
    }
)


def validate_metrics(metrics: Any, where: str = "metrics") -> None:
    """Check the known metrics of a report's ``metrics`` object (module docs).

    Raises:
        ReportError: one line naming the first malformed field (``metrics.top_eigenvalues``).
    """
    if not isinstance(metrics, dict):
        raise _fail(where, metrics, "an object")
    for name, check in METRIC_CHECKS.items():
        if name in metrics:
            check(metrics[name], f"{where}.{name}")


def validate_document(document: dict[str, Any], where: str) -> None:
    """Check a report's header fields and metrics; ``where`` (the file) prefixes the message.

    Raises:
        ReportError: ``"<where>: metrics.loss is 'NaN', not a number ..."``.
    """
    try:
        _HEADER(document, "")
        validate_metrics(document["metrics"])
    except ReportError as error:
        raise ReportError(f"{where} is malformed: {error}") from None

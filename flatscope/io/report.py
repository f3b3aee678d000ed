"""The versioned JSON report of an analysis, written atomically metric by metric.

A report is one JSON object::

    {
      "schema": "flatscope.report/1.2",
      "flatscope_version": "0.1.0",
      "created": "2025-01-01T12:00:00+00:00",           # UTC, ISO 8601
      "checkpoint": {"path": str | null, "sha256": str | null},
      "model": <model spec>,                            # e.g. "mlp:hidden=32"
      "data": {"spec": str, "num_samples": int, ...},   # analyze adds the provenance below
      "loss": <loss spec>,                              # e.g. "cross_entropy"
      "settings": {"seed": int, "dtype": str, "device": str, ...},
      "environment": {"torch", "python", "platform", "device", "device_name"},
      "metrics": {"loss": ..., "gradient_norm": ...,
                  "hessian_trace": {"value", "stderr", "method", "num_matvecs", "per_block"},
                  "top_eigenvalues": {"values", "residuals", "num_matvecs"},
                  "bottom_eigenvalues": {...},
                  "spectral_density": {"nodes", "weights", "num_matvecs"}, ...},
      "timings": {<metric name>: seconds}
    }

Readers accept any ``flatscope.report/1[.minor]`` and refuse other major versions. Extra header
fields are kept as given. Minor versions add fields and never change the meaning of old ones:

- ``1.1``: :func:`flatscope.app.analyze.analyze` records the data's provenance: ``split_size``
  (samples in the whole split), ``indices_sha256`` (SHA-256 of the positions of a seeded subset
  in the split; ``null`` for the whole split), ``label_noise_seed`` (beside the canonical
  ``label_noise`` spec, which also carries it) and ``labels_sha256`` (SHA-256 of the analysed
  targets in order). Reports of ``1`` lack them; they stay readable, and ``compare`` /
  ``verify`` then cannot tell whether two reports used the same labels.
- ``1.2``: ``hessian_trace`` says whether it deflated the eigen search of the same analysis
  (``deflation``: ``null``, or ``{"entry", "found", "subspace", "num_matvecs",
  "total_matvecs"}``; see :mod:`flatscope.metrics.trace`) and ``top_eigenvalues`` the size
  its search grew to for it (``min_subspace``, 0 when it did not).

Every value is stored as plain JSON: NumPy and torch scalars become numbers, arrays and tensors
become (nested) lists, dtypes and devices become strings such as ``"float64"`` and
``"cuda:0"``, and non-finite numbers (NaN, +-Inf) become ``null`` because JSON has no such
numbers; a ``null`` number therefore means "no finite value" (for example a standard
error from a single sample).

:meth:`Report.set_metric` rewrites the whole file atomically after each metric, so an interrupted
run leaves a valid report holding every finished metric, and :meth:`Report.resume_or_new` picks
it up again when the checkpoint and settings are unchanged.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import math
import os
import platform
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from flatscope.errors import ReportError, preview
from flatscope.io.atomic import atomic_write
from flatscope.io.report_schema import validate_document

__all__ = [
    "REPORT_SCHEMA",
    "Report",
    "environment_info",
    "flatscope_version",
    "to_jsonable",
]

SCHEMA_NAME = "flatscope.report"
SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2
REPORT_SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
HEADER_FIELDS = ("checkpoint", "model", "data", "loss", "settings")
REQUIRED_FIELDS = (
    "schema",
    "flatscope_version",
    "created",
    *HEADER_FIELDS,
    "environment",
    "metrics",
    "timings",
)
OBJECT_FIELDS = ("checkpoint", "data", "settings", "environment", "metrics", "timings")
# What must be unchanged to resume: everything that determines the numbers.
RESUME_FIELDS = ("checkpoint.sha256", "model", "data", "loss", "settings")

_SCHEMA_PATTERN = re.compile(rf"{re.escape(SCHEMA_NAME)}/(\d+)(?:\.\d+)?")


def flatscope_version() -> str:
    """The installed flatscope version, or ``"0.1.0+unknown"`` when run from a source tree."""
    try:
        return importlib.metadata.version("flatscope")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0+unknown"


def environment_info(device: str | torch.device = "cpu") -> dict[str, str]:
    """Versions and the device that produced the numbers: torch, python, platform, device name."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        device_name = platform.processor() or platform.machine() or "cpu"
    else:
        device_name = str(device)
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name,
    }


def to_jsonable(value: Any, where: str = "value") -> Any:
    """Convert ``value`` to plain JSON types (see the module docstring for the rules).

    Raises:
        TypeError: a value has no JSON form (for example a complex number, an arbitrary object,
            or a dict key that is not a string); the message names where it sits.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            raise TypeError(f"{where} is complex; a report stores real numbers only")
        return to_jsonable(value.tolist(), where)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    if isinstance(value, Mapping):
        converted = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{where} has a key {name!r}; report keys must be strings")
            converted[name] = to_jsonable(item, f"{where}.{name}")
        return converted
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise TypeError(
        f"{where} is a {type(value).__name__}, which a report cannot store; "
        "convert it to numbers, strings, lists or dicts"
    )


class Report:
    """A flatscope report: the JSON document and, optionally, the file it lives in.

    Build one with :meth:`new`, :meth:`load` or :meth:`resume_or_new`. When the report has a
    path, every :meth:`set_metric` rewrites that file atomically.
    """

    def __init__(self, document: dict[str, Any], path: str | os.PathLike | None = None) -> None:
        self._document = document
        self.path = None if path is None else Path(path)

    @classmethod
    def new(cls, header: Mapping[str, Any], path: str | os.PathLike | None = None) -> Report:
        """Start an empty report from ``header`` and, if ``path`` is given, write it there.

        ``header`` holds ``checkpoint`` ({"path", "sha256"}), ``model``, ``data``
        ({"spec", "num_samples"}), ``loss`` and ``settings`` (a dict; its ``device`` picks the
        device described in ``environment``), optionally ``environment`` and extra fields.

        Raises:
            ValueError: a header field is missing. TypeError: a value has no JSON form.
            OutputError: ``path`` cannot be written.
        """
        _check_header(header)
        header = to_jsonable(header, "header")
        environment = header.pop("environment", None) or environment_info(
            header["settings"].get("device", "cpu")
        )
        document = {
            "schema": REPORT_SCHEMA,
            "flatscope_version": flatscope_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **header,
            "environment": environment,
            "metrics": {},
            "timings": {},
        }
        report = cls(document)
        if path is not None:
            report.save(path)
        return report

    @classmethod
    def load(cls, path: str | os.PathLike) -> Report:
        """Read and validate a report file.

        Raises:
            ReportError: the file is missing, a directory, not JSON, not a flatscope report,
                of an unsupported schema version, lacks required fields, or holds malformed
                numbers (see :mod:`flatscope.io.report_schema`; one validator for every
                command that reads reports).
        """
        path = Path(path)
        if path.is_dir():
            raise ReportError(f"{path} is a directory, not a report file; pass its report.json")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ReportError(f"report not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"cannot read {path} as a JSON report: {exc}") from exc
        try:
            document = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ReportError(
                f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
        except ValueError as exc:
            raise ReportError(f"{path} is not valid JSON: {exc}") from exc
        _validate(document, path)
        return cls(document, path)

    @classmethod
    def resume_or_new(
        cls,
        path: str | os.PathLike,
        header: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
    ) -> Report:
        """Reuse the report at ``path`` if it was made with the same inputs, else start one there.

        The existing report is reused when its checkpoint SHA-256, model, data, loss and
        settings equal the new ``header``'s; its finished metrics are kept (see
        :meth:`has_metric`). A missing file starts a new report, written at once.
        ``defaults`` maps dotted header paths (``"settings.curvature"``) to their default
        values: a report written before such a setting existed lacks its key, and is reused
        when the new value is the default (what that version did).

        Raises:
            ReportError: the existing file is not a valid report, or it differs from ``header``
                (the message lists what differs).
        """
        path = Path(path)
        if not path.exists():
            return cls.new(header, path)
        existing = cls.load(path)
        wanted = cls.new(header)
        differences = [
            line
            for field in RESUME_FIELDS
            for line in _differences(
                field,
                _lookup(existing._document, field),
                _lookup(wanted._document, field),
                defaults or {},
            )
        ]
        if differences:
            listed = preview(differences, separator="; ")
            raise ReportError(
                f"cannot resume {path}: it was made from other inputs ({listed}); "
                "write to another output directory or remove the old report"
            )
        return existing

    def has_metric(self, name: str) -> bool:
        """Whether the metric ``name`` is finished (stored in the report)."""
        return name in self._document["metrics"]

    def set_metric(self, name: str, value: Any, seconds: float) -> None:
        """Store a finished metric and its wall-clock time, then rewrite the file atomically.

        ``value`` is a number or a dict of JSON-able values (converted by :func:`to_jsonable`).

        Raises:
            TypeError / ValueError: bad name, value or seconds. OutputError: the file cannot be
                written (the metric is kept in memory).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric name must be a non-empty string, got {name!r}")
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and non-negative, got {seconds}")
        value = to_jsonable(value, f"metrics.{name}")
        self._document["metrics"][name] = value
        self._document["timings"][name] = seconds
        if self.path is not None:
            self.save()

    def save(self, path: str | os.PathLike | None = None) -> None:
        """Write the report atomically to ``path`` (which becomes the report's path) or its own."""
        if path is not None:
            self.path = Path(path)
        if self.path is None:
            raise ValueError("this report has no path; pass one to save()")
        data = (json.dumps(self._document, indent=2, allow_nan=False) + "\n").encode("utf-8")
        atomic_write(self.path, lambda file: file.write(data))

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON document."""
        return copy.deepcopy(self._document)

    @property
    def metrics(self) -> dict[str, Any]:
        """A copy of the finished metrics, by name."""
        return copy.deepcopy(self._document["metrics"])

    @property
    def timings(self) -> dict[str, float]:
        """A copy of the seconds each finished metric took."""
        return dict(self._document["timings"])

    @property
    def settings(self) -> dict[str, Any]:
        """A copy of the analysis settings (seed, dtype, device, ...)."""
        return copy.deepcopy(self._document["settings"])

    def __repr__(self) -> str:
        return f"Report(path={self.path}, metrics={sorted(self._document['metrics'])})"


def _check_header(header: Mapping[str, Any]) -> None:
    reserved = [name for name in REQUIRED_FIELDS if name not in (*HEADER_FIELDS, "environment")]
    clashes = [name for name in reserved if name in header]
    if clashes:
        raise ValueError(f"report header may not set {', '.join(clashes)}; flatscope fills them")
    missing = [name for name in HEADER_FIELDS if name not in header]
    for name, keys in (("checkpoint", ("path", "sha256")), ("data", ("spec", "num_samples"))):
        if isinstance(header.get(name), Mapping):
            missing += [f"{name}.{key}" for key in keys if key not in header[name]]
    if missing:
        raise ValueError(f"report header lacks {', '.join(missing)}")
    wrong = [n for n in ("checkpoint", "data", "settings") if not isinstance(header[n], Mapping)]
    if wrong:
        raise ValueError(f"report header fields {', '.join(wrong)} must be dicts")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _validate(document: Any, path: Path) -> None:
    if not isinstance(document, dict):
        raise ReportError(
            f"{path} is not a flatscope report: it holds a JSON {type(document).__name__}"
        )
    schema = document.get("schema")
    match = _SCHEMA_PATTERN.fullmatch(schema) if isinstance(schema, str) else None
    if match is None:
        raise ReportError(
            f"{path} is not a flatscope report: its schema is {schema!r}, "
            f"expected {REPORT_SCHEMA!r}"
        )
    major = int(match.group(1))
    if major != SCHEMA_MAJOR:
        advice = "upgrade flatscope" if major > SCHEMA_MAJOR else "re-run the analysis"
        raise ReportError(
            f"{path} uses report schema version {major}, but this flatscope reads version "
            f"{SCHEMA_MAJOR}; {advice}"
        )
    missing = [name for name in REQUIRED_FIELDS if name not in document]
    if missing:
        raise ReportError(f"{path} is an incomplete report: it lacks {', '.join(missing)}")
    not_objects = [name for name in OBJECT_FIELDS if not isinstance(document[name], dict)]
    if not_objects:
        raise ReportError(f"{path} is a malformed report: {', '.join(not_objects)} must be objects")
    validate_document(document, str(path))


def _lookup(document: Mapping[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _differences(
    where: str, old: Any, new: Any, defaults: Mapping[str, Any] = MappingProxyType({})
) -> list[str]:
    """Dotted paths where two JSON values differ, as "path: old in the report, new now"; a
    key the old value lacks is no difference when the new value is its entry in ``defaults``."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for name in sorted(old.keys() | new.keys())
            if name in old
            or f"{where}.{name}" not in defaults
            or defaults[f"{where}.{name}"] != new.get(name)
            for line in _differences(f"{where}.{name}", old.get(name), new.get(name), defaults)
        ]
    if old == new:
        return []
    return [f"{where}: {_short(old)} in the report, {_short(new)} now"]


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."

"""One validator for every report reader: malformed numbers are refused when a report is read."""

from __future__ import annotations

import json

import pytest

from flatscope.errors import ReportError
from flatscope.io import Report
from tests._reports import HEADER

DENSITY = {"nodes": [[0.0, 1.0]], "weights": [[0.5, 0.5]], "num_matvecs": 2, "method": "slq"}


def document(**changes):
    report = Report.new(HEADER)
    report.set_metric("loss", 1.0, 0.0)
    report.set_metric("spectral_density", DENSITY, 0.0)
    out = report.to_dict()
    for dotted, value in changes.items():
        target = out
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metrics__loss": "Infinity"}, "metrics.loss is 'Infinity', not a number"),
        ({"metrics__gradient_norm": True}, "metrics.gradient_norm is True, not a number"),
        ({"metrics__top_eigenvalues": {"values": [1.0, "NaN"], "residuals": [0.1, 0.1]}},
         r"metrics.top_eigenvalues.values\[1\] is 'NaN'"),
        ({"metrics__top_eigenvalues": {"values": [1.0]}}, "top_eigenvalues lacks residuals"),
        ({"metrics__bottom_eigenvalues": {"values": [1.0], "residuals": []}},
         "has 1 values but 0 residuals"),
        ({"metrics__hessian_trace": {"value": 1.0, "per_block": {"w": [1.0]}}},
         r"per_block.w has 1 entries, not 2"),
        ({"metrics__hessian_trace": {"value": 1.0, "num_matvecs": -3}}, "not a count"),
        ({"metrics__spectral_density": {**DENSITY, "nodes": [[0.0, 1.0, 2.0]]}},
         "nodes and weights must be two non-empty tables of the same shape"),
        ({"metrics__spectral_density": {**DENSITY, "nodes": [[0.0, None]]}},
         r"nodes\[0\]\[1\] is None, not a number"),
        ({"metrics__spectral_density": {**DENSITY, "weights": [[1.5, -0.5]]}},
         "must be non-negative with a positive entry"),
        ({"metrics__hessian_diagonal": {"sum": 1.0, "dimension": 3, "values": [1.0]}},
         "has 1 values for dimension 3"),
        ({"metrics__sharpness": {"average": {"value": 0.1}}}, "sharpness lacks worst_case"),
        ({"timings__loss": "fast"}, "timings.loss is 'fast', not a number"),
        ({"model": 3}, "model is 3, not a string"),
        ({"data__num_samples": 2.5}, "data.num_samples is 2.5, not a count"),
        ({"metrics__scaled_trace": {"value": "NaN"}}, "metrics.scaled_trace.value is 'NaN'"),
        ({"metrics__scaled_top_eigenvalue": {"values": [1.0]}}, "lacks residuals"),
        ({"metrics__adaptive_sharpness": {"average": {"value": 0.1}}}, "lacks worst_case"),
        ({"data__labels_sha256": 7}, "data.labels_sha256 is 7, not a string"),
        ({"data__split_size": -1}, "data.split_size is -1, not a count"),
    ],
)  # fmt: skip
def test_malformed_reports_are_refused_on_load(tmp_path, changes, message):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(document(**changes)))
    with pytest.raises(ReportError, match=message) as info:
        Report.load(path)
    assert str(info.value).startswith(f"{path} is malformed: ")


def test_unknown_metrics_and_nulls_are_accepted(tmp_path):
    path = tmp_path / "report.json"
    changes = {"metrics__loss": None, "metrics__future_metric": {"anything": "NaN"}}
    path.write_text(json.dumps(document(**changes)))
    assert Report.load(path).metrics["future_metric"] == {"anything": "NaN"}

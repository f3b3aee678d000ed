"""Reports: JSON-safe values, atomic metric-by-metric writes, schema checks, resume checks."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import torch

from flatscope.errors import OutputError, ReportError
from flatscope.io import report as report_module
from flatscope.io.report import REPORT_SCHEMA, Report, flatscope_version, to_jsonable


def make_header(seed: int = 0, sha256: str = "ab" * 32) -> dict:
    return {
        "checkpoint": {"path": "runs/model.pt", "sha256": sha256},
        "model": "mlp:hidden=16",
        "data": {"spec": "digits", "num_samples": 256},
        "loss": "cross_entropy",
        "settings": {"seed": seed, "dtype": torch.float64, "device": "cpu", "top_k": 3},
    }


TRACE = {
    "value": np.float64(12.5),
    "stderr": torch.tensor(0.25, dtype=torch.float64),
    "method": "hutchpp",
    "num_matvecs": np.int64(90),
    "per_block": {"fc.weight": (10.0, 0.5), "fc.bias": (2.5, float("nan"))},
}


def test_new_report_has_every_required_field(tmp_path):
    report = Report.new(make_header(), tmp_path / "report.json")
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["schema"] == REPORT_SCHEMA == "flatscope.report/1.2"
    assert document["settings"]["dtype"] == "float64"
    assert document["environment"]["device"] == "cpu"
    assert document["environment"]["torch"] == torch.__version__
    assert document["metrics"] == {} and document["timings"] == {}
    assert set(report_module.REQUIRED_FIELDS) <= document.keys()
    assert report.to_dict() == document


def test_round_trip_converts_numpy_torch_and_non_finite(tmp_path):
    path = tmp_path / "report.json"
    report = Report.new(make_header(), path)
    report.set_metric("hessian_trace", TRACE, seconds=1.5)
    report.set_metric("loss", torch.tensor(0.125), seconds=0.25)
    report.set_metric(
        "top_eigenvalues",
        {"values": torch.tensor([3.0, 2.0]), "residuals": np.array([1e-8, np.inf])},
        seconds=np.float32(2.0),
    )
    loaded = Report.load(path)
    assert loaded.metrics == {
        "hessian_trace": {
            "value": 12.5,
            "stderr": 0.25,
            "method": "hutchpp",
            "num_matvecs": 90,
            "per_block": {"fc.weight": [10.0, 0.5], "fc.bias": [2.5, None]},
        },
        "loss": 0.125,
        "top_eigenvalues": {"values": [3.0, 2.0], "residuals": [1e-8, None]},
    }
    assert loaded.timings == {"hessian_trace": 1.5, "loss": 0.25, "top_eigenvalues": 2.0}
    assert loaded.has_metric("loss") and not loaded.has_metric("spectral_density")
    assert loaded.to_dict() == report.to_dict()


def test_each_metric_is_on_disk_as_soon_as_it_is_set(tmp_path):
    path = tmp_path / "report.json"
    report = Report.new(make_header(), path)
    report.set_metric("loss", 0.5, seconds=0.1)
    assert Report.load(path).metrics == {"loss": 0.5}
    with pytest.raises(TypeError, match=r"metrics.gradient_norm.extra is a object"):
        report.set_metric("gradient_norm", {"extra": object()}, seconds=0.1)
    assert Report.load(path).metrics == {"loss": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_report_without_path_stays_in_memory(tmp_path):
    report = Report.new(make_header())
    report.set_metric("loss", 1.0, seconds=0.0)
    assert report.path is None and report.metrics == {"loss": 1.0}
    with pytest.raises(ValueError, match="no path"):
        report.save()
    report.save(tmp_path / "later.json")
    assert Report.load(tmp_path / "later.json").metrics == {"loss": 1.0}


def test_unwritable_path_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        Report.new(make_header(), tmp_path / "no" / "such" / "report.json")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1 + 2j, "is a complex"),
        (torch.tensor([1j]), "is complex"),
        ({1: 2.0}, "keys must be strings"),
        ({"a": [1, {2.0}]}, r"value.a\[1\] is a set"),
    ],
)
def test_values_without_json_form_are_refused(value, message):
    with pytest.raises(TypeError, match=message):
        to_jsonable(value)


def test_bad_metric_arguments():
    report = Report.new(make_header())
    with pytest.raises(ValueError, match="non-empty string"):
        report.set_metric("", 1.0, seconds=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        report.set_metric("loss", 1.0, seconds=-1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.pop("loss"), "lacks loss"),
        (lambda h: h["data"].pop("num_samples"), "lacks data.num_samples"),
        (lambda h: h.update(settings=None), "settings must be dicts"),
        (lambda h: h.update(metrics={}), "may not set metrics"),
    ],
)
def test_bad_header_is_refused(change, message):
    header = make_header()
    change(header)
    with pytest.raises(ValueError, match=message):
        Report.new(header)


def write_json(tmp_path, document) -> str:
    path = tmp_path / "report.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def valid_document() -> dict:
    return Report.new(make_header()).to_dict()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "{not json", r"not valid JSON \(line 1"),
        (lambda d: '{"schema": NaN}', "not valid JSON"),
        (lambda d: [1, 2], "holds a JSON list"),
        (lambda d: {**d, "schema": "other.report/1"}, "not a flatscope report: its schema"),
        (lambda d: {k: v for k, v in d.items() if k != "schema"}, "its schema is None"),
        (lambda d: {**d, "schema": "flatscope.report/2"}, "version 2.*upgrade flatscope"),
        (lambda d: {**d, "schema": "flatscope.report/0"}, "version 0.*re-run"),
        (
            lambda d: {k: v for k, v in d.items() if k not in ("created", "timings")},
            "lacks created",
        ),
        (lambda d: {**d, "metrics": []}, "metrics must be objects"),
    ],
)
def test_load_validates_json_schema_and_fields(tmp_path, edit, message):
    path = write_json(tmp_path, edit(valid_document()))
    with pytest.raises(ReportError, match=message) as info:
        Report.load(path)
    assert "\n" not in str(info.value)


def test_load_accepts_minor_versions_of_the_same_major(tmp_path):
    for schema in ("flatscope.report/1", "flatscope.report/1.3"):  # older and newer minors
        path = write_json(tmp_path, {**valid_document(), "schema": schema})
        assert Report.load(path).path == path


def test_load_missing_file_and_directory(tmp_path):
    with pytest.raises(ReportError, match="report not found"):
        Report.load(tmp_path / "nope.json")
    with pytest.raises(ReportError, match="is a directory"):
        Report.load(tmp_path)


def test_resume_reuses_finished_metrics_when_inputs_match(tmp_path):
    path = tmp_path / "report.json"
    first = Report.resume_or_new(path, make_header())
    assert path.exists()
    first.set_metric("loss", 0.5, seconds=0.1)
    resumed = Report.resume_or_new(path, make_header())
    assert resumed.has_metric("loss") and resumed.metrics == {"loss": 0.5}
    assert resumed.to_dict()["created"] == first.to_dict()["created"]
    resumed.set_metric("gradient_norm", 0.01, seconds=0.1)
    assert Report.load(path).metrics == {"loss": 0.5, "gradient_norm": 0.01}


def test_resume_moved_checkpoint_with_same_content(tmp_path):
    path = tmp_path / "report.json"
    Report.new(make_header(), path)
    header = make_header()
    header["checkpoint"]["path"] = "elsewhere/model.pt"
    assert Report.resume_or_new(path, header).path == path


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (make_header(seed=1), r"settings.seed: 0 in the report, 1 now"),
        (make_header(sha256="cd" * 32), r"checkpoint.sha256: \"abab.*\.\.\. in the report"),
    ],
)
def test_resume_refuses_other_checkpoint_or_settings(tmp_path, header, message):
    path = tmp_path / "report.json"
    Report.new(make_header(), path).set_metric("loss", 0.5, seconds=0.1)
    before = path.read_bytes()
    with pytest.raises(ReportError, match=message):
        Report.resume_or_new(path, header)
    assert path.read_bytes() == before


def test_resume_lists_every_difference(tmp_path):
    path = tmp_path / "report.json"
    Report.new(make_header(), path)
    header = make_header(seed=2)
    header["settings"]["dtype"] = "float32"
    del header["settings"]["top_k"]
    header["loss"] = "mse"
    with pytest.raises(ReportError) as info:
        Report.resume_or_new(path, header)
    message = str(info.value)
    for difference in (
        "loss:",
        "settings.dtype:",
        "settings.seed:",
        "settings.top_k: 3 in the report",
    ):
        assert difference in message


def test_flatscope_version_falls_back_when_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert flatscope_version() == "0.1.0+unknown"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    assert flatscope_version() == "9.9.9"


@pytest.mark.parametrize(("curvature", "resumed"), [("hessian", True), ("ggn", False)])
def test_resume_a_report_from_before_a_setting_existed(tmp_path, curvature, resumed):
    """A report without the key ``settings.curvature`` (an older version's) is reused when the
    setting has its default now, and refused when it does not."""
    path = tmp_path / "report.json"
    Report.new(make_header(), path).set_metric("loss", 0.5, seconds=0.1)
    header = make_header()
    header["settings"]["curvature"] = curvature
    defaults = {"settings.curvature": "hessian"}
    if resumed:
        assert Report.resume_or_new(path, header, defaults).metrics == {"loss": 0.5}
    else:
        with pytest.raises(ReportError, match=r"settings.curvature: null in the report, \"ggn\""):
            Report.resume_or_new(path, header, defaults)

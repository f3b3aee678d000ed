"""``--curvature ggn|fisher``: analyze builds the chosen operator, the report records it, and the
numbers are those of the operator in the Python API; Hessian-only claims say what they need."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flatscope as fs
from flatscope.app.analyze import analyze, summary
from flatscope.cli import main
from flatscope.data import load_data
from flatscope.io import Report, save_checkpoint
from flatscope.metrics.criteria import NOT_ESTABLISHED
from flatscope.metrics.eigenvalues import check_negative_curvature
from flatscope.models import build_model, model_spec

SPEC = "mlp:hidden=8,depth=1"
SETTINGS = {"num_matvecs": 6, "top_k": 2, "bottom_k": 1, "dtype": "float64", "seed": 3}


@pytest.fixture(scope="module")
def inputs():
    model = build_model(SPEC, seed=0)
    data = load_data("digits", "train", subset=48, seed=3, batch_size=16)
    return model, data


def _objective(model, data) -> fs.Objective:
    return fs.Objective(model, nn.CrossEntropyLoss(), data.batches(), dtype=torch.float64)


def test_cli_analyze_with_ggn_gives_the_ggn_operator_numbers(inputs, tmp_path, capsys):
    model, data = inputs
    path = tmp_path / "mlp.pt"
    save_checkpoint(path, model, model_spec=model_spec(SPEC), data_spec="digits")
    options = [
        "--subset", "48", "--batch-size", "16", "--metrics", "trace,eigenvalues",
        "--num-matvecs", "6", "--top-k", "2", "--bottom-k", "1", "--dtype", "float64",
        "--seed", "3", "--eig-max-matvecs", "80", "--quiet", "--no-figures",
    ]  # fmt: skip
    out = tmp_path / "ggn"
    assert main(["analyze", str(path), *options, "--curvature", "ggn", "--out", str(out)]) == 0
    assert "curvature ggn" in capsys.readouterr().out
    report = Report.load(out / "report.json").to_dict()
    assert report["settings"]["curvature"] == "ggn"
    operator = fs.GGNOperator(_objective(model, data))
    top = report["metrics"]["top_eigenvalues"]
    assert top["curvature"] == "ggn"
    eigen = fs.eigenvalues(
        operator, 2, "largest", tol=1e-3, max_matvecs=80, seed=3, min_subspace=top["min_subspace"]
    )
    assert top["values"] == pytest.approx(eigen.values.tolist(), rel=1e-10)
    # the trace deflates the eigen search of the same analysis
    trace = report["metrics"]["hessian_trace"]
    expected = fs.trace(operator, "hutchpp", trace["num_matvecs"], seed=3, deflate=eigen)
    assert trace["value"] == pytest.approx(expected.value, rel=1e-10)
    # a positive semi-definite matrix says nothing about a minimum
    assert report["metrics"]["bottom_eigenvalues"]["values"][0] > -1e-8
    criterion = check_negative_curvature(report["metrics"])
    assert criterion.status == NOT_ESTABLISHED and "--curvature hessian" in criterion.detail


def test_fisher_analysis_and_sharpness_keep_their_meanings(inputs):
    model, data = inputs
    settings = {**SETTINGS, "sharpness_sigma": 0.01}
    fisher = analyze(
        model, "cross_entropy", data, "trace,sharpness", progress=False, curvature="fisher",
        **settings,
    )  # fmt: skip
    hessian = analyze(model, "cross_entropy", data, "trace,sharpness", progress=False, **settings)
    assert fisher.to_dict()["settings"]["curvature"] == "fisher"
    expected = fs.trace(fs.EmpiricalFisherOperator(_objective(model, data)), "hutchpp", 6, seed=3)
    assert fisher.metrics["hessian_trace"]["value"] == pytest.approx(expected.value, rel=1e-10)
    assert fisher.metrics["hessian_trace"]["value"] != hessian.metrics["hessian_trace"]["value"]
    # the sharpness's second-order prediction is the Hessian's whatever the curvature (on the
    # Hessian it is the analysis's own trace entry, on the Fisher a trace of its own)
    mine, theirs = fisher.metrics["sharpness"], hessian.metrics["sharpness"]
    assert mine["worst_case"] == theirs["worst_case"]
    for key in ("value", "stderr", "second_order", "second_order_stderr"):
        assert mine["average"][key] == pytest.approx(theirs["average"][key], rel=1e-10)
    assert (
        theirs["average"]["second_order"] == 0.01**2 / 2 * hessian.metrics["hessian_trace"]["value"]
    )
    assert (mine["average"]["trace_num_matvecs"], theirs["average"]["trace_num_matvecs"]) == (6, 0)
    assert "curvature fisher" in summary(fisher)

"""analyze with the trace and the eigenvalues: one product budget (the trace deflates the eigen
search), checked against a dense float64 Hessian; products counted; resume; one counting pass."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import hessian
from torch.func import functional_call

import flatscope
from flatscope.app.analyze import analyze
from flatscope.metrics.eigenvalues import DEFLATION_SHARE
from flatscope.models import build_model
from flatscope.objective import Objective
from flatscope.operators import HessianOperator
from flatscope.operators.params import flatten, unflatten

SPEC = "mlp:in_features=8,hidden=8,depth=1,num_classes=3,activation=tanh"
SETTINGS = {"dtype": "float64", "num_matvecs": 80, "top_k": 3}


@pytest.fixture(scope="module")
def problem():
    """A tanh MLP (99 parameters), two batches of 20 samples, its dense float64 Hessian."""
    model = build_model(SPEC, seed=0)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(40, 8, generator=generator)
    y = torch.randint(0, 3, (40,), generator=generator)
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    reference = copy.deepcopy(model).double()
    like = {name: p.detach() for name, p in reference.named_parameters()}

    def mean_loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(reference, unflatten(w, like), (x.double(),)), y)

    return model, batches, hessian(mean_loss, flatten(like.values()))


def run(problem, metrics="trace,eigenvalues", **kwargs):
    model, batches, _ = problem
    return analyze(model, "cross_entropy", batches, metrics, progress=False, **kwargs)


@pytest.fixture
def counted_columns(monkeypatch):
    """Columns multiplied by every HessianOperator, in a list of one number."""
    count = [0]
    matmat = HessianOperator._matmat

    def counting(self, V):
        count[0] += V.shape[1]
        return matmat(self, V)

    monkeypatch.setattr(HessianOperator, "_matmat", counting)
    return count


def test_deflated_trace_holds_the_exact_trace_within_its_error_bar(problem, counted_columns):
    _, _, H = problem
    exact = float(H.trace())
    for seed in range(4):
        counted_columns[0] = 0
        metrics = run(problem, seed=seed, **SETTINGS).metrics
        trace, eig = metrics["hessian_trace"], metrics["top_eigenvalues"]
        deflation = trace["deflation"]
        # the search grew to its share of the budget, and the pair spent the whole budget
        assert deflation["subspace"] >= DEFLATION_SHARE * SETTINGS["num_matvecs"]
        assert deflation["found"] == SETTINGS["top_k"] and trace["deflation_rank"] > 0
        assert deflation["num_matvecs"] == eig["num_matvecs"] == eig["min_subspace"]
        total = eig["num_matvecs"] + trace["num_matvecs"]
        assert deflation["total_matvecs"] == total == SETTINGS["num_matvecs"] == counted_columns[0]
        assert 0 < trace["stderr"] and abs(trace["value"] - exact) <= 3 * trace["stderr"]
        top = torch.linalg.eigvalsh(H).flip(0)[:3]
        errors = (torch.tensor(eig["values"], dtype=torch.float64) - top).abs()
        assert (errors <= torch.tensor(eig["residuals"]) + 1e-12).all()


def test_the_report_trace_is_the_public_api_on_the_same_operator(problem):
    model, batches, _ = problem
    metrics = run(problem, seed=5, **SETTINGS).metrics
    trace, eig = metrics["hessian_trace"], metrics["top_eigenvalues"]
    op = HessianOperator(model, F.cross_entropy, batches, dtype=torch.float64)
    search = flatscope.eigenvalues(
        op, 3, tol=1e-3, max_matvecs=500, seed=5, min_subspace=eig["min_subspace"]
    )
    again = flatscope.trace(op, "hutchpp", trace["num_matvecs"], seed=5, deflate=search)
    assert again.value == pytest.approx(trace["value"], rel=1e-12)
    assert again.stderr == pytest.approx(trace["stderr"], rel=1e-9)


def test_trace_alone_is_not_deflated(problem, counted_columns):
    trace = run(problem, "trace", **SETTINGS).metrics["hessian_trace"]
    assert trace["deflation"] is None and trace["deflation_rank"] == 0
    assert trace["num_matvecs"] == counted_columns[0] == SETTINGS["num_matvecs"]


@pytest.mark.parametrize("missing", ["hessian_trace", "top_eigenvalues"])
def test_resume_after_either_entry_ends_like_one_run(problem, tmp_path, missing):
    whole = run(problem, out=tmp_path / "whole", figures=False, **SETTINGS)
    path = tmp_path / "whole" / "report.json"
    document = json.loads(path.read_text())
    del document["metrics"][missing], document["timings"][missing]
    path.write_text(json.dumps(document))
    resumed = run(problem, out=tmp_path / "whole", resume=True, figures=False, **SETTINGS)
    assert resumed.metrics == whole.metrics


def test_one_sample_counting_pass_per_analysis(problem, monkeypatch):
    passes = []
    count = Objective._count

    def counting(self):
        passes.append(self)
        return count(self)

    monkeypatch.setattr(Objective, "_count", counting)
    run(problem, "trace,eigenvalues,sharpness", num_matvecs=6, top_k=2)
    assert len(passes) == 1

"""Limits checked before any work: each trace method's minimum, product caps, memory."""

from __future__ import annotations

import pytest
import torch

from flatscope.app.analyze import analyze
from flatscope.errors import FlatscopeError
from flatscope.linalg import trace
from flatscope.metrics import budget
from flatscope.metrics.budget import check_problem_size
from flatscope.metrics.settings import (
    MAX_MATVECS,
    TRACE_MIN_MATVECS,
    AnalysisError,
    AnalysisSettings,
)


@pytest.mark.parametrize("method", list(TRACE_MIN_MATVECS))
def test_each_trace_method_minimum_is_the_estimators_own(method):
    A = torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64))
    minimum = TRACE_MIN_MATVECS[method]
    assert trace(A, method, minimum, seed=0).num_matvecs <= minimum
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        trace(A, method, minimum - 1, seed=0)
    with pytest.raises(FlatscopeError, match=f"(at least|>=) {minimum}"):
        AnalysisSettings(trace_method=method, num_matvecs=minimum - 1)
    AnalysisSettings(trace_method=method, num_matvecs=minimum)


def test_budgets_above_the_cap_are_refused():
    AnalysisSettings(num_matvecs=MAX_MATVECS, eig_max_matvecs=MAX_MATVECS)
    for settings in ({"num_matvecs": MAX_MATVECS + 1}, {"eig_max_matvecs": MAX_MATVECS + 1}):
        with pytest.raises(AnalysisError, match="the limit is 1,000,000"):
            AnalysisSettings(**settings)


def test_vectors_that_cannot_fit_in_memory_are_refused(monkeypatch):
    settings = AnalysisSettings(num_matvecs=300, top_k=5, density_steps=90, density_probes=2)
    d, cpu = 1_000_000, torch.device("cpu")
    monkeypatch.setattr(budget, "device_memory", lambda device: 4 * 2**30)  # a 4 GiB machine
    check_problem_size(settings, ["top_eigenvalues", "spectral_density"], d, torch.float32, cpu)
    with pytest.raises(AnalysisError, match=r"hessian_trace would hold about 3.4 GiB.*lower --num"):
        monkeypatch.setattr(budget, "device_memory", lambda device: 2**31)
        check_problem_size(settings, ["hessian_trace"], d, torch.float32, cpu)
    with pytest.raises(AnalysisError, match="top_k .--top-k. is 5, more than the 4 parameters"):
        check_problem_size(settings, ["top_eigenvalues"], 4, torch.float32, cpu)
    check_problem_size(settings, ["hessian_trace"], 4, torch.float32, cpu)  # no eigenvalues


def test_analyze_refuses_before_computing_anything(tmp_path):
    model = torch.nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.arange(8) % 2)
    with pytest.raises(AnalysisError, match="more than the 8 parameters"):
        analyze(model, "cross_entropy", data, "eigenvalues", out=tmp_path / "out", top_k=9)
    assert not (tmp_path / "out").exists()

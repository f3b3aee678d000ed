"""Limits checked before any work (each trace method's minimum, product caps, memory), the
--budget presets and the cost estimate."""

from __future__ import annotations

import pytest
import torch

from flatscope.app.analyze import analyze
from flatscope.errors import FlatscopeError
from flatscope.linalg import trace
from flatscope.metrics import budget
from flatscope.metrics.budget import check_problem_size, estimate_cost
from flatscope.metrics.settings import (
    BUDGETS,
    MAX_MATVECS,
    PRESET_SETTINGS,
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


# ------------------------------------------------------------------ presets and the estimate


@pytest.mark.parametrize("preset", list(BUDGETS))
def test_a_preset_sets_every_budget_and_options_given_one_by_one_win(preset):
    settings = AnalysisSettings(budget=preset)
    assert {name: getattr(settings, name) for name in PRESET_SETTINGS} == BUDGETS[preset]
    mixed = AnalysisSettings(budget=preset, num_matvecs=12, density_probes=3)
    assert (mixed.num_matvecs, mixed.density_probes) == (12, 3)
    assert mixed.eig_max_matvecs == BUDGETS[preset]["eig_max_matvecs"]
    recorded = mixed.to_dict()
    assert recorded["budget"] == preset and recorded["num_matvecs"] == 12
    assert AnalysisSettings(**recorded) == mixed  # the report's settings rebuild them


def test_the_presets_are_ordered_and_standard_is_the_default():
    assert AnalysisSettings() == AnalysisSettings(budget="standard")
    for name in PRESET_SETTINGS:
        quick, standard, precise = (BUDGETS[p][name] for p in ("quick", "standard", "precise"))
        if name == "eig_tol":  # a smaller tolerance spends more
            assert quick > standard > precise
        else:
            assert quick <= standard <= precise


def test_an_unknown_preset_is_refused_by_name():
    with pytest.raises(
        AnalysisError, match="unknown budget .--budget. 'fast'; choose one of quick"
    ):
        AnalysisSettings(budget="fast")


def test_the_estimate_counts_the_first_product_once_at_its_own_time():
    plan = {"hessian_trace": 30, "loss": None, "top_eigenvalues": 150, "spectral_density": 40}
    estimate = estimate_cost(plan, first_seconds=5.2, product_seconds=0.5)
    assert estimate.products == {
        "hessian_trace": 30,
        "top_eigenvalues": 150,
        "spectral_density": 40,
    }
    assert estimate.entry_seconds == {
        "hessian_trace": pytest.approx(5.2 + 29 * 0.5),
        "top_eigenvalues": 75.0,
        "spectral_density": 20.0,
    }
    assert estimate.seconds == pytest.approx(5.2 + 219 * 0.5)
    lines = estimate.text().splitlines()
    assert lines[1].split() == ["hessian_trace", "30", "HVPs", "19.7s"]
    assert lines[-1].split() == ["total", "220", "HVPs", "1m55s"]

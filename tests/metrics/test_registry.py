"""The metric registry: discovery, names, entries in run order, parsing of user choices."""

from __future__ import annotations

import pytest

from flatscope.metrics import (
    REGISTRY,
    AnalysisError,
    AnalysisSettings,
    default_metrics,
    entries_of,
    metric_of,
    ordered_entries,
    parse_metrics,
)


def test_every_metric_module_is_registered_in_order():
    orders = [metric.order for metric in REGISTRY.values()]
    assert orders == sorted(orders)
    assert {"loss", "trace", "eigenvalues", "density", "diagonal", "sharpness"} <= set(REGISTRY)
    for metric in REGISTRY.values():
        for entry in metric.entries:
            assert metric_of(entry) is metric


def test_defaults_and_all():
    assert default_metrics() == ("trace", "scaled_trace", "eigenvalues", "density")
    assert "loss" not in parse_metrics("all")
    assert parse_metrics("density, trace,trace") == ("trace", "density")


@pytest.mark.parametrize("bad", ["", "trace,hessian", "loss"])
def test_unknown_or_empty_choices_are_refused(bad):
    with pytest.raises(AnalysisError):
        parse_metrics(bad)


def test_entries_follow_the_settings():
    assert entries_of(["eigenvalues"], AnalysisSettings()) == [
        "loss",
        "gradient_norm",
        "top_eigenvalues",
    ]
    with_bottom = entries_of(["eigenvalues"], AnalysisSettings(bottom_k=1))
    assert with_bottom[-1] == "bottom_eigenvalues"


def test_report_entries_are_ordered_by_the_registry_and_unknown_ones_skipped():
    metrics = {"spectral_density": 3, "unknown": 0, "loss": 1, "hessian_trace": 2}
    assert [entry for entry, _ in ordered_entries(metrics)] == [
        "loss",
        "hessian_trace",
        "spectral_density",
    ]

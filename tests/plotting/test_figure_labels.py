"""Every figure flatscope draws names its axes and has a title, read back from the matplotlib
objects; the catalogue below must list every figure function the plotting modules export."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from matplotlib.figure import Figure

import flatscope.plotting
from flatscope.plotting import comparison_figures, demo_figures, landscape, report_figures
from tests.plotting import _stored

FIGURES = {
    "density_figure": lambda: report_figures.density_figure(_stored.metrics()),
    "eigenvalue_figure": lambda: report_figures.eigenvalue_figure(_stored.metrics()),
    "trace_figure": lambda: report_figures.trace_figure(_stored.metrics()),
    "density_overlay_figure": lambda: demo_figures.density_overlay_figure(
        {"sgd": [_stored.metrics(2.0)["spectral_density"]] * 2, "fsgld": [_stored.GAPPED] * 2}
    ),
    "flatness_figure": lambda: demo_figures.flatness_figure(
        {"sgd": [_stored.metrics()["hessian_trace"]] * 2}, {"sgd": [10.0, 11.0]}
    ),
    "history_figure": lambda: demo_figures.history_figure(
        {"sgd": [_stored.records(0), _stored.records(1)]}
    ),
    "eigenvalue_comparison_figure": lambda: comparison_figures.eigenvalue_comparison_figure(
        {"a": _stored.metrics(), "b": _stored.metrics(0.5)}
    ),
    "trace_comparison_figure": lambda: comparison_figures.trace_comparison_figure(
        {"a": _stored.metrics(), "b": _stored.metrics(0.5)}
    ),
    "landscape_overlay_figure": lambda: comparison_figures.landscape_overlay_figure(
        {"a": [_stored.slice_1d("a", 1.0)], "b": [_stored.slice_1d("b", 0.5)]}
    ),
    "trajectory_figure": lambda: comparison_figures.trajectory_figure(_stored.trajectory_points()),
    "plot_slice_1d": lambda: landscape.plot_slice_1d(_stored.slice_1d("a", 1.0)),
    "plot_surface_2d": lambda: landscape.plot_surface_2d(_stored.surface_2d()),
    "plot_surface_3d": lambda: landscape.plot_surface_3d(_stored.surface_2d()),
}


def exported_figure_functions() -> set[str]:
    """The functions of the plotting modules that are exported and return a Figure."""
    names = set()
    for info in pkgutil.iter_modules(flatscope.plotting.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"flatscope.plotting.{info.name}")
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            if callable(value) and "Figure" in str(inspect.signature(value).return_annotation):
                names.add(name)
    return names


def test_the_catalogue_lists_every_figure_function():
    assert exported_figure_functions() == set(FIGURES)


def missing_labels(fig: Figure) -> list[str]:
    """What ``fig`` lacks: a title (its own or every panel's), and on every panel but colour
    bars a y label, an x label (or a panel sharing the x axis that has one), a z label in 3-D."""
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    missing = [] if panels else ["any panel"]
    suptitle = fig.get_suptitle()
    for number, ax in enumerate(panels):
        shared = ax.get_shared_x_axes().get_siblings(ax)
        checks = {
            "title": suptitle or ax.get_title(),
            "x label": any(other.get_xlabel() for other in shared),
            "y label": ax.get_ylabel(),
        }
        if ax.name == "3d":
            checks["z label"] = ax.get_zlabel()
        missing += [f"panel {number}: {what}" for what, present in checks.items() if not present]
    return missing


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_has_axis_labels_and_a_title(name):
    fig = FIGURES[name]()
    assert isinstance(fig, Figure)
    assert missing_labels(fig) == []


def test_the_label_check_finds_what_is_missing():
    fig = Figure()
    ax = fig.add_subplot()
    ax.set_xlabel("x")
    assert missing_labels(fig) == ["panel 0: title", "panel 0: y label"]

"""Stored numbers as reports, runs and landscape files hold them, written by hand so that the
figure tests need no model and no estimator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from flatscope.io.landscape_file import LandscapeResult

DATA = {"data_spec": "digits:split_seed=0", "split": "train", "num_samples": 512}


def density_entry(nodes: list[float], weights: list[float], probes: int = 2) -> dict:
    """A ``spectral_density`` report entry with the same measure on every probe."""
    return {
        "method": "slq",
        "nodes": [list(nodes)] * probes,
        "weights": [list(weights)] * probes,
        "num_matvecs": probes * len(nodes),
    }


#: A bulk near zero and one outlier at 100: the density falls far below the plot's floor between.
GAPPED = density_entry([-0.5, 0.0, 0.5, 100.0], [0.3, 0.4, 0.2, 0.1])


def metrics(scale: float = 1.0, eigenvalues: int = 2) -> dict:
    """Report metrics with every entry a figure draws."""
    top = [scale * (10.0 - i) for i in range(eigenvalues)]
    return {
        "loss": 0.5,
        "hessian_trace": {
            "value": 20.0 * scale,
            "stderr": 0.5,
            "method": "hutchpp",
            "num_matvecs": 30,
            "per_block": {"fc.weight": [15.0 * scale, 0.4], "fc.bias": [5.0 * scale, 0.2]},
        },
        "top_eigenvalues": {
            "values": top,
            "residuals": [1e-3] * eigenvalues,
            "num_matvecs": 20,
            "converged": True,
        },
        "bottom_eigenvalues": {
            "values": [-0.1 * scale],
            "residuals": [2e-3],
            "num_matvecs": 20,
            "converged": True,
        },
        "spectral_density": density_entry([-0.1, 0.0, 2.0 * scale, top[0]], [0.2, 0.5, 0.2, 0.1]),
        "sharpness": {
            "average": {
                "value": 0.1 * scale,
                "stderr": 0.01,
                "second_order": 0.09 * scale,
                "second_order_stderr": 0.005,
                "sigma": 0.01,
            }
        },
    }


def records(seed: int) -> list[dict]:
    """A run's ``metrics.jsonl`` records over 4 epochs."""
    return [
        {"epoch": e, "hessian_trace": 10.0 * e + seed, "test_acc": 0.5 + 0.1 * e}
        for e in range(1, 5)
    ]


def trajectory_points() -> list[SimpleNamespace]:
    """What :func:`flatscope.app.trajectory.trajectory` returns, for three epochs."""
    return [
        SimpleNamespace(
            epoch=e,
            trace=10.0 * e,
            trace_stderr=0.5,
            top_eigenvalue=2.0 * e,
            top_residual=1e-3,
            loss=1.0 / e,
            train_loss=1.1 / e,
            train_acc=0.5 + 0.1 * e,
            val_acc=0.45 + 0.1 * e,
            test_acc=0.4 + 0.1 * e,
        )
        for e in (1, 2, 3)
    ]


def slice_1d(label: str, curvature: float) -> LandscapeResult:
    alphas = np.linspace(-1, 1, 11)
    meta = {"label": label, "directions": [{"kind": "random", "normalization": "filter"}], **DATA}
    return LandscapeResult((alphas,), curvature * alphas**2, None, meta)


def surface_2d(scale: float = 1.0) -> LandscapeResult:
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-1, 1, 7)
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    direction = {"kind": "random", "normalization": "filter"}
    meta = {"label": "final", "directions": [direction, direction], **DATA}
    return LandscapeResult((alphas, betas), scale * (A**2 + 3 * B**2 + A * B), None, meta)

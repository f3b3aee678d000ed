"""``torchrun -m flatscope analyze`` on 2 Gloo processes gives the 1-process report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flatscope.io import save_checkpoint
from flatscope.models import build_model

SPEC = "mlp:hidden=8"
OPTIONS = ["--subset", "100", "--batch-size", "16", "--dtype", "float64", "--quiet"]
OPTIONS += ["--metrics", "trace,eigenvalues,density", "--num-matvecs", "12", "--top-k", "2"]
OPTIONS += ["--density-steps", "8", "--no-figures"]


def _analyze(launcher: list[str], checkpoint, out) -> dict:
    """Run the analysis; only one process (rank 0) may print the summary."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*launcher, "-m", "flatscope", "analyze", str(checkpoint), "--out", str(out)]
    done = subprocess.run(
        [*command, *OPTIONS], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("report: ") == 1, done.stdout
    return json.loads((out / "report.json").read_text())["metrics"]


def test_two_processes_give_the_single_process_report(tmp_path):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, build_model(SPEC, seed=0), model_spec=SPEC, data_spec="digits")
    single = _analyze([sys.executable], checkpoint, tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    double = _analyze([*torchrun, "--nproc_per_node", "2"], checkpoint, tmp_path / "two")
    assert double.keys() == single.keys()
    close = dict(rel=1e-10, abs=1e-12)
    assert double["loss"] == pytest.approx(single["loss"], **close)
    assert double["gradient_norm"] == pytest.approx(single["gradient_norm"], **close)
    assert double["hessian_trace"]["value"] == pytest.approx(
        single["hessian_trace"]["value"], **close
    )
    assert double["top_eigenvalues"]["values"] == pytest.approx(
        single["top_eigenvalues"]["values"], **close
    )
    for a, b in zip(
        double["spectral_density"]["nodes"], single["spectral_density"]["nodes"], strict=True
    ):
        assert a == pytest.approx(b, **close)


def test_two_processes_give_the_single_process_landscape(tmp_path):
    """``torchrun -m flatscope landscape``: the same surface, written once by rank 0."""
    import numpy as np

    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, build_model(SPEC, seed=0), model_spec=SPEC, data_spec="digits")
    options = ["--subset", "100", "--batch-size", "16", "--dtype", "float64", "--quiet"]
    options += ["--directions", "eigen", "--resolution", "5", "--eig-tol", "1e-8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    surfaces = {}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    for name, launcher in (
        ("one", [sys.executable]),
        ("two", [*torchrun, "--nproc_per_node", "2"]),
    ):
        out = tmp_path / name
        command = [*launcher, "-m", "flatscope", "landscape", str(checkpoint), "--out", str(out)]
        done = subprocess.run(
            [*command, *options], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("wrote ") == 1, done.stdout
        with np.load(out / "model-eigen-1d.npz", allow_pickle=False) as saved:
            surfaces[name] = saved["loss"]
    np.testing.assert_allclose(surfaces["two"], surfaces["one"], rtol=1e-10)

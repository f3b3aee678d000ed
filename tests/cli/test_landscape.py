"""``flatscope landscape``: every direction kind writes its .npz and figures, the saved grid
holds the exact loss at the checkpoint, and bad input is a one-line error with exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flatscope.cli import main
from flatscope.data.datasets import load_data
from flatscope.io import apply_state_dict, load_checkpoint, save_checkpoint
from flatscope.landscape import LandscapeResult
from flatscope.models.losses import build_loss
from flatscope.models.zoo import build_model
from flatscope.operators.hessian import HessianOperator
from flatscope.plotting.landscape import interpolation_end_points, plot_slice_1d

MODEL = "mlp:hidden=8"
BN_MODEL = "cnn:width=2"
SUBSET = 64
FAST = ["--subset", str(SUBSET), "--dtype", "float64", "--quiet"]


def _save(path, model, spec=MODEL) -> str:
    save_checkpoint(path, model, model_spec=spec, data_spec="digits")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A run directory (3 epoch checkpoints moving in random directions, then final.pt), a
    second checkpoint of the same model and one of a different model."""
    root = tmp_path_factory.mktemp("landscape")
    (root / "run" / "checkpoints").mkdir(parents=True)
    generator = torch.Generator().manual_seed(1)
    for epoch in (1, 2, 3):
        model = build_model(MODEL, seed=0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * epoch * torch.randn(p.shape, generator=generator))
        _save(root / "run" / "checkpoints" / f"epoch_{epoch:04d}.pt", model)
    return {
        "root": root,
        "run": str(root / "run"),
        "final": _save(root / "run" / "final.pt", build_model(MODEL, seed=0)),
        "other_seed": _save(root / "other_seed.pt", build_model(MODEL, seed=5)),
        "other_model": _save(
            root / "other_model.pt", build_model("mlp:hidden=6", seed=0), "mlp:hidden=6"
        ),
    }


def operator_at(checkpoint: str, spec: str = MODEL) -> HessianOperator:
    """The Hessian operator of the loss at the checkpoint over the command's data, in float64."""
    model = build_model(spec)
    apply_state_dict(model, load_checkpoint(checkpoint).state_dict)
    data = load_data("digits", "train", seed=0).subset(SUBSET)
    return HessianOperator(model, build_loss("cross_entropy"), data.batches(), dtype=torch.float64)


def exact_loss(checkpoint: str) -> float:
    return operator_at(checkpoint).loss()


def value_at(result: LandscapeResult, *point: float) -> float:
    index = tuple(
        int(np.flatnonzero(np.isclose(c, x, rtol=0, atol=1e-12))[0])
        for c, x in zip(result.coords, point, strict=True)
    )
    return float(result.loss[index])


def written(out, names) -> None:
    for name in names:
        assert (out / name).stat().st_size > 0, name


def test_random_slices_of_two_checkpoints_overlay_and_hold_the_exact_centre(files, capsys):
    out = files["root"] / "random"
    argv = ["landscape", files["final"], files["other_seed"], "--resolution", "5"]
    assert main([*argv, "--out", str(out), *FAST]) == 0
    written(out, ["final-random-1d.npz", "other_seed-random-1d.npz"])
    written(out, ["slice-random.png", "slice-random.pdf"])
    for name in ("final", "other_seed"):
        result = LandscapeResult.load_npz(out / f"{name}-random-1d.npz")
        assert result.dims == 1 and len(result.coords[0]) == 5
        assert result.metadata["label"] == name and result.metadata["seed"] == 0
        assert result.metadata["directions"][0]["kind"] == "random"
        assert value_at(result, 0.0) == pytest.approx(exact_loss(files[name]), rel=1e-12)
    printed = capsys.readouterr().out
    assert f"final: loss {exact_loss(files['final']):.6g} at the checkpoint" in printed


def test_eigen_slice_records_the_eigenvalue(files):
    out = files["root"] / "eigen"
    argv = ["landscape", files["final"], "--directions", "eigen", "--resolution", "3"]
    assert main([*argv, "--eig-tol", "0.01", "--out", str(out), *FAST]) == 0
    written(out, ["final-eigen-1d.npz", "slice-eigen.png", "slice-eigen.pdf"])
    result = LandscapeResult.load_npz(out / "final-eigen-1d.npz")
    direction = result.metadata["directions"][0]
    assert direction["kind"] == "eigen" and direction["norm"] == pytest.approx(1.0, rel=1e-6)
    assert direction["eigenvalue"] > 0
    assert value_at(result, 0.0) == pytest.approx(exact_loss(files["final"]), rel=1e-12)


def test_pca_plane_carries_the_projected_trajectory(files):
    out = files["root"] / "pca"
    argv = ["landscape", files["final"], "--directions", f"pca:{files['run']}", "--dims", "2"]
    assert main([*argv, "--resolution", "3", "--out", str(out), *FAST]) == 0
    written(out, ["final-pca-2d.npz", "final-pca-contour.png", "final-pca-contour.pdf"])
    written(out, ["final-pca-surface.png", "final-pca-surface.pdf"])
    result = LandscapeResult.load_npz(out / "final-pca-2d.npz")
    assert result.loss.shape == (3, 3)
    # epochs 1-3 and final.pt, the centre: the last point of the path is the origin
    assert result.trajectory.shape == (4, 2)
    np.testing.assert_allclose(result.trajectory[-1], 0.0, atol=1e-6)
    # the default range covers the path with a margin
    assert result.coords[0][-1] > np.abs(result.trajectory).max()
    assert value_at(result, 0.0, 0.0) == pytest.approx(exact_loss(files["final"]), rel=1e-12)


def test_interpolation_passes_through_both_checkpoints(files):
    out = files["root"] / "interp"
    argv = ["landscape", files["final"], "--directions", f"interp:{files['other_seed']}"]
    assert main([*argv, "--range", "0.5", "--resolution", "5", "--out", str(out), *FAST]) == 0
    written(out, ["final-interp-1d.npz", "slice-interp.png", "slice-interp.pdf"])
    result = LandscapeResult.load_npz(out / "final-interp-1d.npz")
    np.testing.assert_allclose(result.coords[0], [-0.5, 0.0, 0.5, 1.0, 1.5])
    assert value_at(result, 0.0) == pytest.approx(exact_loss(files["final"]), rel=1e-12)
    # alpha = 1 is the other checkpoint up to the float32 rounding of end - start (2^-24 of each
    # entry at most), whose first-order effect on the loss is bounded by Cauchy-Schwarz
    end = operator_at(files["other_seed"])
    distance = result.metadata["directions"][0]["distance"]
    bound = float(end.gradient().norm()) * 2.0**-24 * distance
    assert abs(value_at(result, 1.0) - end.loss()) <= 2 * bound


@pytest.mark.parametrize(
    ("directions", "message"),
    [
        ("sideways", "--directions must be one of random, eigen, pca:RUN_DIR, interp:CKPT2"),
        ("pca:{root}/no_such_run", "run directory not found"),
        ("interp:{other_model}", "other_model.pt does not hold the model of"),
    ],
)
def test_bad_directions_are_one_line_with_exit_two(files, capsys, directions, message):
    out = files["root"] / "bad"
    argv = ["landscape", files["final"], "--directions", directions.format(**files)]
    assert main([*argv, "--resolution", "3", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flatscope: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()


def test_unwritable_output_fails_before_any_computation(files, capsys, monkeypatch):
    out = files["root"] / "a_file"
    out.write_text("not a directory")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a checkpoint was read before the output directory was checked")

    monkeypatch.setattr("flatscope.io.load_checkpoint", must_not_run)
    assert main(["landscape", files["final"], "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a directory" in err


def test_interpolation_with_batchnorm_ends_at_the_other_checkpoints_own_loss(files):
    """The line moves the BatchNorm statistics with the weights (the default), so alpha = 1 is
    the second checkpoint as saved; re-estimated statistics are the other choice."""
    paths = []
    for seed in (0, 5):
        model = build_model(BN_MODEL, seed=seed)
        model.train()
        with torch.no_grad():  # distinct running statistics per checkpoint
            model(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) + seed)
        paths.append(_save(files["root"] / f"bn{seed}.pt", model, BN_MODEL))
    out = files["root"] / "interp-bn"
    argv = ["landscape", paths[0], "--directions", f"interp:{paths[1]}", "--range", "0.5"]
    assert main([*argv, "--resolution", "5", "--out", str(out), *FAST]) == 0
    result = LandscapeResult.load_npz(out / "bn0-interp-1d.npz")
    own = [operator_at(path, BN_MODEL).loss() for path in paths]
    assert value_at(result, 0.0) == pytest.approx(own[0], rel=1e-12)
    assert value_at(result, 1.0) == pytest.approx(own[1], rel=1e-12)
    assert result.metadata["bn_stats"] == "interpolate"
    line = result.metadata["directions"][0]
    assert (line["start"], line["end"]) == tuple(paths)
    # the figure names both checkpoints and marks them on the curve, at their own losses
    assert interpolation_end_points(result) == tuple("/".join(Path(p).parts[-2:]) for p in paths)
    dots = [l.get_xydata()[0] for l in plot_slice_1d(result).axes[0].lines if l.get_marker() == "o"]
    np.testing.assert_allclose(dots, [[0.0, own[0]], [1.0, own[1]]], rtol=1e-12)
    argv += ["--resolution", "5", "--bn-stats", "recompute"]
    assert main([*argv, "--out", str(out), *FAST]) == 0
    recomputed = LandscapeResult.load_npz(out / "bn0-interp-1d.npz")
    assert recomputed.metadata["bn_recompute"] and recomputed.metadata["bn_stats"] == "recompute"
    assert abs(value_at(recomputed, 1.0) - own[1]) > 1e-6  # the statistics of the data differ


def test_recomputing_batchnorm_statistics_without_batchnorm_is_a_one_line_error(files, capsys):
    argv = ["landscape", files["final"], "--bn-stats", "recompute", "--resolution", "3"]
    assert main([*argv, "--out", str(files["root"] / "no-bn"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no BatchNorm layer" in err

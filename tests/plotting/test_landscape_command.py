"""``flatscope landscape`` with several checkpoints on planes draws every contour and surface
figure on one colour scale (the figures read back as the command saves them)."""

from __future__ import annotations

import numpy as np
from matplotlib.contour import QuadContourSet

import flatscope.plotting.report_figures as report_figures
from flatscope.cli import main
from flatscope.io import save_checkpoint
from flatscope.io.landscape_file import LandscapeResult
from flatscope.models.zoo import build_model


def test_two_planes_share_one_colour_scale_and_loss_axis(tmp_path, monkeypatch):
    paths = []
    for seed in (0, 5):
        paths.append(str(tmp_path / f"seed{seed}.pt"))
        save_checkpoint(
            paths[-1], build_model("mlp:hidden=8", seed=seed), model_spec="mlp:hidden=8"
        )
    saved = {}

    def capture(fig, stem, *args, **kwargs):  # keeps the figure instead of rendering it
        saved[str(stem).rpartition("/")[2]] = fig
        return []

    monkeypatch.setattr(report_figures, "save_figure", capture)
    out = tmp_path / "planes"
    argv = ["landscape", *paths, "--dims", "2", "--resolution", "4", "--subset", "32"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert sorted(saved) == [
        "seed0-random-contour",
        "seed0-random-surface",
        "seed5-random-contour",
        "seed5-random-surface",
    ]
    losses = [LandscapeResult.load_npz(out / f"seed{s}-random-2d.npz").loss for s in (0, 5)]
    assert losses[0].max() != losses[1].max()  # the two planes differ, so a shared scale shows
    filled = [
        next(
            c
            for c in saved[f"seed{s}-random-contour"].axes[0].collections
            if isinstance(c, QuadContourSet)
        )
        for s in (0, 5)
    ]
    np.testing.assert_array_equal(filled[0].levels, filled[1].levels)
    assert filled[0].get_clim() == filled[1].get_clim()
    low, high = filled[0].levels[0], filled[0].levels[-1]
    assert low <= min(map(np.min, losses)) and high >= max(map(np.max, losses))
    for s in (0, 5):
        assert saved[f"seed{s}-random-surface"].axes[0].get_zlim() == (low, high)

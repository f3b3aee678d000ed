"""The noisy-label study's bookkeeping and the CIFAR-10N paper recipe's code path."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flatscope.io import Report
from flatscope.optim import coupled_sigma
from tests.data._datasets import write_fake_cifar

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str):
    if name not in sys.modules:
        sys.path.insert(0, str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_every_optimizer_gets_the_same_tuning_budget():
    study = _module("noisy_label_study")
    for arch in study.ARCHITECTURES:
        sizes = {name: len(study.tuning_grid(arch, name)) for name in study.SECOND_AXIS}
        assert len(set(sizes.values())) == 1 and min(sizes.values()) >= 12, sizes
    beta_invs = study.SECOND_AXIS["fsgld"][2]
    assert beta_invs[0] == 0 and max(beta_invs) >= 1e-3
    assert any(1e-9 <= b <= 1e-7 for b in beta_invs)  # the paper's range
    rhos = study.SECOND_AXIS["sam"][2]
    assert min(rhos) == 0.01 and max(rhos) >= 0.5


def test_tuning_winner_margin_and_grid_edge():
    study = _module("noisy_label_study")
    grid = study.tuning_grid("cnn", "sam")
    scores = [(settings, [0.5, 0.5, 0.5]) for settings in grid]
    # the winner at the largest rho and the smaller lr; the runner-up 1 point behind on average
    scores[6] = (grid[6], [0.93, 0.91, 0.92])
    scores[5] = (grid[5], [0.91, 0.91, 0.91])
    result = study.TuningResult("cnn", "sam", scores)
    assert result.best == {"lr": 0.01, "rho": 1.0}
    assert result.edges() == ["lr low end", "rho high end"]
    row = result.row()
    assert row[1] == "lr 0.01, rho 1" and row[3] == "lr 0.01, rho 0.5"
    # paired differences 2, 0, 1 points: mean 1, standard error 1 / sqrt(3)
    assert row[5] == f"1.0 ± {100 * np.std([0.02, 0.0, 0.01], ddof=1) / np.sqrt(3):.1f}"
    assert row[6] == "lr low end, rho high end"


def test_fsgld_ablations_keep_the_tuned_learning_rate_and_sigma():
    study = _module("noisy_label_study")
    tuned = {"fsgld": {"lr": 0.05, "beta_inv": 1e-5}}
    optimizer, settings = study.method_settings("fsgld_b0", tuned)
    assert optimizer == "fsgld"
    assert settings == {"lr": 0.05, "beta_inv": 0.0, "sigma": coupled_sigma(1e-5, 0.1)}
    assert study.method_settings("fsgld_paper", tuned)[1] == {"lr": 0.05, "beta_inv": 1e-8}


def test_cifar10n_recipe_runs_two_steps_on_cifar_shaped_data(tmp_path, capsys):
    """The recipe's whole path (ResNet-34 on CIFAR-10N worse labels, training, checkpoint
    analyses, matched loss, tables) on 20 generated images: 2 epochs of one step each."""
    recipe = _module("paper_recipe_cifar10n")
    _, clean, _ = write_fake_cifar(tmp_path)
    worse = (clean + 1 + np.arange(20) % 2) % 10
    torch.save({"clean_label": clean, "worse_label": worse}, tmp_path / "CIFAR-10_human.pt")
    out = tmp_path / "recipe"
    args = ["--data", str(tmp_path), "--out", str(out), "--device", "cpu", "--epochs", "2"]
    args += ["--batch-size", "20", "--val", "0", "--width", "2", "--seeds", "1"]
    args += ["--checkpoint-every", "1", "--subset", "8", "--num-matvecs", "4"]
    text = recipe.main([*args, "--optimizers", "sgd", "fsgld"])
    run = out / "runs" / "fsgld-seed0"
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model"].startswith("resnet34") and "labels=worse" in config["data"]
    assert config["epochs"] == 2 and config["batch_size"] == 20
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["test_acc"] is not None for r in records)
    final = Report.load(run / "trajectory" / "reports" / "final" / "report.json")
    assert {"hessian_trace", "scaled_trace", "adaptive_sharpness"} <= set(final.metrics)
    assert final.to_dict()["data"]["num_samples"] == 8
    assert (run / "trajectory" / "reports" / "epoch_0001" / "report.json").is_file()
    assert "| SGD |" in text and "| fSGLD |" in text and "see arXiv:2510.02174" in text
    assert "fSGLD / SGD" in text and "At matched training loss" in text
    assert (out / "results.md").read_text() in capsys.readouterr().out + "\n"


@pytest.mark.parametrize("argv", [["--epochs", "150"]])
def test_recipe_defaults_are_the_papers_setting(argv, tmp_path):
    recipe = _module("paper_recipe_cifar10n")
    args = recipe.parse_args(["--data", str(tmp_path), "--device", "cpu", *argv])
    config = recipe.recipe_config("fsgld", 0, args)
    assert config.model == "resnet34:width=64" and config.epochs == 150
    assert "labels=worse" in config.data
    assert config.hyperparameters.beta_inv == 1e-8 and config.hyperparameters.sigma is None

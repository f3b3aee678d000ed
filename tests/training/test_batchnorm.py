"""BatchNorm statistics recomputed at the current weights, and the trainer's choice of them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatscope.data import load_data
from flatscope.io import load_checkpoint
from flatscope.models import build_model
from flatscope.training.batchnorm import recompute_batchnorm
from flatscope.training.trainer import TrainConfig, train

F64 = torch.float64


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm1d(4)).double()


def test_statistics_are_the_average_of_the_batch_statistics_without_dropout():
    model = net()
    model.train()
    batches = [
        torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(i)) for i in (1, 2)
    ]
    assert recompute_batchnorm(model, batches)
    linear, _, norm = model
    with torch.no_grad():
        outputs = [linear(x) for x in batches]  # no dropout: the statistics are deterministic
    mean = torch.stack([o.mean(0) for o in outputs]).mean(0)
    var = torch.stack([o.var(0, unbiased=True) for o in outputs]).mean(0)
    torch.testing.assert_close(norm.running_mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(norm.running_var, var, rtol=1e-12, atol=1e-12)
    assert norm.momentum == 0.1 and model.training and norm.training  # restored


def test_a_model_without_batchnorm_is_left_alone():
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not recompute_batchnorm(model, [torch.randn(2, 3)])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("optimizer", ["fsgld", "sam"])
def test_the_trainer_recomputes_at_the_trained_weights_by_default(tmp_path, optimizer):
    settings = {"optimizer": optimizer, "model": "cnn:width=2", "epochs": 1, "seed": 3}
    recomputed = train(TrainConfig.create(**settings), tmp_path / "recompute")
    running = train(TrainConfig.create(**settings, batchnorm="running"), tmp_path / "running")
    final = load_checkpoint(tmp_path / "recompute" / "final.pt").state_dict
    kept = load_checkpoint(tmp_path / "running" / "final.pt").state_dict
    weights = [k for k in final if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(final[k], kept[k]) for k in weights)  # the steps are the same
    statistics = [k for k in final if k.endswith("running_mean")]
    assert statistics and not all(torch.equal(final[k], kept[k]) for k in statistics)
    expected = build_model(recomputed.config.model)
    expected.load_state_dict(final)
    bundle = load_data("digits", "train", seed=3)
    recompute_batchnorm(expected, (x for x, _ in bundle.loader(shuffle=False, batch_size=1024)))
    for key in statistics:
        torch.testing.assert_close(final[key], expected.state_dict()[key], rtol=0, atol=0)
    assert running.config.batchnorm == "running"

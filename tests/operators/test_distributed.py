"""Data-parallel Hessian products on 2 and 3 Gloo processes equal the single-process results."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import flatscope as fs
from flatscope.linalg import eigenvalues, trace
from flatscope.operators.distributed import ShardSampler
from tests._gloo import run_on_gloo

F64 = torch.float64
NUM_SAMPLES = 23  # uneven shards for 2 and 3 ranks


def _problem() -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(F64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(NUM_SAMPLES, 4, generator=g, dtype=F64)
    y = torch.randint(0, 3, (NUM_SAMPLES,), generator=g)
    return model, TensorDataset(x, y)


def _results(op: fs.HessianOperator) -> dict[str, torch.Tensor]:
    V = torch.randn(op.shape[0], 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    return {
        "HV": op @ V,
        "loss": torch.tensor(op.loss(), dtype=F64),
        "gradient": op.gradient(),
        "trace": torch.tensor(trace(op, method="hutchpp", num_matvecs=30, seed=3).value),
        "eigenvalues": eigenvalues(op, k=3, tol=1e-10, seed=4).values,
        "num_samples": torch.tensor(op.num_samples),
    }


def _worker(rank: int, out: str) -> None:
    model, dataset = _problem()
    loader = DataLoader(dataset, batch_size=4, sampler=ShardSampler(dataset))
    op = fs.HessianOperator(model, nn.CrossEntropyLoss(), loader, dtype=F64)
    torch.save(_results(op), f"{out}.{rank}")


def test_shard_sampler_partitions_without_padding():
    shards = [list(ShardSampler(range(10), rank=r, world=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]
    with pytest.raises(ValueError, match="outside"):
        ShardSampler(range(10), rank=3, world=3)


@pytest.mark.parametrize("world", [2, 3])
def test_products_and_estimators_match_single_process(world, tmp_path):
    model, dataset = _problem()
    loader = DataLoader(dataset, batch_size=4)
    single = _results(fs.HessianOperator(model, nn.CrossEntropyLoss(), loader, dtype=F64))
    out = str(tmp_path / "result")
    run_on_gloo(_worker, world, out)
    for r in range(world):
        shard = torch.load(f"{out}.{r}")
        assert int(shard["num_samples"]) == NUM_SAMPLES
        for key in ("HV", "loss", "gradient", "trace", "eigenvalues"):
            torch.testing.assert_close(shard[key], single[key], rtol=1e-10, atol=1e-12, msg=key)

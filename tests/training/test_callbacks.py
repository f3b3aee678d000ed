"""Flatness tracking in training loops flatscope did not write: a hand-written loop with the
plain hook, a Lightning Trainer with the callback and its own .ckpt; the run folders go through
``flatscope trajectory`` and ``flatscope compare`` with ``--model`` naming the user's model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flatscope.cli import main
from flatscope.data import load_data
from flatscope.errors import FlatscopeError
from flatscope.operators import HessianOperator
from flatscope.training import FlatnessTracker
from tests.training._user_model import tiny_net

USER_MODEL = "tests.training._user_model:tiny_net"
ANALYSIS = ["--subset", "64", "--num-matvecs", "8", "--eig-max-matvecs", "60", "--quiet"]


def digits():
    return load_data("digits", subset=64, batch_size=16)


def exact_hessian(model, batches) -> torch.Tensor:
    """Dense float64 Hessian of the mean cross-entropy over the batches (makes model float64)."""
    model = model.double()
    params = dict(model.named_parameters())
    shapes = {name: p.shape for name, p in params.items()}
    weights = torch.cat([p.detach().reshape(-1) for p in params.values()])
    total = sum(len(y) for _, y in batches)

    def loss(w: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(w, [s.numel() for s in shapes.values()])
        tensors = {n: p.view(s) for (n, s), p in zip(shapes.items(), pieces, strict=True)}
        return (
            sum(
                F.cross_entropy(torch.func.functional_call(model, tensors, (x.double(),)), y)
                * len(y)
                for x, y in batches
            )
            / total
        )

    return torch.autograd.functional.hessian(loss, weights)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """Six SGD steps of a hand-written loop, recorded every second step."""
    run = tmp_path_factory.mktemp("plain") / "run"
    data = digits()
    torch.manual_seed(0)
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = FlatnessTracker(run, "cross_entropy", data, every=2, num_matvecs=12,
                              dtype=torch.float64)  # fmt: skip
    batches = [batch for epoch in (0, 1) for batch in data.loader(shuffle=True, epoch=epoch)]
    for x, y in batches[:6]:  # four batches an epoch
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        tracker.step(model, train_loss=loss.item(), lr=0.5)
    assert tracker.finish(model) == run / "final.pt"
    return run, model


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_plain_hook_writes_the_trainers_records_and_checkpoints(plain_run):
    run, model = plain_run
    lines = records(run)
    assert [r["epoch"] for r in lines] == [2, 4, 6]
    for record in lines:
        assert {"train_loss", "lr", "hessian_trace", "hessian_trace_stderr", "top_eigenvalue"} <= (
            record.keys()
        )
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch_0002.pt", "epoch_0004.pt"]  # the last one became final.pt
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["epochs"] == 6 and config["tracker"]["unit"] == "step"
    assert config["model_spec"] is None and config["data_spec"] == "digits:split_seed=0"


def test_last_record_is_the_final_models_flatness(plain_run):
    """Top eigenvalue within Lanczos' 1e-2 relative residual, trace within 4 standard errors,
    of the dense float64 Hessian of the final weights."""
    run, model = plain_run
    final = records(run)[-1]
    H = exact_hessian(copy.deepcopy(model), digits().batches())
    largest = float(torch.linalg.eigvalsh(H)[-1])
    assert abs(final["top_eigenvalue"] - largest) <= 1e-2 * abs(largest)
    assert abs(final["hessian_trace"] - float(H.trace())) <= 4 * final["hessian_trace_stderr"]


def test_trajectory_reads_the_plain_run_with_the_users_model(plain_run, capsys):
    run, model = plain_run
    assert main(["trajectory", str(run), "--model", USER_MODEL, *ANALYSIS]) == 0
    assert "3 reports computed" in capsys.readouterr().out
    points = json.loads((run / "trajectory" / "trajectory.json").read_text())["points"]
    assert [p["epoch"] for p in points] == [2, 4, 6]
    assert [p["train_loss"] for p in points] == [r["train_loss"] for r in records(run)]
    loss = HessianOperator(model, F.cross_entropy, digits().batches()).loss()
    assert points[-1]["loss"] == pytest.approx(loss, rel=1e-6)


def test_lightning_callback_checkpoint_trajectory_and_compare(plain_run, tmp_path, capsys):
    lightning = pytest.importorskip("lightning.pytorch")
    from flatscope.training.callbacks import FlatnessCallback

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch, batch_index):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    data, run = digits(), tmp_path / "lightning-run"
    callback = FlatnessCallback(run, "cross_entropy", data, every_n_steps=3, module="model",
                                num_matvecs=8)  # fmt: skip
    torch.manual_seed(0)
    module = Classifier()
    trainer = lightning.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[callback], default_root_dir=tmp_path / "lightning", accelerator="cpu",
        devices=1,
    )  # fmt: skip
    trainer.fit(module, data.loader(shuffle=True))
    lines = records(run)
    assert [r["epoch"] for r in lines] == [3, 6, 8]  # every 3 steps, and the last (8) one
    assert all(r["step"] == r["epoch"] and "train_loss" in r and r["lr"] == 0.5 for r in lines)
    assert (run / "final.pt").is_file()

    # the Lightning-written .ckpt: state_dict under "state_dict", keys "model.*"
    (ckpt,) = (tmp_path / "lightning" / "checkpoints").glob("*.ckpt")
    out = tmp_path / "ckpt-analysis"
    argv = ["analyze", str(ckpt), "--model", USER_MODEL, "--metrics", "trace", "--out", str(out)]
    assert main([*argv, "--no-figures", *ANALYSIS]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["layout"] == "dict[state_dict]"
    expected = HessianOperator(module.model, F.cross_entropy, data.batches()).loss()
    assert report["metrics"]["loss"] == pytest.approx(expected, rel=1e-6)

    assert main(["trajectory", str(run), "--model", USER_MODEL, *ANALYSIS]) == 0
    plain, _ = plain_run
    # the plain run's final report, whichever test of this module runs first
    assert main(["trajectory", str(plain), "--model", USER_MODEL, *ANALYSIS]) == 0
    capsys.readouterr()
    assert main(["compare", str(plain), str(run), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    assert "final train loss (run)" in table and "lightning-run" in table


def test_tracker_refuses_a_used_folder_and_an_empty_run(plain_run, tmp_path):
    run, model = plain_run
    with pytest.raises(FlatscopeError, match="already holds metrics.jsonl"):
        FlatnessTracker(run, "cross_entropy", digits())
    tracker = FlatnessTracker(tmp_path / "new", "cross_entropy", digits(), save_checkpoints=False)
    with pytest.raises(FlatscopeError, match="before any step"):
        tracker.finish(model)
    with pytest.raises(FlatscopeError, match="every must be an integer >= 1"):
        FlatnessTracker(tmp_path / "other", "cross_entropy", digits(), every=0)

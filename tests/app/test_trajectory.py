"""flatscope.app.trajectory and ``flatscope trajectory``: checkpoint selection, reports reused on a
second run, metrics joined by epoch, files written."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from flatscope.app.analyze import analyze
from flatscope.app.trajectory import select_checkpoints, trajectory
from flatscope.cli import main
from flatscope.errors import FlatscopeError
from flatscope.io import save_checkpoint
from flatscope.io.run_folder import run_checkpoints
from flatscope.models.zoo import build_model

F64 = torch.float64
MODEL = "mlp:hidden=4,depth=1"
EPOCHS = 5


def make_run(folder, final: bool = True) -> None:
    """A run directory as the trainer writes it: epochs 1-4 checkpointed, final.pt at 5."""
    (folder / "checkpoints").mkdir(parents=True)
    for epoch in range(1, EPOCHS + (1 if final else 0)):
        path = (
            folder / "final.pt" if epoch == EPOCHS else folder / f"checkpoints/epoch_{epoch:04d}.pt"
        )
        model = build_model(MODEL, seed=epoch)
        save_checkpoint(path, model, model_spec=MODEL, data_spec="digits", extra={"epoch": epoch})
    (folder / "config.json").write_text(json.dumps({"config": {"epochs": EPOCHS}}))
    records = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_acc": 0.1 * e,
            "val_acc": None,
            "test_acc": 0.1 * e + 0.05,
        }
        for e in range(1, EPOCHS + 1)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"epo')


def test_checkpoints_in_epoch_order_and_every_nth_keeps_the_last(tmp_path):
    make_run(tmp_path)
    checkpoints = run_checkpoints(tmp_path)
    assert [c.epoch for c in checkpoints] == [1, 2, 3, 4, 5]
    assert checkpoints[-1].path.name == "final.pt"
    assert [c.epoch for c in select_checkpoints(checkpoints, 2)] == [1, 3, 5]
    assert [c.epoch for c in select_checkpoints(checkpoints, 3)] == [1, 4, 5]
    assert [c.epoch for c in select_checkpoints(checkpoints, 9)] == [1, 5]
    with pytest.raises(FlatscopeError, match="--every"):
        select_checkpoints(checkpoints, 0)
    with pytest.raises(FlatscopeError, match="holds no checkpoints"):
        run_checkpoints(tmp_path / "checkpoints")


class Scaled(nn.Module):
    """``0.5 * epoch * |w|^2`` per sample: its Hessian is ``epoch * I``, trace ``epoch * d``."""

    def __init__(self, epoch: int, d: int = 6) -> None:
        super().__init__()
        self.epoch = epoch
        self.w = nn.Parameter(torch.ones(d, dtype=F64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.epoch * self.w @ self.w).expand(inputs.shape[0])


def test_trajectory_joins_reports_and_metrics_and_reuses_reports(tmp_path):
    make_run(tmp_path / "run")
    calls = []

    def report_for(checkpoint, report_dir):
        epoch = torch.load(checkpoint, weights_only=True)["extra"]["epoch"]
        calls.append(epoch)
        data = (torch.zeros(2, 1, dtype=F64), torch.zeros(2, dtype=F64))
        return analyze(
            Scaled(epoch),
            lambda outputs, targets: outputs.mean(),
            data,
            ("trace", "eigenvalues"),
            out=report_dir,
            resume=True,
            progress=False,
            figures=False,
            dtype="float64",
            top_k=1,
            num_matvecs=6,
            trace_method="hutchinson",
        )

    first = trajectory(tmp_path / "run", report_for, every=2, out=tmp_path / "out")
    assert calls == [1, 3, 5]
    assert [p.epoch for p in first.points] == [1, 3, 5]
    assert len(first.computed) == 3 and first.reused == []
    for point in first.points:
        # the trace deflates the eigen search of the same analysis: exact on its space, and
        # Hutchinson's rest of c I is c (d - ||Q^T z||^2) per probe, unbiased
        assert abs(point.trace - 6 * point.epoch) <= 3 * point.trace_stderr
        assert point.top_eigenvalue == pytest.approx(point.epoch, rel=1e-9)
        assert point.test_acc == pytest.approx(0.1 * point.epoch + 0.05)
        assert point.val_acc is None
    reports = sorted((tmp_path / "out" / "reports").glob("*/report.json"))
    assert [p.parent.name for p in reports] == ["epoch_0001", "epoch_0003", "final"]
    stamps = [p.stat().st_mtime_ns for p in reports]

    second = trajectory(tmp_path / "run", report_for, every=2, out=tmp_path / "out", figures=False)
    assert second.computed == [] and len(second.reused) == 3
    assert [p.stat().st_mtime_ns for p in reports] == stamps
    assert [p.trace for p in second.points] == [p.trace for p in first.points]
    for name in ("trajectory.json", "trajectory.md", "trajectory.png", "trajectory.pdf"):
        assert (tmp_path / "out" / name).is_file()
    table = (tmp_path / "out" / "trajectory.md").read_text()
    assert "| epoch | loss | trace | top eigenvalue |" in table and "| 5 |" in table


def test_command_line_analyses_checkpoints_once(tmp_path, capsys):
    make_run(tmp_path / "run", final=False)
    args = [
        "trajectory",
        str(tmp_path / "run"),
        "--every",
        "3",
        "--subset",
        "32",
        "--num-matvecs",
        "6",
        "--eig-max-matvecs",
        "20",
        "--quiet",
    ]
    assert main(args) == 0
    assert "2 reports computed, 0 reused" in capsys.readouterr().out
    report = tmp_path / "run" / "trajectory" / "reports" / "epoch_0004" / "report.json"
    report.write_text("{broken")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 reports computed, 1 reused" in out
    assert out.splitlines()[0].split()[:3] == ["epoch", "loss", "trace"]
    assert main([*args[:2], "--every", "0"]) == 2

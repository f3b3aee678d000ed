"""``benchmarks/gpu_check.py`` in its tiny CPU mode, so that the GPU check cannot rot unseen."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu_check  # noqa: E402

SECTIONS = ("1. float64 exactness", "2. one HVP / one gradient", "3. throughput",
            "4. peak memory", "5. spectrum", "6. optimizer step")  # fmt: skip


def test_tiny_run_prints_every_section_and_passes(capsys: pytest.CaptureFixture) -> None:
    assert gpu_check.main(["--device", "cpu", "--tiny"]) == 0
    out = capsys.readouterr().out
    for title in SECTIONS:
        assert f"## {title}" in out
    assert "FAILED" not in out
    assert "exactness ok" in out
    for mode in gpu_check.MODES:
        assert out.count(f"\n{mode} ") >= 3  # a row in sections 2, 3 and 4


def test_exactness_reports_a_failure(monkeypatch, capsys: pytest.CaptureFixture) -> None:
    """Every mode's relative error is measured, so a tolerance no error can meet fails them all."""
    monkeypatch.setattr(gpu_check, "EXACT_TOLERANCE", -1.0)
    assert gpu_check.exactness(gpu_check.TINY, torch.device("cpu")) is False
    assert capsys.readouterr().out.count("FAILED") == 1 + len(gpu_check.MODES)

"""The progress line: drawn only on a terminal and when enabled, one tick per product batch."""

from __future__ import annotations

import io

import pytest

from flatscope import progress as progress_module
from flatscope.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def redraw_every_update(monkeypatch):
    monkeypatch.setattr(progress_module, "REDRAW_SECONDS", 0.0)


def test_a_terminal_sees_every_update_and_a_final_newline():
    stream = FakeTerminal()
    with Progress("hessian_trace", 10, stream=stream) as bar:
        bar.update(4)
        bar.update(6)
    frames = stream.getvalue().split("\r")[1:]
    assert [frame.split()[2] for frame in frames] == ["0/10", "4/10", "10/10", "10/10"]
    assert "[" + "#" * 24 + "]" in frames[-1]
    assert stream.getvalue().endswith("s\n")


def test_an_unknown_total_shows_the_count_only():
    bar = Progress("sharpness", None, unit="steps", stream=FakeTerminal())
    bar.update(3)
    assert bar.render().split()[:3] == ["sharpness", "3", "steps"]


@pytest.mark.parametrize("stream, enabled", [(io.StringIO(), True), (FakeTerminal(), False)])
def test_silent_when_disabled_or_not_a_terminal(stream, enabled):
    with Progress("spectral_density", 5, enabled=enabled, stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""
    assert bar.count == 5

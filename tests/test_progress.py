"""The progress line: redrawn on a terminal, plain lines in a log at a tenth or 30 seconds
(none for short tasks), an ETA at the rate after the first update, silent when disabled."""

from __future__ import annotations

import io

import pytest

from flatscope import progress as progress_module
from flatscope.progress import LOG_SECONDS, QUIET_SECONDS, Progress, format_seconds


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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


def test_the_eta_runs_at_the_rate_after_the_first_update():
    clock = Clock()
    bar = Progress("hessian_trace", 10, stream=FakeTerminal(), clock=clock)
    clock.now += 9.0  # the first product also builds the graphs
    bar.update()
    assert bar.eta() is None and "ETA" not in bar.render()
    clock.now += 2.0
    bar.update(2)  # 1 s a product since the first update: 7 left
    assert bar.eta() == pytest.approx(7.0)
    assert bar.render().endswith("11.0s  ETA 7.0s")
    bar.update(7)
    assert bar.eta() == 0.0 and "ETA" not in bar.render()


def test_an_unknown_total_shows_the_count_only():
    bar = Progress("sharpness", None, unit="steps", stream=FakeTerminal())
    bar.update(3)
    assert bar.render().split()[:3] == ["sharpness", "3", "steps"]
    assert bar.eta() is None


def test_a_log_gets_a_line_per_tenth_or_per_30_seconds_and_a_final_one():
    clock, stream = Clock(), io.StringIO()
    with Progress("hessian_trace", 100, stream=stream, clock=clock) as bar:
        for _ in range(25):  # 25 products at 1 s each: a line at 10% and 20% (after 5 s)
            clock.now += 1.0
            bar.update()
        clock.now += LOG_SECONDS  # one slow product, no new tenth: a line for the time
        bar.update()
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "hessian_trace: 10/100 HVPs (10%)",
        "hessian_trace: 20/100 HVPs (20%)",
        "hessian_trace: 26/100 HVPs (26%)",
        "hessian_trace: done in 55.0s",
    ]
    assert lines[0] == "hessian_trace: 10/100 HVPs (10%), 10.0s elapsed, ETA 1m30s"
    assert "\r" not in stream.getvalue()


def test_a_short_task_leaves_a_log_clean():
    clock, stream = Clock(), io.StringIO()
    with Progress("spectral_density", 5, stream=stream, clock=clock) as bar:
        for _ in range(5):
            clock.now += (QUIET_SECONDS - 0.5) / 5
            bar.update()
    assert stream.getvalue() == ""


@pytest.mark.parametrize("stream", [io.StringIO(), FakeTerminal()])
def test_silent_when_disabled(stream):
    clock = Clock()
    with Progress("spectral_density", 5, enabled=False, stream=stream, clock=clock) as bar:
        clock.now += 2 * LOG_SECONDS
        bar.update(5)
        bar.message("estimated cost: ...")
    assert stream.getvalue() == ""
    assert bar.count == 5


def test_a_message_goes_above_the_redrawn_line():
    stream = FakeTerminal()
    with Progress("hessian_trace", 4, stream=stream) as bar:
        bar.update()
        bar.message("estimated cost: 4 HVPs")
    text = stream.getvalue()
    assert "\restimated cost: 4 HVPs\n\rhessian_trace" in text.replace(" " * 10, "")


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0234, "23ms"), (8.34, "8.3s"), (59.94, "59.9s"), (245, "4m05s"), (7620, "2h07m")],
)
def test_seconds_for_people(seconds, text):
    assert format_seconds(seconds) == text


def test_every_tenth_is_logged_even_where_floats_round_down():
    """9 of 30 is 3 tenths, though 9 / 30 / 0.1 is 2.9999999999999996 in floating point."""
    clock, stream = Clock(), io.StringIO()
    with Progress("hessian_trace", 30, stream=stream, clock=clock) as bar:
        clock.now += QUIET_SECONDS
        for _ in range(30):
            clock.now += 0.1
            bar.update()
    shares = [line.split("(")[1].split(")")[0] for line in stream.getvalue().splitlines()[:-1]]
    assert shares == [f"{10 * tenth}%" for tenth in range(1, 11)]

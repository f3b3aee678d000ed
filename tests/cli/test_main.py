"""The command-line framework: options every command shares."""

from __future__ import annotations

import pytest
import torch

from flatscope.cli import COMMANDS, build_parser, default_threads, main


def test_every_command_takes_threads_and_states_its_default():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == set(COMMANDS)
    for command in commands.values():
        (threads,) = [a for a in command._actions if a.dest == "threads"]
        assert f"default {default_threads()}" in threads.help


def test_threads_are_set_before_the_command_runs(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        # a command that fails on its input after the threads are set
        assert main(["plot", str(tmp_path / "missing.json"), "--threads", "2"]) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "report not found" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1"])
def test_threads_must_be_positive(value, capsys):
    assert main(["plot", "report.json", "--threads", value]) == 2
    assert "--threads must be a positive integer" in capsys.readouterr().err

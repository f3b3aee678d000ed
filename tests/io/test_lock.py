"""One writer per output folder: the lock in one process, and between real processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from flatscope.errors import OutputError
from flatscope.io import lock
from flatscope.io.atomic import atomic_write
from flatscope.io.lock import LOCK_NAME, LockedError, output_lock, process_alive
from tests._cli_process import listing, refused

WAITING_DATA = """
import os, time
import torch

def make(split="train"):
    deadline = time.monotonic() + 120
    while not os.path.exists("GO") and time.monotonic() < deadline:
        time.sleep(0.02)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(64, 1, 8, 8, generator=generator), torch.arange(64) % 10
"""


def test_the_lock_holds_the_pid_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "a" / "b"
    with output_lock(out) as folder:
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with output_lock(out):  # re-entrant in one process
            pass
        assert (out / LOCK_NAME).exists()
    assert listing(tmp_path) == []  # the lock and the folders it created are gone
    with output_lock(out):
        (out / "report.json").write_text("{}")
    assert listing(tmp_path) == ["a", "a/b", "a/b/report.json"]


def test_a_lock_file_of_a_dead_process_does_not_block(tmp_path, monkeypatch):
    dead = 2**22 + 1  # above Linux's largest pid, so no process has it
    assert not process_alive(dead)
    (tmp_path / LOCK_NAME).write_text(f"{dead}\n")
    with output_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    monkeypatch.setattr(lock, "fcntl", None)  # the O_EXCL fallback: pid checked by hand
    (tmp_path / LOCK_NAME).write_text(f"{dead}\n")
    with output_lock(tmp_path):
        (tmp_path / LOCK_NAME).write_text(f"{os.getppid()}\n")  # a live holder
        with pytest.raises(LockedError, match=f"pid {os.getppid()}"):
            lock._acquire(tmp_path)


def test_an_unwritable_folder_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot lock"):
        with output_lock(tmp_path / "file" / "out"):
            pass


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    dead = 2**22 + 1
    stale = [tmp_path / f".report.json.{dead}.{index:08x}.tmp" for index in range(14)]
    live = tmp_path / f".report.json.{os.getppid()}.0000abcd.tmp"
    for path in [*stale, live]:
        path.write_text("half")
    atomic_write(tmp_path / "report.json", lambda file: file.write(b"{}"))
    assert listing(tmp_path) == [live.name, "report.json"]


def other_writers(root: Path) -> list[list[str]]:
    """Every other command that writes a folder, with inputs that let it start."""
    from flatscope.io import Report, save_checkpoint
    from flatscope.models import build_model, model_spec
    from tests._reports import HEADER

    spec = "mlp:hidden=4"
    (root / "done").mkdir()
    save_checkpoint(root / "done" / "final.pt", build_model(spec), model_spec=model_spec(spec))
    (root / "done" / "config.json").write_text('{"config": {"epochs": 1}}')
    for name in ("a", "b"):
        Report.new(HEADER, root / f"{name}.json").set_metric("loss", 1.0, 0.1)
    fast = ["--subset", "16", "--quiet"]
    return [
        ["analyze", "done/final.pt", "--metrics", "trace", "--num-matvecs", "4", *fast],
        ["landscape", "done/final.pt", "--resolution", "3", *fast],
        ["trajectory", "done", "--num-matvecs", "4", *fast],
        ["compare", "a.json", "b.json"],
        ["demo", "--quick", "--quiet"],
    ]


def wait_for_lock(folder: Path, pid: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (folder / LOCK_NAME).is_file() and (folder / LOCK_NAME).read_text() == f"{pid}\n":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never took the lock of {folder}")


def test_two_processes_one_folder(flatscope_cli, tmp_path):
    """A second ``train`` or ``analyze`` into a folder being written fails at once naming the
    writer's pid; a writer killed with SIGKILL leaves a lock that does not block, and the next
    run removes the temporary files of the writes it killed."""
    (tmp_path / "waiting.py").write_text(WAITING_DATA)
    train = ["train", "--model", "mlp:hidden=4", "--epochs", "1", "--quiet", "--out", "run"]
    first = flatscope_cli.start(*train, "--data", "waiting:make", cwd=tmp_path)
    wait_for_lock(tmp_path / "run", first.pid)
    second = flatscope_cli.run(*train, "--data", "digits", cwd=tmp_path)
    refused(second, f"run is being written by another flatscope process (pid {first.pid})")
    for argv in other_writers(tmp_path):
        refused(flatscope_cli.run(*argv, "--out", "run", cwd=tmp_path), f"(pid {first.pid})")
    os.kill(first.pid, signal.SIGKILL)
    assert flatscope_cli.wait(first).returncode == -signal.SIGKILL
    assert (tmp_path / "run" / LOCK_NAME).read_text() == f"{first.pid}\n"  # left behind
    stale = tmp_path / "run" / f".metrics.jsonl.{first.pid}.0badf00d.tmp"
    stale.write_text("cut off")
    (tmp_path / "GO").write_text("")
    third = flatscope_cli.run(*train, "--data", "waiting:make", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert listing(tmp_path / "run") == ["config.json", "final.pt", "metrics.jsonl"]

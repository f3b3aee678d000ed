"""Run the ``flatscope`` command line in child processes, cheaply, and check the bad-input contract.

A fresh ``python -m flatscope`` pays for importing torch (seconds on a busy machine). Here one
warm interpreter imports flatscope, torch, NumPy, scikit-learn and matplotlib once and then
forks one child process per command. Each child is a separate process with its own pid, exit
status, file descriptors and working directory; it runs what the installed ``flatscope``
console script runs, as that script would: ``sys.argv`` is ``["flatscope", *argv]``,
``sys.path[0]`` is the script's folder (so the working directory is *not* importable unless
flatscope makes it so), an uncaught exception prints its traceback and exits with status 1, and
``SystemExit`` ends the process with its code. ``test_security.py`` checks one case against a
real ``exec`` of the console script and of ``python -m flatscope``.

:func:`refused` asserts the contract of every bad input: exit status 2, one line on stderr, no
traceback, nothing left in the output folder, no marker file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "Completed", "FlatscopeProcesses", "refused", "listing"]

THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# The warm interpreter: reads one JSON request per line, answers one JSON line per request.
_ZYGOTE = r"""
import json, os, sys, traceback
import numpy, torch, sklearn.datasets, matplotlib.figure
import flatscope, flatscope.cli
from flatscope.cli import COMMANDS
import importlib
for name in COMMANDS:
    importlib.import_module(f"flatscope.cli.{name}")

script_dir = os.path.dirname(sys.executable)


def child(request):
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(path, flags, 0o644), fd)
    sys.argv = [os.path.join(script_dir, "flatscope"), *request["argv"]]
    sys.path[0] = script_dir
    code = 0
    try:
        flatscope.cli.console_main()
    except SystemExit as exit:
        code = exit.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "start":
        pid = os.fork()
        if pid == 0:
            child(request)
        answer = {"pid": pid}
    else:
        _, status = os.waitpid(request["pid"], 0)
        answer = {"returncode": os.waitstatus_to_exitcode(status)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


@dataclass
class Child:
    """A started command: its process id and where its output goes."""

    pid: int
    stdout: Path
    stderr: Path


@dataclass
class Completed:
    """A finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class FlatscopeProcesses:
    """A warm interpreter that runs each ``flatscope`` command in a forked child process."""

    def __init__(self) -> None:
        self._files = tempfile.TemporaryDirectory(prefix="flatscope-cli-")
        self._count = 0
        env = {**os.environ, **THREAD_LIMITS}
        self._zygote = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def _ask(self, request: dict) -> dict:
        self._zygote.stdin.write(json.dumps(request) + "\n")
        self._zygote.stdin.flush()
        answer = self._zygote.stdout.readline()
        if not answer:
            raise RuntimeError("the warm flatscope interpreter died")
        return json.loads(answer)

    def start(self, *argv: str, cwd: str | os.PathLike, env: dict | None = None) -> Child:
        """Fork a child that runs ``flatscope *argv`` in ``cwd``; return at once."""
        self._count += 1
        base = Path(self._files.name) / str(self._count)
        request = {
            "op": "start",
            "argv": [str(arg) for arg in argv],
            "cwd": str(cwd),
            "env": dict(env or {}),
            "stdout": f"{base}.out",
            "stderr": f"{base}.err",
        }
        pid = self._ask(request)["pid"]
        return Child(pid, Path(request["stdout"]), Path(request["stderr"]))

    def wait(self, child: Child, argv: tuple[str, ...] = ()) -> Completed:
        """Wait for a child to end; its exit status and output."""
        returncode = self._ask({"op": "wait", "pid": child.pid})["returncode"]
        return Completed(argv, returncode, child.stdout.read_text(), child.stderr.read_text())

    def run(self, *argv: str, cwd: str | os.PathLike, env: dict | None = None) -> Completed:
        """Run ``flatscope *argv`` in a child process in ``cwd`` and wait for it."""
        return self.wait(self.start(*argv, cwd=cwd, env=env), tuple(map(str, argv)))

    def close(self) -> None:
        self._zygote.stdin.close()
        self._zygote.wait(timeout=60)
        self._files.cleanup()


def listing(folder: str | os.PathLike) -> list[str] | None:
    """Every path under ``folder`` (sorted, relative), or ``None`` when it does not exist."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def refused(
    result: Completed,
    *needles: str,
    out: str | os.PathLike | None = None,
    before: list[str] | None = None,
    marker: str | os.PathLike | None = None,
) -> str:
    """Assert the bad-input contract and return the error line.

    Exit status 2; stderr is exactly one line starting with ``flatscope``, holding every
    ``needle`` and no traceback; ``out`` is left as ``before`` (``None``: it does not exist);
    ``marker`` was not created.
    """
    where = f"flatscope {' '.join(result.argv)}"
    assert result.returncode == 2, f"{where}: exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"{where}: stderr has {len(lines)} lines:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("flatscope") and "Traceback" not in line, line
    for needle in needles:
        assert needle in line, f"{where}: {needle!r} not in {line!r}"
    if out is not None:
        assert listing(out) == before, f"{where}: left {listing(out)} in {out}"
    if marker is not None:
        assert not Path(marker).exists(), f"{where}: the marker file was created"
    return line

"""The core package never imports the optional extras (transformers, lightning): importing
flatscope, building every command's parser and importing the modules that use the extras
lazily leaves them out of ``sys.modules``. Checked in a fresh interpreter, since the extras'
own tests import them into the test process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXTRAS = ("transformers", "lightning", "pytorch_lightning", "tokenizers")

PROGRAM = f"""
import contextlib, io, sys
import flatscope
import flatscope.data.tokens, flatscope.models.hf, flatscope.training.callbacks
from flatscope.cli import main
for argv in (["--help"], ["analyze", "--help"], ["trajectory", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
print(",".join(name for name in {EXTRAS!r} if name in sys.modules))
"""


def test_import_and_help_do_not_import_the_extras():
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""

"""Shared test settings: one intra-op thread per worker so parallel workers do not contend, and
property tests that draw their examples from a fixed seed like every other randomized test (the
same examples on every run: a failure reproduces and CI cannot flake)."""

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)
settings.register_profile("flatscope", derandomize=True, database=None)
settings.load_profile("flatscope")


@pytest.fixture(scope="session")
def flatscope_cli():
    """Runs ``flatscope`` commands in child processes of one warm interpreter (see
    ``tests/_cli_process.py``)."""
    from tests._cli_process import FlatscopeProcesses

    processes = FlatscopeProcesses()
    yield processes
    processes.close()

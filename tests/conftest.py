"""Shared test settings: one intra-op thread per worker so parallel workers do not contend."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def flatscope_cli():
    """Runs ``flatscope`` commands in child processes of one warm interpreter (see
    ``tests/_cli_process.py``)."""
    from tests._cli_process import FlatscopeProcesses

    processes = FlatscopeProcesses()
    yield processes
    processes.close()

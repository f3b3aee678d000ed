"""The analysis notebooks run top to bottom in quick mode, and are committed executed.

Each notebook is executed with nbclient in a kernel started from this interpreter
(``sys.executable``, through a kernel spec written to a temporary directory, so no user-level
kernel install is needed) with ``FLATSCOPE_NOTEBOOK_QUICK=1``, which shrinks every setting.
The executed copy stays in memory: the committed files, with the outputs of a full run, are
never rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "analysis_notebooks"
NOTEBOOKS = (
    "01_quickstart",
    "02_fsgld_vs_sgd",
    "03_landscapes",
    "04_estimator_accuracy",
)
KERNEL_NAME = "flatscope-notebook-test"
CELL_TIMEOUT_S = 300
KERNEL_ENV = {
    "FLATSCOPE_NOTEBOOK_QUICK": "1",
    "OMP_NUM_THREADS": "1",  # with parallel test workers, one thread per process
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding one kernel spec that starts ipykernel with this interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "flatscope notebook tests",
        "language": "python",
        "env": KERNEL_ENV,
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return root


def test_every_notebook_is_tested() -> None:
    assert sorted(path.stem for path in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_with_outputs(name: str) -> None:
    """Every code cell of the committed notebook ran, in order, without an error."""
    notebook = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_in_quick_mode(name: str, kernel_dir: Path, tmp_path: Path) -> None:
    """nbclient raises CellExecutionError, with the cell and traceback, on any failing cell."""
    notebook = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs)

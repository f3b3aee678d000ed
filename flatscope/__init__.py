"""flatscope: Hessian-spectrum and flatness analysis for PyTorch models.

The public API: operators (``HessianOperator``), estimators with error bars (``trace``,
``diagonal``, ``eigenvalues``, ``spectral_density``), checkpoint and report I/O, the model zoo
and datasets, and the optimizers in ``flatscope.optim`` (``FSGLD``, ``SGLD``, ``SAM``).
"""

from flatscope import optim
from flatscope.errors import CheckpointError, FlatscopeError, OutputError, ReportError
from flatscope.io import Report, load_checkpoint, save_checkpoint
from flatscope.io.report import flatscope_version
from flatscope.linalg import (
    DiagonalEstimate,
    EigenResult,
    SpectralDensity,
    TraceEstimate,
    diagonal,
    eigenvalues,
    lanczos,
    power_iteration,
    spectral_density,
    trace,
)
from flatscope.operators import DenseOperator, HessianOperator, LinearOperator, as_operator
from flatscope.training import DataBundle, LabelNoise, build_model, load_data

__version__ = flatscope_version()

__all__ = [
    "__version__",
    "optim",
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "as_operator",
    "trace",
    "diagonal",
    "eigenvalues",
    "power_iteration",
    "lanczos",
    "spectral_density",
    "TraceEstimate",
    "DiagonalEstimate",
    "EigenResult",
    "SpectralDensity",
    "Report",
    "load_checkpoint",
    "save_checkpoint",
    "build_model",
    "load_data",
    "DataBundle",
    "LabelNoise",
    "FlatscopeError",
    "CheckpointError",
    "ReportError",
    "OutputError",
]

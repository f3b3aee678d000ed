"""flatscope: Hessian-spectrum and flatness analysis for PyTorch models.

The public API: the objective (``Objective``, the mean loss over a data set), curvature
operators (``HessianOperator``, ``GGNOperator``, ``EmpiricalFisherOperator``), estimators with
error bars (``trace``, ``diagonal``, ``eigenvalues``, ``spectral_density``), landscapes and
sharpness, the applications (``analyze``, ``verify``, ``compare``, ``trajectory``), checkpoint
and report I/O, the model zoo and datasets, and the optimizers in ``flatscope.optim``
(``FSGLD``, ``SGLD``, ``SAM``).
"""

from flatscope import optim
from flatscope.app.analyze import analyze
from flatscope.app.compare import compare
from flatscope.app.trajectory import trajectory
from flatscope.app.verify import verify, verify_groups
from flatscope.data import DataBundle, LabelNoise, load_data
from flatscope.errors import CheckpointError, FlatscopeError, OutputError, ReportError
from flatscope.io import Report, load_checkpoint, save_checkpoint
from flatscope.io.report import flatscope_version
from flatscope.landscape import (
    average_sharpness,
    eigen_directions,
    pca_directions,
    random_directions,
    slice_1d,
    surface_2d,
    worst_case_sharpness,
)
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
from flatscope.models import build_model
from flatscope.objective import Objective
from flatscope.operators import (
    DenseOperator,
    EmpiricalFisherOperator,
    GGNOperator,
    HessianOperator,
    LinearOperator,
    as_operator,
)
from flatscope.training import TrainConfig, train

__version__ = flatscope_version()

__all__ = [
    "__version__",
    "optim",
    "Objective",
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "GGNOperator",
    "EmpiricalFisherOperator",
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
    "random_directions",
    "eigen_directions",
    "pca_directions",
    "slice_1d",
    "surface_2d",
    "average_sharpness",
    "worst_case_sharpness",
    "analyze",
    "verify",
    "verify_groups",
    "compare",
    "trajectory",
    "train",
    "TrainConfig",
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

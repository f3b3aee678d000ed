"""Randomized numerical linear algebra on any symmetric operator or dense matrix.

Every function accepts a :class:`~flatscope.operators.base.LinearOperator` or a dense symmetric
``torch.Tensor``, takes a ``seed``, and returns a small result dataclass that records the
number of matrix-vector products it spent and has a ``to_dict()`` for reports.
"""

from flatscope.linalg.density import SpectralDensity, spectral_density
from flatscope.linalg.diagonal import DiagonalEstimate, diagonal
from flatscope.linalg.eigen import EigenResult, eigenvalues, power_iteration
from flatscope.linalg.lanczos import LanczosResult, lanczos, lanczos_batched
from flatscope.linalg.trace import TraceEstimate, hutchinson, hutchpp, na_hutchpp, trace, xtrace

__all__ = [
    "trace",
    "hutchinson",
    "hutchpp",
    "na_hutchpp",
    "xtrace",
    "TraceEstimate",
    "diagonal",
    "DiagonalEstimate",
    "lanczos",
    "lanczos_batched",
    "LanczosResult",
    "eigenvalues",
    "power_iteration",
    "EigenResult",
    "spectral_density",
    "SpectralDensity",
]

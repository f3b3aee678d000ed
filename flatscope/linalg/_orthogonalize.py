"""Orthogonalization against a basis, shared by the Krylov methods, and their breakdown tests.

Classical Gram-Schmidt applied twice ("CGS2") makes a vector orthogonal to an orthonormal basis
to working precision whenever the vector is not numerically inside its span (Giraud, Langou,
Rozloznik, Comput. Math. Appl. 2005: "twice is enough"); one pass loses orthogonality in
proportion to the condition number of ``[basis, w]``. Each pass is two matrix products, so it
runs at BLAS speed on whole blocks.

The two Krylov solvers stop (or restart) on different events, tested by different tolerances:

- :data:`INVARIANT_SUBSPACE_RTOL` (:mod:`~flatscope.linalg.lanczos`): the three-term recurrence
  has found an invariant subspace, so the chain ends and its Ritz values are eigenvalues;
- :data:`DEPENDENT_COLUMN_RTOL` (:mod:`~flatscope.linalg.eigen`): one new column of a block is
  numerically inside the current basis, so it is replaced by a random direction and the block
  search goes on.
"""

from __future__ import annotations

import torch

__all__ = ["INVARIANT_SUBSPACE_RTOL", "DEPENDENT_COLUMN_RTOL", "project_out"]

#: Lanczos breakdown: ``beta_j <= INVARIANT_SUBSPACE_RTOL * eps * ||T_j||``, with ``eps`` the
#: unit roundoff of the recurrence's dtype and ``||T_j||`` estimated by the largest column norm
#: of the tridiagonal matrix so far. ``beta_j`` is then rounding noise: ``A V_j = V_j T_j`` up to
#: that residual, so ``span(V_j)`` is invariant and the Ritz values are eigenvalues of ``A`` to
#: within ``beta_j``. Measured in units of ``eps * ||A||`` because that is the size of the
#: rounding error of one product and one recurrence step.
INVARIANT_SUBSPACE_RTOL = 100.0

#: Block expansion (thick-restart Lanczos): a new column ``w`` is numerically inside the span of
#: the basis ``V`` when ``||(I - V V^T) w|| <= DEPENDENT_COLUMN_RTOL * ||w||``. A relative test
#: on the column itself, independent of ``||A||``: after two Gram-Schmidt passes the part of
#: ``w`` left is accurate to about ``eps * ||w||``, so anything below ``1e-10 ||w||`` (far above
#: ``eps`` in float64, at ``eps`` scale in float32 after cancellation) is not a new direction.
DEPENDENT_COLUMN_RTOL = 1e-10


def project_out(W: torch.Tensor, basis: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """``W`` with its components along the orthonormal columns of ``basis`` removed:
    ``W <- W - basis (basis^T W)``, repeated ``passes`` times (2: CGS2, orthogonal to working
    precision; 1: one classical Gram-Schmidt pass, the projection Hutch++ and power iteration
    use).

    ``basis`` is ``(..., d, n)`` and ``W`` is ``(..., d, k)`` with matching leading (batch)
    dimensions, so independent chains are handled by one batched product.
    """
    for _ in range(passes):
        W = W - basis @ (basis.mT @ W)
    return W

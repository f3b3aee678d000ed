"""Matrix-free linear operators: the one interface every flatscope estimator consumes.

An operator ``A`` of shape ``(d, d)`` supports ``A @ v`` for ``v`` of shape ``(d,)`` and
``A @ V`` for ``V`` of shape ``(d, k)``. Subclasses implement :meth:`LinearOperator._matmat`
on a validated ``(d, k)`` tensor; the base class validates input, counts products (one per
column) and adapts to :class:`scipy.sparse.linalg.LinearOperator`. An operator that knows it is
symmetric says so (:attr:`LinearOperator.symmetric`); one that is not may implement
:meth:`LinearOperator._rmatmat`, the product with its transpose.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg
import torch

__all__ = ["LinearOperator", "DenseOperator", "as_operator"]


class LinearOperator:
    """A square linear operator on ``torch`` tensors.

    Attributes:
        shape: ``(d, d)``.
        dtype: the dtype of vectors the operator accepts and returns.
        device: the device on which products are computed and returned.
        num_matvecs: matrix-vector products done so far (a ``(d, k)`` product counts ``k``).
        blocks: optional ``{name: slice}`` partition of the ``d`` coordinates (for example one
            block per network layer); ``None`` when the operator has no block structure.
        symmetric: whether ``A^T = A`` (a class attribute; ``False`` unless a subclass knows).
    """

    symmetric: bool = False

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: torch.dtype,
        device: torch.device | str,
        blocks: dict[str, slice] | None = None,
    ) -> None:
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"a flatscope operator must be square, got shape {tuple(shape)}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.device = torch.device(device)
        self.blocks = blocks
        self.num_matvecs = 0

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        """Return ``A @ V`` for a validated ``(d, k)`` tensor on the operator's device."""
        raise NotImplementedError

    def _rmatmat(self, V: torch.Tensor) -> torch.Tensor:
        """Return ``A^T @ V``; only operators that are not symmetric need it (for scipy)."""
        raise NotImplementedError(f"{type(self).__name__} has no product with its transpose")

    def _check(self, X: torch.Tensor) -> torch.Tensor:
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(X).__name__}")
        if X.ndim not in (1, 2) or X.shape[0] != self.shape[1]:
            raise ValueError(
                f"operator of shape {self.shape} cannot multiply a tensor of shape "
                f"{tuple(X.shape)}: expected ({self.shape[1]},) or ({self.shape[1]}, k)"
            )
        if X.dtype != self.dtype:
            raise TypeError(
                f"operator has dtype {self.dtype} but the vector has dtype {X.dtype}; "
                f"convert it with .to({self.dtype})"
            )
        return X.to(self.device)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """Return ``A @ V`` for ``V`` of shape ``(d, k)``; counts ``k`` products."""
        V = self._check(V)
        if V.ndim != 2:
            raise ValueError(f"matmat expects a (d, k) tensor, got shape {tuple(V.shape)}")
        if V.shape[1] == 0:
            return V.clone()
        out = self._matmat(V)
        self.num_matvecs += V.shape[1]
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``A @ v`` for ``v`` of shape ``(d,)``; counts one product."""
        v = self._check(v)
        if v.ndim != 1:
            raise ValueError(f"matvec expects a (d,) tensor, got shape {tuple(v.shape)}")
        return self.matmat(v[:, None])[:, 0]

    def __matmul__(self, X: torch.Tensor) -> torch.Tensor:
        X = self._check(X)
        return self.matvec(X) if X.ndim == 1 else self.matmat(X)

    def to_scipy(self, symmetric: bool | None = None) -> scipy.sparse.linalg.LinearOperator:
        """A :class:`scipy.sparse.linalg.LinearOperator` view that maps numpy to numpy.

        Inputs are converted to the operator's dtype and device; outputs come back as numpy
        arrays of the operator's dtype (on the CPU). Products through the view are counted in
        :attr:`num_matvecs` like any other.

        Args:
            symmetric: whether the transpose products (``rmatvec``, ``rmatmat``, ``.H``) may be
                the operator's own products; ``None`` takes :attr:`symmetric`. When ``False``
                they call :meth:`_rmatmat`, which operators that are not symmetric implement.
        """
        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        symmetric = self.symmetric if symmetric is None else symmetric

        def as_tensor(x: np.ndarray) -> torch.Tensor:
            return self._check(torch.as_tensor(np.asarray(x, dtype=np_dtype), device=self.device))

        def apply(x: np.ndarray) -> np.ndarray:
            return (self @ as_tensor(x)).detach().cpu().numpy()

        def apply_transpose(x: np.ndarray) -> np.ndarray:
            X = as_tensor(x)
            out = self._rmatmat(X if X.ndim == 2 else X[:, None])
            self.num_matvecs += out.shape[1]
            return (out if X.ndim == 2 else out[:, 0]).detach().cpu().numpy()

        transpose = apply if symmetric else apply_transpose
        return scipy.sparse.linalg.LinearOperator(
            self.shape,
            matvec=apply,
            matmat=apply,
            rmatvec=transpose,
            rmatmat=transpose,
            dtype=np_dtype,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, "
            f"device={self.device}, num_matvecs={self.num_matvecs})"
        )


class DenseOperator(LinearOperator):
    """A dense square matrix seen as an operator (for tests and for small problems).

    :attr:`symmetric` is whether the matrix equals its transpose exactly.
    """

    def __init__(self, matrix: torch.Tensor, blocks: dict[str, slice] | None = None) -> None:
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2:
            raise ValueError("DenseOperator expects a 2-D torch.Tensor")
        super().__init__(tuple(matrix.shape), matrix.dtype, matrix.device, blocks)
        self.matrix = matrix
        self.symmetric = bool(torch.equal(matrix, matrix.mT))

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V

    def _rmatmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix.mT @ V


def as_operator(A: LinearOperator | torch.Tensor) -> LinearOperator:
    """Return ``A`` itself if it is a flatscope operator, or wrap a dense square tensor."""
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, torch.Tensor):
        return DenseOperator(A)
    raise TypeError(
        f"expected a flatscope LinearOperator or a dense torch.Tensor, got {type(A).__name__}"
    )

"""flatscope: Hessian-spectrum and flatness analysis for PyTorch models."""

from flatscope.operators import DenseOperator, HessianOperator, LinearOperator, as_operator

__version__ = "0.1.0"

__all__ = ["LinearOperator", "DenseOperator", "HessianOperator", "as_operator", "__version__"]

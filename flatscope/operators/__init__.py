"""Matrix-free linear operators: the Hessian of a training loss and the base interface."""

from flatscope.operators.base import DenseOperator, LinearOperator, as_operator
from flatscope.operators.hessian import ForwardModeUnavailable, HessianOperator
from flatscope.operators.params import block_slices, flatten, select_parameters, unflatten

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "ForwardModeUnavailable",
    "as_operator",
    "select_parameters",
    "flatten",
    "unflatten",
    "block_slices",
]

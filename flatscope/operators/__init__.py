"""Matrix-free linear operators: the Hessian, the generalized Gauss-Newton matrix and the
Fisher of a training loss, and the base interface."""

from flatscope.operators.base import DenseOperator, LinearOperator, as_operator
from flatscope.operators.curvature import CurvatureOperator
from flatscope.operators.fisher import EmpiricalFisherOperator
from flatscope.operators.ggn import GGNOperator
from flatscope.operators.hessian import ForwardModeUnavailable, HessianOperator
from flatscope.operators.output_hessian import (
    causal_lm_output_hessian,
    cross_entropy_output_hessian,
)
from flatscope.operators.params import block_slices, flatten, select_parameters, unflatten

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "CurvatureOperator",
    "HessianOperator",
    "GGNOperator",
    "EmpiricalFisherOperator",
    "cross_entropy_output_hessian",
    "causal_lm_output_hessian",
    "ForwardModeUnavailable",
    "as_operator",
    "select_parameters",
    "flatten",
    "unflatten",
    "block_slices",
]

"""Parameter selection and the flat-vector view, re-exported from :mod:`flatscope.params` (their
home since the objective layer, which sits below the operators, owns the flat view)."""

from flatscope.params import block_slices, flatten, select_parameters, unflatten

__all__ = ["select_parameters", "flatten", "unflatten", "block_slices"]

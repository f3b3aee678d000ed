"""Parameter selection and the flat-vector view, re-exported from :mod:`flatscope.params` (their
home since the objective layer, which sits below the operators, owns the flat view)."""

from flatscope.params import *  # noqa: F403
from flatscope.params import __all__  # noqa: F401

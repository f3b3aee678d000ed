"""Data-parallel reductions, re-exported from :mod:`flatscope.distributed` (their home since the
objective layer, which sits below the operators, all-reduces its sums with them)."""

from flatscope.distributed import *  # noqa: F403
from flatscope.distributed import __all__  # noqa: F401

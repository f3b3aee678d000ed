"""Optimizers: fSGLD (flatness-aware SGLD) and its baselines SGLD and SAM."""

from flatscope.optim.fsgld import FSGLD, coupled_sigma
from flatscope.optim.sam import SAM
from flatscope.optim.sgld import SGLD

__all__ = ["FSGLD", "SAM", "SGLD", "coupled_sigma"]

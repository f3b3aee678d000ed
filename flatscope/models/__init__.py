"""Models and losses from text specs: the spec syntax and registries, the model zoo, the losses."""

from flatscope.models.losses import LOSSES, build_loss, loss_spec
from flatscope.models.specs import Registry, Spec, SpecError, parse_spec
from flatscope.models.zoo import MODELS, build_model, model_spec

__all__ = [
    "LOSSES",
    "MODELS",
    "Registry",
    "Spec",
    "SpecError",
    "build_loss",
    "build_model",
    "loss_spec",
    "model_spec",
    "parse_spec",
]

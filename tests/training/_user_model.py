"""A network defined outside flatscope's zoo: the tests name it as
``--model tests.training._user_model:tiny_net``, as a user names their own model."""

from torch import nn


def tiny_net() -> nn.Sequential:
    """Flatten, Linear(64, 6), tanh, Linear(6, 10): 460 parameters for 8x8 digits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 10))

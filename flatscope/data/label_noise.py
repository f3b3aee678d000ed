"""Synthetic label noise: symmetric and asymmetric flips, drawn from a seeded generator."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from flatscope.data.cifar import CIFAR10_CLASSES
from flatscope.data.errors import DataError
from flatscope.data.random_streams import NOISE_STREAM, check_seed, stream_generator
from flatscope.models.specs import Registry, SpecError, format_value

__all__ = ["LABEL_NOISE", "NOISE_KINDS", "LabelNoise", "add_label_noise", "asymmetric_map"]

NOISE_KINDS = ("symmetric", "asymmetric")


@dataclass(frozen=True)
class LabelNoise:
    """Synthetic label noise: each label changes with probability ``rate``.

    ``symmetric``: to a class drawn uniformly from the other ``k - 1`` classes.
    ``asymmetric``: to ``asymmetric_map(k, class_names)[label]`` (similar-class confusions).
    ``seed`` (optional) fixes the noise independently of the seed of :func:`load_data`.
    Spec form: ``symmetric:0.4`` or ``asymmetric:rate=0.2,seed=3``.
    """

    kind: str
    rate: float
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise SpecError(
                f"unknown label noise {self.kind!r}; choose one of {', '.join(NOISE_KINDS)}"
            )
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)):
            raise SpecError(f"label noise rate must be a number in [0, 1), got {self.rate!r}")
        if not (math.isfinite(self.rate) and 0 <= self.rate < 1):
            raise SpecError(f"label noise rate must lie in [0, 1), got {self.rate}")
        object.__setattr__(self, "rate", float(self.rate))
        if self.seed is not None:
            check_seed(self.seed, "label noise seed")

    @property
    def spec(self) -> str:
        """The canonical spec, e.g. ``symmetric:rate=0.4``."""
        seed = "" if self.seed is None else f",seed={self.seed}"
        return f"{self.kind}:rate={format_value(self.rate)}{seed}"

    @classmethod
    def parse(cls, spec: str | LabelNoise) -> LabelNoise:
        """A :class:`LabelNoise` from its spec (a :class:`LabelNoise` passes through)."""
        return spec if isinstance(spec, LabelNoise) else LABEL_NOISE.build(spec)


LABEL_NOISE = Registry("label noise", allow_import=False)


def _noise_factory(kind: str) -> Callable[..., LabelNoise]:
    def make(rate: float, *, seed: int | None = None) -> LabelNoise:
        return LabelNoise(kind, rate, seed)

    make.__doc__ = f"{kind.capitalize()} label noise with probability ``rate``."
    return make


for _kind in NOISE_KINDS:
    LABEL_NOISE.register(_kind)(_noise_factory(_kind))

# Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a Loss Correction
# Approach" (CVPR 2017): truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
_CIFAR10_CONFUSIONS = {
    "truck": "automobile",
    "bird": "airplane",
    "deer": "horse",
    "cat": "dog",
    "dog": "cat",
}


def asymmetric_map(num_classes: int, class_names: Sequence[str] | None = None) -> torch.Tensor:
    """The class each label turns into under asymmetric noise, as an ``int64`` tensor.

    CIFAR-10 (recognised by its class names) uses the confusions of Patrini et al. (CVPR 2017);
    classes outside them stay unchanged. Any other ``k`` classes map ``c -> (c + 1) mod k``.
    """
    if class_names is not None and tuple(class_names) == CIFAR10_CLASSES:
        index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
        return torch.tensor([index[_CIFAR10_CONFUSIONS.get(n, n)] for n in CIFAR10_CLASSES])
    return (torch.arange(num_classes) + 1) % num_classes


def add_label_noise(
    labels: torch.Tensor,
    num_classes: int,
    noise: LabelNoise | str,
    *,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Return a noisy copy of ``labels``: each changes with probability ``noise.rate``.

    Which labels change is a Bernoulli(rate) draw per sample, so the number changed is
    Binomial(N, rate) for symmetric noise. The draws come from a generator seeded by
    ``noise.seed`` if set, else by ``seed``; the same seed gives the same labels.
    """
    noise = LabelNoise.parse(noise)
    labels = torch.as_tensor(labels)
    dtype = labels.dtype
    if labels.ndim != 1 or dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise DataError(f"labels must be a 1-D integer tensor, got {labels.dtype} {labels.shape}")
    if num_classes < 2:
        raise DataError(f"label noise needs at least 2 classes, got {num_classes}")
    labels = labels.to(torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"labels must lie in 0..{num_classes - 1} for label noise")
    generator = stream_generator(noise.seed if noise.seed is not None else seed, NOISE_STREAM)
    flip = torch.rand(len(labels), generator=generator) < noise.rate
    if noise.kind == "symmetric":
        shift = torch.randint(1, num_classes, (len(labels),), generator=generator)
        target = (labels + shift) % num_classes
    else:
        target = asymmetric_map(num_classes, class_names)[labels]
    return torch.where(flip, target, labels)

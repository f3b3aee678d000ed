"""A small model zoo behind a registry, built from specs such as ``resnet18:width=16``.

Built-in models (every parameter is a keyword; defaults fit the 8x8 digits data):

``linear``   in_features=64, num_classes=10 — softmax regression on flattened inputs.
``mlp``      in_features=64, hidden=32, depth=2, num_classes=10, activation=relu —
             ``depth`` hidden layers of width ``hidden``.
``cnn``      in_channels=1, num_classes=10, width=16, batchnorm=true — three 3x3 conv layers
             (width, 2 width, 4 width channels; the last two with stride 2), each followed by
             BatchNorm and ReLU, global average pooling and a linear classifier. Works on any
             image of at least 4x4 pixels: 8x8 digits, 32x32 CIFAR.
``resnet18``, ``resnet34``
             in_channels=3, num_classes=10, width=64 — the CIFAR variants of He et al., "Deep
             Residual Learning for Image Recognition" (CVPR 2016): a 3x3 stem convolution and no
             max-pooling, then four stages of BasicBlocks ([2, 2, 2, 2] or [3, 4, 6, 3]) with
             width, 2, 4 and 8 times width channels, strides 1, 2, 2, 2, global average pooling
             and a linear classifier. ``width=64`` is the architecture of the fSGLD paper's
             CIFAR experiments (11,173,962 and 21,282,122 parameters); small widths build
             thin copies for tests.

``hf``       PATH, dtype=float32 — a Hugging Face causal language model from a local
             ``from_pretrained`` folder, returning logits (see :mod:`flatscope.models.hf`; needs
             the ``transformers`` extra). Remote code in the folder runs only with
             ``build_model(spec, trust_remote_code=True)``, never because a spec says so.

Any other model comes from an import spec ``package.module:factory[:key=value,...]`` (see
:mod:`flatscope.models.specs`). :func:`model_spec` gives the canonical spec a checkpoint carries.
"""

from __future__ import annotations

import torch
from torch import nn

from flatscope.models.hf import hf
from flatscope.models.specs import Registry, SpecError

__all__ = ["MODELS", "build_model", "model_spec", "BasicBlock", "CifarResNet"]

#: ``trust_remote_code`` is context: the caller supplies it, a spec cannot (see ``hf``).
MODELS = Registry("model", context=("trust_remote_code",))

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}


def _require_positive(model: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise SpecError(f"model {model!r}: {name} must be a positive integer, got {value}")


@MODELS.register("mlp")
def mlp(
    *,
    in_features: int = 64,
    hidden: int = 32,
    depth: int = 2,
    num_classes: int = 10,
    activation: str = "relu",
) -> nn.Sequential:
    """Flatten, then ``depth`` hidden layers ``Linear -> activation``, then a linear head."""
    _require_positive("mlp", in_features=in_features, hidden=hidden, num_classes=num_classes)
    if depth < 0:
        raise SpecError(f"model 'mlp': depth must be 0 or more, got {depth}")
    if activation not in _ACTIVATIONS:
        raise SpecError(
            f"model 'mlp': unknown activation {activation!r}; choose one of "
            f"{', '.join(_ACTIVATIONS)}"
        )
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@MODELS.register("linear")
def linear(*, in_features: int = 64, num_classes: int = 10) -> nn.Sequential:
    """Softmax regression: flatten, then one linear layer (an ``mlp`` of depth 0)."""
    return mlp(in_features=in_features, num_classes=num_classes, depth=0)


def _conv_bn_relu(
    in_channels: int, out_channels: int, stride: int, batchnorm: bool
) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batchnorm)
    norm = [nn.BatchNorm2d(out_channels)] if batchnorm else []
    return [conv, *norm, nn.ReLU()]


@MODELS.register("cnn")
def cnn(
    *, in_channels: int = 1, num_classes: int = 10, width: int = 16, batchnorm: bool = True
) -> nn.Sequential:
    """Three 3x3 conv blocks (strides 1, 2, 2), global average pooling, a linear head."""
    _require_positive("cnn", in_channels=in_channels, num_classes=num_classes, width=width)
    return nn.Sequential(
        *_conv_bn_relu(in_channels, width, 1, batchnorm),
        *_conv_bn_relu(width, 2 * width, 2, batchnorm),
        *_conv_bn_relu(2 * width, 4 * width, 2, batchnorm),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut.

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` (He et al., CVPR 2016).
    The shortcut projects when the stride or the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 images: 3x3 stem, four BasicBlock stages, average pool, linear head.

    Args:
        blocks_per_stage: number of BasicBlocks in each of the four stages.
        width: channels of the stem and the first stage; stage ``i`` has ``width * 2**i``.
        in_channels: input image channels.
        num_classes: outputs of the linear head.
    """

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int],
        width: int = 64,
        in_channels: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        stages, channels = [], width
        for index, num_blocks in enumerate(blocks_per_stage):
            out_channels = width * 2**index
            strides = [1 if index == 0 else 2] + [1] * (num_blocks - 1)
            blocks = []
            for stride in strides:
                blocks.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.pool(out), 1))


def _resnet(
    name: str, blocks: tuple[int, int, int, int], in_channels: int, num_classes: int, width: int
) -> CifarResNet:
    _require_positive(name, in_channels=in_channels, num_classes=num_classes, width=width)
    return CifarResNet(blocks, width=width, in_channels=in_channels, num_classes=num_classes)


@MODELS.register("resnet18")
def resnet18(*, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> CifarResNet:
    """CIFAR ResNet-18: BasicBlock stages [2, 2, 2, 2]."""
    return _resnet("resnet18", (2, 2, 2, 2), in_channels, num_classes, width)


@MODELS.register("resnet34")
def resnet34(*, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> CifarResNet:
    """CIFAR ResNet-34: BasicBlock stages [3, 4, 6, 3]."""
    return _resnet("resnet34", (3, 4, 6, 3), in_channels, num_classes, width)


MODELS.register("hf")(hf)


def build_model(
    spec: str, *, seed: int | None = None, trust_remote_code: bool = False
) -> nn.Module:
    """Build the model a spec names (``mlp:hidden=64`` or ``package.module:factory:...``).

    With ``seed``, the initial weights are drawn from ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``, so they are reproducible and the caller's global random state
    is left as it was. Without it, PyTorch's global generator initializes the weights.
    ``trust_remote_code=True`` lets ``hf:PATH`` run the Python code shipped in that folder; it
    is passed to the factories that accept a ``trust_remote_code`` keyword only when true.
    """
    context = {"trust_remote_code": True} if trust_remote_code else {}
    if seed is None:
        model = MODELS.build(spec, **context)
    else:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError(f"model seed must be a non-negative integer, got {seed!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODELS.build(spec, **context)
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model spec {spec!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def model_spec(spec: str) -> str:
    """The canonical form of a model spec: every default written out, in signature order.

    ``model_spec("mlp:hidden=8")`` is
    ``"mlp:in_features=64,hidden=8,depth=2,num_classes=10,activation=relu"``; building it
    gives the same architecture even if the defaults change later.
    """
    return MODELS.canonical(spec)

"""Datasets from specs, fixed seeded splits and subsets, label noise, and loaders.

Data specs (see :mod:`flatscope.specs` for the syntax):

``digits[:split_seed=0]``
    scikit-learn's embedded 8x8 digits (1797 images, no download): inputs of shape
    ``(N, 1, 8, 8)`` scaled from 0..16 to [0, 1], ``int64`` labels 0..9. A permutation drawn
    from ``numpy.random.default_rng(split_seed)`` splits them 60/20/20: the first 359 indices
    form ``test``, the next 359 ``val``, the remaining 1079 ``train``.
``synthetic[:n=1000,d=16,classes=4,seed=0,separation=2.0]``
    Gaussian blobs: class means ``separation * N(0, I_d)``, labels uniform, inputs
    ``mean[label] + N(0, I_d)``, shape ``(n, d)``; ``n`` samples in all, split 60/20/20 as
    digits with ``split_seed = seed``.
``cifar10:PATH[,val=0,split_seed=0]``
    CIFAR-10 in torchvision's on-disk format (``data_batch_1..5``, ``test_batch``,
    ``batches.meta`` in ``PATH`` or ``PATH/cifar-10-batches-py``), read without torchvision
    and without running pickled code. Inputs ``(N, 3, 32, 32)`` normalised per channel with
    the training-set mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616). ``train``
    is the 50000 training images less ``val`` held out by a permutation from
    ``default_rng(split_seed)``; ``test`` is ``test_batch``.
``cifar10n:PATH[,labels=worse,human=FILE,val=0,split_seed=0]``
    CIFAR-10N (Wei et al., "Learning with Noisy Labels Revisited: A Study Using Real-World
    Human Annotations", ICLR 2022): CIFAR-10 images from ``PATH`` with the human labels of
    the published ``CIFAR-10_human.pt`` (``human``, by default looked up in ``PATH`` and the
    batches folder) for ``train`` and ``val``; ``labels`` is one of clean, aggre, worse,
    random1, random2, random3. ``test`` keeps CIFAR-10's clean labels.
``package.module:factory[:key=value,...]``
    a factory returning a map-style ``Dataset`` of ``(input, target)`` items, a ``DataLoader``
    over one (its dataset, batch size and collate function are used, its sampler is not) or
    an ``(inputs, targets)`` pair of tensors. It receives ``split=`` when it accepts
    that keyword; one that does not can only provide the ``train`` split.

:func:`load_data` returns a :class:`DataBundle`. Its :meth:`DataBundle.batches` (or
``loader(shuffle=False)``) gives the same batches in the same order every time, as the Hessian
operator needs; ``loader(shuffle=True, epoch=e)`` gives a training order that depends only on
``(seed, e)``. Every random choice uses its own generator seeded from ``seed`` and a stream
number, never global random state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from flatscope.errors import FlatscopeError
from flatscope.specs import Registry, SpecError, accepts_keyword, format_value, parse_spec

__all__ = [
    "DATASETS",
    "LABEL_NOISE",
    "SPLITS",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataError",
    "DataBundle",
    "LabelNoise",
    "load_data",
    "add_label_noise",
    "asymmetric_map",
    "load_numpy_pickle",
]

SPLITS = ("train", "val", "test")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
DEFAULT_BATCH_SIZE = 128

_NOISE_STREAM, _SUBSET_STREAM, _SHUFFLE_STREAM = 1, 2, 3

DATASETS = Registry("data", context=("split",))


class DataError(FlatscopeError, ValueError):
    """Data that cannot be read or used: a missing or unsafe file, an empty split, bad labels."""


def _check_seed(seed: int, what: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"{what} must be a non-negative integer, got {seed!r}")
    return seed


def _generator(seed: int, *stream: int) -> torch.Generator:
    """A torch generator for one named random stream of ``seed`` (via ``numpy.SeedSequence``)."""
    state = np.random.SeedSequence([_check_seed(seed), *stream]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


# --- reading pickles without running code -------------------------------------------------

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_FROMBUFFER = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]


def _safe_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise DataError("refusing a pickled numpy array of Python objects: only numeric data")
    return dtype


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``; nothing else allowed."""
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing a pickled call to codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# What a pickle of numpy arrays, bytes, strings, lists and dicts may name: numpy's array
# reconstruction (legacy ``numpy.core`` and numpy 2's ``numpy._core`` module names), dtypes
# without Python objects, and latin-1 encoding of bytes. Nothing here can run other code.
_NUMPY_PICKLE_GLOBALS: dict[tuple[str, str], Callable] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Callable:
        try:
            return _NUMPY_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to load {self._path}: it asks to call {module}.{name}, but it should "
                "hold only numpy arrays, lists and strings"
            ) from None


def load_numpy_pickle(path: str | Path) -> Any:
    """Unpickle a file of numpy arrays, bytes, strings, numbers, lists and dicts, safely.

    Any other global the pickle names (``os.system``, ``builtins.eval``, any class) is refused
    with :class:`DataError` before it is called. Python 2 pickles (such as the CIFAR-10
    batches) are read with ``encoding="latin1"``, as numpy requires.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            return _NumpyOnlyUnpickler(file, path).load()
    except DataError:
        raise
    except Exception as error:  # a corrupt pickle can fail in many ways; none may escape raw
        raise DataError(f"cannot read {path}: {type(error).__name__}: {error}") from None


def _torch_load_numpy(path: Path) -> Any:
    """``torch.load(weights_only=True)`` that also accepts numeric numpy arrays."""
    allowed = [
        (obj, f"{module}.{name}")
        for (module, name), obj in _NUMPY_PICKLE_GLOBALS.items()
        if obj is not _safe_dtype
    ]
    # torch rebuilds dtypes itself and asks for each numeric dtype class by name.
    numeric = np.typecodes["AllInteger"] + np.typecodes["AllFloat"] + "?"
    allowed += [np.dtype, *{type(np.dtype(code)) for code in numeric}]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, refused global, truncated file, ...
        raise DataError(
            f"cannot read {path} as a weights-only torch file: {_torch_load_reason(error)}"
        ) from None


def _torch_load_reason(error: Exception) -> str:
    """The informative line of a ``torch.load`` error (its messages are many lines long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = [line for line in lines if "GLOBAL" in line]
    if refused:
        return refused[0]
    if lines and not lines[0].startswith("Weights only load failed"):
        return lines[0].split(". ")[0]
    return f"{type(error).__name__} (it holds more than tensors and numeric numpy arrays)"


# --- built-in datasets ---------------------------------------------------------------------


@dataclass(frozen=True)
class _SplitData:
    inputs: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...] | None = None
    clean_labels: torch.Tensor | None = None


def _split_indices(n: int, split: str, split_seed: int, n_val: int, n_test: int) -> np.ndarray:
    """Sorted indices of ``split`` under a fixed permutation: test first, then val, then train."""
    order = np.random.default_rng(_check_seed(split_seed, "split_seed")).permutation(n)
    bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, n)}
    start, stop = bounds[split]
    return np.sort(order[start:stop])


def _fifth(n: int) -> int:
    return round(0.2 * n)


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    raw = load_digits()
    return raw.images, raw.target


@DATASETS.register("digits")
def digits(*, split: str, split_seed: int = 0) -> _SplitData:
    """scikit-learn's 8x8 digits, scaled to [0, 1], split 60/20/20 by ``split_seed``."""
    all_images, all_labels = _digits_arrays()
    n = len(all_labels)
    index = _split_indices(n, split, split_seed, _fifth(n), _fifth(n))
    images = torch.as_tensor(all_images[index] / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(all_labels[index], dtype=torch.int64)
    return _SplitData(images, labels, 10, tuple(str(digit) for digit in range(10)))


@DATASETS.register("synthetic")
def synthetic(
    *,
    split: str,
    n: int = 1000,
    d: int = 16,
    classes: int = 4,
    seed: int = 0,
    separation: float = 2.0,
) -> _SplitData:
    """Gaussian blobs: ``x = separation * mu[y] + N(0, I_d)`` with ``mu[c] ~ N(0, I_d)``."""
    if n < 1 or d < 1 or classes < 2:
        raise SpecError(
            f"data 'synthetic' needs n >= 1, d >= 1, classes >= 2; got {n}, {d}, {classes}"
        )
    generator = _generator(seed)
    means = separation * torch.randn(classes, d, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    inputs = means[labels] + torch.randn(n, d, generator=generator)
    index = torch.as_tensor(_split_indices(n, split, seed, _fifth(n), _fifth(n)))
    return _SplitData(inputs[index], labels[index], classes)


def _cifar_folder(path: str) -> Path:
    root = Path(path).expanduser()
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").is_file():
            return folder
    raise DataError(
        f"no CIFAR-10 batches under {root}: expected data_batch_1..5, test_batch and "
        "batches.meta there or in its cifar-10-batches-py folder (the python version of "
        "CIFAR-10, as torchvision's CIFAR10(root, download=True) leaves it)"
    )


def _text_keys(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"{path} holds a {type(record).__name__}, not a CIFAR batch dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: v for key, v in record.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch file {path}")
    record = _text_keys(load_numpy_pickle(path), path)
    data, labels = record.get("data"), record.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must be a list of integers") from None
    if data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(
            f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and "
            f"{labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path}: labels must lie in 0..9")
    return data, labels


def _read_cifar(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    parts = [_read_cifar_batch(folder / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _cifar_class_names(folder: Path) -> tuple[str, ...]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return CIFAR10_CLASSES
    names = _text_keys(load_numpy_pickle(meta_path), meta_path).get("label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{meta_path}: 'label_names' must list the 10 class names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _normalise_cifar(data: np.ndarray) -> torch.Tensor:
    images = torch.from_numpy(data).view(-1, 3, 32, 32).to(torch.float32).div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return images.sub_(mean).div_(std)


def _train_index(num_train: int, split: str, val: int, split_seed: int) -> np.ndarray:
    """Indices of ``train`` or ``val`` when ``val`` training images are held out."""
    if split == "val" and val == 0:
        raise DataError(
            "CIFAR-10 has no val split by default: hold training images out, for example "
            "cifar10:PATH,val=5000"
        )
    if not 0 <= val < num_train:
        raise SpecError(f"CIFAR-10: val must lie in [0, {num_train}), got {val}")
    return _split_indices(num_train, split, split_seed, val, 0)


@DATASETS.register("cifar10")
def cifar10(path: str, *, split: str, val: int = 0, split_seed: int = 0) -> _SplitData:
    """CIFAR-10 from torchvision's on-disk python batches, normalised per channel."""
    folder = _cifar_folder(path)
    data, labels = _read_cifar(folder, train=split != "test")
    if split != "test":
        index = _train_index(len(labels), split, val, split_seed)
        data, labels = data[index], labels[index]
    return _SplitData(
        _normalise_cifar(data), torch.from_numpy(labels), 10, _cifar_class_names(folder)
    )


_CIFAR10N_KEYS = {
    "clean": "clean_label",
    "aggre": "aggre_label",
    "worse": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
}


def _human_labels(
    path: str, folder: Path, human: str | None, labels: str, clean: np.ndarray
) -> np.ndarray:
    """The chosen CIFAR-10N labels, checked against the CIFAR-10 training labels ``clean``."""
    key = _CIFAR10N_KEYS.get(labels, labels)
    if key not in _CIFAR10N_KEYS.values():
        raise SpecError(
            f"data 'cifar10n': unknown labels {labels!r}; choose one of {', '.join(_CIFAR10N_KEYS)}"
        )
    if human:
        candidates = [Path(human).expanduser()]
    else:
        candidates = [Path(path).expanduser() / "CIFAR-10_human.pt", folder / "CIFAR-10_human.pt"]
    found = next((file for file in candidates if file.is_file()), None)
    if found is None:
        raise DataError(
            f"no CIFAR-10N label file at {' or '.join(map(str, candidates))}: download "
            "CIFAR-10_human.pt from the CIFAR-N release, or name it with human=FILE"
        )
    record = _torch_load_numpy(found)
    if not isinstance(record, dict) or key not in record:
        raise DataError(f"{found} holds no {key!r} entry; is it CIFAR-10_human.pt?")
    try:
        chosen = np.asarray(record[key]).reshape(-1).astype(np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{found}: {key!r} must hold integer labels") from None
    if chosen.shape != clean.shape:
        raise DataError(
            f"{found} has {len(chosen)} labels but CIFAR-10 has {len(clean)} training images"
        )
    if "clean_label" in record and not np.array_equal(np.asarray(record["clean_label"]), clean):
        raise DataError(f"{found}: clean_label does not match the CIFAR-10 training labels")
    if chosen.min() < 0 or chosen.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"{found}: {key} labels must lie in 0..9")
    return chosen


@DATASETS.register("cifar10n")
def cifar10n(
    path: str,
    *,
    split: str,
    labels: str = "worse",
    human: str | None = None,
    val: int = 0,
    split_seed: int = 0,
) -> _SplitData:
    """CIFAR-10 images with CIFAR-10N human labels on the training images (train and val)."""
    if split == "test":
        return cifar10(path, split=split)
    folder = _cifar_folder(path)
    data, clean = _read_cifar(folder, train=True)
    noisy = _human_labels(path, folder, human, labels, clean)
    index = _train_index(len(clean), split, val, split_seed)
    return _SplitData(
        _normalise_cifar(data[index]),
        torch.from_numpy(noisy[index]),
        10,
        _cifar_class_names(folder),
        clean_labels=torch.from_numpy(clean[index]),
    )


# --- label noise ---------------------------------------------------------------------------

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
            _check_seed(self.seed, "label noise seed")

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
    generator = _generator(noise.seed if noise.seed is not None else seed, _NOISE_STREAM)
    flip = torch.rand(len(labels), generator=generator) < noise.rate
    if noise.kind == "symmetric":
        shift = torch.randint(1, num_classes, (len(labels),), generator=generator)
        target = (labels + shift) % num_classes
    else:
        target = asymmetric_map(num_classes, class_names)[labels]
    return torch.where(flip, target, labels)


# --- bundles and loaders -------------------------------------------------------------------


class _RelabeledDataset(Dataset):
    """``(x, labels[i])`` for the items ``(x, y)`` of a dataset."""

    def __init__(self, base: Dataset, labels: torch.Tensor) -> None:
        self.base, self.labels = base, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        return self.base[index][0], self.labels[index]


class _BatchedTensorDataset(TensorDataset):
    """A TensorDataset that a DataLoader indexes once per batch instead of once per item."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return tuple(tensor.index_select(0, index) for tensor in self.tensors)


def _whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


def _dataset_labels(dataset: Dataset) -> torch.Tensor:
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1]
    if isinstance(dataset, _RelabeledDataset):
        return dataset.labels
    try:
        return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])
    except (TypeError, ValueError, IndexError) as error:
        raise DataError(
            f"cannot read integer labels from the dataset's (x, y) items: {error}"
        ) from None


@dataclass(frozen=True, eq=False)
class DataBundle:
    """One split of a dataset with everything needed to batch it reproducibly.

    Attributes:
        dataset: the samples; a ``TensorDataset`` for the built-in datasets.
        spec: the canonical data spec (defaults written out).
        split: ``"train"``, ``"val"`` or ``"test"`` (or a user factory's own name).
        num_classes, class_names: when known.
        batch_size: default batch size of :meth:`loader`.
        seed: seed of the subset, label noise and shuffling streams.
        indices: positions of the samples in the whole split after :meth:`subset`, else None.
        clean_labels: the split's labels before label noise or replaced labels, else None.
        label_noise: the synthetic noise applied, if any.
        collate_fn: collate function of a user factory's DataLoader, if any.
    """

    dataset: Dataset
    spec: str
    split: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    indices: torch.Tensor | None = None
    clean_labels: torch.Tensor | None = None
    label_noise: LabelNoise | None = None
    collate_fn: Callable | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        """The targets the loaders yield (the noisy labels after label noise)."""
        return _dataset_labels(self.dataset)

    @property
    def noisy_mask(self) -> torch.Tensor | None:
        """Which labels differ from the clean ones, or None when the labels are clean."""
        return None if self.clean_labels is None else self.labels != self.clean_labels

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input sample, e.g. ``(1, 8, 8)`` for digits."""
        return tuple(torch.as_tensor(self.dataset[0][0]).shape)

    def loader(
        self,
        shuffle: bool = False,
        *,
        seed: int | None = None,
        epoch: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        """A DataLoader over the bundle.

        ``shuffle=False`` gives the same batches in the same order every pass (for Hessian
        products). ``shuffle=True`` draws orders from a generator seeded by ``(seed, epoch)``
        (``seed`` defaults to the bundle's): the loader reshuffles on each pass, and a loader
        built with ``epoch=e`` starts from the same order whenever it is built, so a resumed
        run that builds one loader per epoch replays the same batches.
        """
        size = _check_batch_size(self.batch_size if batch_size is None else batch_size)
        # Always a generator of our own: a DataLoader without one draws its base seed from the
        # global generator on every pass, even when it does not shuffle.
        epoch = _check_seed(epoch, "epoch")
        generator = _generator(self.seed if seed is None else seed, _SHUFFLE_STREAM, epoch)
        dataset, collate = self.dataset, self.collate_fn
        if isinstance(dataset, TensorDataset) and collate is None:
            dataset, collate = _BatchedTensorDataset(*dataset.tensors), _whole_batch
        return DataLoader(
            dataset,
            batch_size=size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            collate_fn=collate,
        )

    def batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """All batches in a fixed order, in memory: what the Hessian operator needs."""
        return [tuple(batch) for batch in self.loader(shuffle=False)]

    def with_labels(self, labels: torch.Tensor) -> DataBundle:
        """The bundle with its labels replaced (for instance the noisy labels of a run)."""
        labels = torch.as_tensor(labels)
        if labels.shape != (len(self),) or labels.is_floating_point():
            raise DataError(
                f"labels must be {len(self)} integers for split {self.split!r} of "
                f"{self.spec!r}, got a {labels.dtype} tensor of shape {tuple(labels.shape)}"
            )
        labels = labels.to(torch.int64)
        clean = self.labels if self.clean_labels is None else self.clean_labels
        if isinstance(self.dataset, TensorDataset):
            inputs, _, *extra = self.dataset.tensors
            dataset: Dataset = TensorDataset(inputs, labels, *extra)
        elif isinstance(self.dataset, _RelabeledDataset):
            dataset = _RelabeledDataset(self.dataset.base, labels)
        else:
            dataset = _RelabeledDataset(self.dataset, labels)
        return dataclasses.replace(self, dataset=dataset, clean_labels=clean)

    def with_label_noise(self, noise: LabelNoise | str) -> DataBundle:
        """The bundle with :func:`add_label_noise` applied to its labels.

        The noise is seeded by its own seed, else by the bundle's; the recorded
        ``label_noise`` always carries the seed used, so its ``spec`` reproduces the labels.
        """
        noise = LabelNoise.parse(noise)
        if noise.seed is None:
            noise = dataclasses.replace(noise, seed=self.seed)
        labels = self.labels
        num_classes = self.num_classes or int(labels.max()) + 1
        noisy = add_label_noise(labels, num_classes, noise, class_names=self.class_names)
        return dataclasses.replace(self.with_labels(noisy), label_noise=noise)

    def subset(self, size: int) -> DataBundle:
        """A fixed subset of ``size`` samples, in their original order.

        The samples are the first ``size`` of a permutation seeded by the bundle's seed, so
        a smaller subset is contained in a larger one with the same seed.
        """
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= len(self):
            raise DataError(
                f"subset must be an integer in 1..{len(self)} (the size of split "
                f"{self.split!r}), got {size!r}"
            )
        order = torch.randperm(len(self), generator=_generator(self.seed, _SUBSET_STREAM))
        index = order[:size].sort().values
        if isinstance(self.dataset, TensorDataset):
            dataset: Dataset = TensorDataset(
                *(t.index_select(0, index) for t in self.dataset.tensors)
            )
        else:
            dataset = Subset(self.dataset, index.tolist())
        return dataclasses.replace(
            self,
            dataset=dataset,
            indices=index if self.indices is None else self.indices[index],
            clean_labels=None if self.clean_labels is None else self.clean_labels[index],
        )


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size


def _as_dataset(result: Any, spec: str) -> tuple[Dataset, Callable | None, int | None]:
    """A user factory's Dataset, DataLoader or (inputs, targets) pair as a map-style dataset."""
    if isinstance(result, DataLoader):
        return result.dataset, result.collate_fn, result.batch_size
    if isinstance(result, tuple) and len(result) == 2:
        inputs, targets = (torch.as_tensor(item) for item in result)
        if len(inputs) != len(targets):
            raise DataError(
                f"data {spec!r} returned {len(inputs)} inputs and {len(targets)} targets"
            )
        return TensorDataset(inputs, targets), None, None
    if isinstance(result, IterableDataset) or not isinstance(result, Dataset):
        raise SpecError(
            f"data {spec!r} returned a {type(result).__name__}; expected a map-style Dataset "
            "(with __getitem__ and __len__), a DataLoader over one, or an (inputs, targets) pair"
        )
    if not hasattr(result, "__len__"):
        raise SpecError(f"data {spec!r} returned a Dataset without __len__")
    return result, None, None


def _build_split(spec: str, split: str, seed: int, batch_size: int | None) -> DataBundle:
    parsed = parse_spec(spec)
    factory = DATASETS.resolve(parsed)
    if not parsed.is_import and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if parsed.is_import and split != "train" and not accepts_keyword(factory, "split"):
        raise DataError(
            f"data {parsed.name!r} takes no split argument, so it cannot provide split "
            f"{split!r}; add a split parameter to the factory or use split 'train'"
        )
    result = DATASETS.build(parsed, split=split)
    canonical = DATASETS.canonical(parsed)
    if isinstance(result, _SplitData):
        bundle = DataBundle(
            TensorDataset(result.inputs, result.labels),
            canonical,
            split,
            num_classes=result.num_classes,
            class_names=result.class_names,
            seed=seed,
            clean_labels=result.clean_labels,
        )
    else:
        dataset, collate, loader_batch = _as_dataset(result, parsed.text)
        classes = getattr(dataset, "classes", None)
        bundle = DataBundle(
            dataset,
            canonical,
            split,
            num_classes=len(classes) if isinstance(classes, (list, tuple)) else None,
            class_names=tuple(map(str, classes)) if isinstance(classes, (list, tuple)) else None,
            seed=seed,
            batch_size=loader_batch or DEFAULT_BATCH_SIZE,
            collate_fn=collate,
        )
    if len(bundle) == 0:
        raise DataError(f"data {parsed.text!r} has no samples in split {split!r}")
    if batch_size is not None:
        bundle = dataclasses.replace(bundle, batch_size=_check_batch_size(batch_size))
    return bundle


def load_data(
    spec: str = "digits",
    split: str = "train",
    *,
    subset: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    label_noise: LabelNoise | str | None = None,
    labels: torch.Tensor | None = None,
) -> DataBundle:
    """Load one split of the dataset a spec names, in memory, ready to batch.

    Steps, in this order: build the split (a fixed split, independent of ``seed``); replace
    its labels by ``labels`` (as many as the whole split, e.g. the noisy labels a training run
    saved) or apply ``label_noise`` (seeded by ``seed`` unless the noise has its own seed);
    keep a fixed ``subset`` of that many samples (seeded by ``seed``). The noise is drawn on
    the whole split before the subset, so a subset sees the same noisy labels as training.

    Args:
        spec: a data spec (see the module docs).
        split: ``"train"``, ``"val"`` or ``"test"``.
        subset: keep this many samples; None keeps all.
        seed: seeds the label noise, the subset and the default shuffling order.
        batch_size: default batch size of the bundle's loaders (128 unless a user factory's
            DataLoader says otherwise).
        label_noise: a :class:`LabelNoise` or its spec, e.g. ``"symmetric:0.4"``.
        labels: replacement labels for the whole split.
    """
    _check_seed(seed)
    if labels is not None and label_noise is not None:
        raise DataError("give labels or label_noise, not both")
    bundle = _build_split(spec, split, seed, batch_size)
    if labels is not None:
        bundle = bundle.with_labels(labels)
    if label_noise is not None:
        bundle = bundle.with_label_noise(label_noise)
    if subset is not None:
        bundle = bundle.subset(subset)
    return bundle

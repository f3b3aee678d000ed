"""Datasets from specs, fixed seeded splits and subsets, label noise, and loaders.

Data specs (see :mod:`flatscope.models.specs` for the syntax):

``digits[:split_seed=0]``
    scikit-learn's embedded 8x8 digits (1797 images, no download): inputs of shape
    ``(N, 1, 8, 8)`` scaled from 0..16 to [0, 1], ``int64`` labels 0..9. A permutation drawn
    from ``numpy.random.default_rng(split_seed)`` splits them 60/20/20: the first 359 indices
    form ``test``, the next 359 ``val``, the remaining 1079 ``train``.
``synthetic[:n=1000,d=16,classes=4,seed=0,separation=2.0,shape=none]``
    Gaussian blobs: class means ``separation * N(0, I_d)``, labels uniform, inputs
    ``mean[label] + N(0, I_d)``, shape ``(n, d)``; ``n`` samples in all, split 60/20/20 as
    digits with ``split_seed = seed``. ``shape`` (sizes joined by ``x``, such as ``3x32x32``)
    gives each sample that shape instead, for convolutional models: the same blobs in
    ``d = 3*32*32`` dimensions, reshaped; give ``d`` or ``shape``, not both.
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
``tokens:PATH[,pad_id=N]``, ``text:PATH,tokenizer=FOLDER[,seq_len=128,stride=SEQ_LEN]``
    token ids for language models, from a pre-tokenized ``.npy``/``.pt``/``.safetensors`` file
    of shape ``(N, T)`` or a text file and a Hugging Face tokenizer: ``(input_ids, labels)``
    pairs with labels -100 at padding (see :mod:`flatscope.data.tokens`); train split only.
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from flatscope.data.cifar import cifar10, cifar10n
from flatscope.data.errors import DataError
from flatscope.data.label_noise import LabelNoise, add_label_noise
from flatscope.data.random_streams import (
    SHUFFLE_STREAM,
    SUBSET_STREAM,
    check_seed,
    stream_generator,
)
from flatscope.data.splits import SplitData, split_indices
from flatscope.data.tokens import text_file, token_file
from flatscope.models.specs import Registry, SpecError, accepts_keyword

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "DataBundle",
    "LabelNoise",
    "load_data",
]

SPLITS = ("train", "val", "test")
DEFAULT_BATCH_SIZE = 128

DATASETS = Registry("data", context=("split",))


# --- built-in datasets ---------------------------------------------------------------------


def _fifth(n: int) -> int:
    return round(0.2 * n)


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    raw = load_digits()
    return raw.images, raw.target


@DATASETS.register("digits")
def digits(*, split: str, split_seed: int = 0) -> SplitData:
    """scikit-learn's 8x8 digits, scaled to [0, 1], split 60/20/20 by ``split_seed``."""
    all_images, all_labels = _digits_arrays()
    n = len(all_labels)
    index = split_indices(n, split, split_seed, _fifth(n), _fifth(n))
    images = torch.as_tensor(all_images[index] / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(all_labels[index], dtype=torch.int64)
    return SplitData(images, labels, 10, tuple(str(digit) for digit in range(10)))


def _sample_shape(shape: str) -> tuple[int, ...]:
    """``"3x32x32"`` -> ``(3, 32, 32)``; every size a positive integer."""
    try:
        sizes = tuple(int(size) for size in shape.lower().split("x"))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise SpecError(
            f"data 'synthetic' needs shape as positive sizes joined by 'x', such as 3x32x32; "
            f"got {shape!r}"
        )
    return sizes


@DATASETS.register("synthetic")
def synthetic(
    *,
    split: str,
    n: int = 1000,
    d: int | None = None,
    classes: int = 4,
    seed: int = 0,
    separation: float = 2.0,
    shape: str | None = None,
) -> SplitData:
    """Gaussian blobs: ``x = separation * mu[y] + N(0, I_d)`` with ``mu[c] ~ N(0, I_d)``;
    ``d`` defaults to 16, or to the product of ``shape`` (``"3x32x32"``), each sample's shape."""
    if d is not None and shape is not None:
        raise SpecError(f"data 'synthetic' takes d or shape, not both; got d={d}, shape={shape!r}")
    sample_shape = (16 if d is None else d,) if shape is None else _sample_shape(shape)
    d = math.prod(sample_shape)
    if n < 1 or d < 1 or classes < 2:
        raise SpecError(
            f"data 'synthetic' needs n >= 1, d >= 1, classes >= 2; got {n}, {d}, {classes}"
        )
    generator = stream_generator(seed)
    means = separation * torch.randn(classes, d, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    inputs = means[labels] + torch.randn(n, d, generator=generator)
    index = torch.as_tensor(split_indices(n, split, seed, _fifth(n), _fifth(n)))
    return SplitData(inputs[index].reshape(-1, *sample_shape), labels[index], classes)


DATASETS.register("cifar10")(cifar10)
DATASETS.register("cifar10n")(cifar10n)
DATASETS.register("tokens")(token_file)
DATASETS.register("text")(text_file)


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
        split_size: the number of samples of the whole split after :meth:`subset`, else None.
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
    split_size: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        """The targets the loaders yield (the noisy labels after label noise)."""
        return _dataset_labels(self.dataset)

    @property
    def labels_in_memory(self) -> bool:
        """Whether :attr:`labels` is a tensor already (else reading it visits every item)."""
        return isinstance(self.dataset, (TensorDataset, _RelabeledDataset))

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
        epoch = check_seed(epoch, "epoch")
        generator = stream_generator(self.seed if seed is None else seed, SHUFFLE_STREAM, epoch)
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
        order = torch.randperm(len(self), generator=stream_generator(self.seed, SUBSET_STREAM))
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
            split_size=len(self) if self.indices is None else self.split_size,
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
    parsed = DATASETS.parse(spec)
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
    if isinstance(result, SplitData):
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
    check_seed(seed)
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

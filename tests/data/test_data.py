"""Datasets from specs, subsets, saved labels, loaders and user factories."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from flatscope.data.datasets import DataBundle, DataError, LabelNoise, load_data
from flatscope.models.specs import SpecError
from tests.data._datasets import binomial_bound, sorted_rows

# --- digits and synthetic ------------------------------------------------------------------


def test_digits_splits_have_the_documented_shapes_and_values():
    sizes = {"train": 1079, "val": 359, "test": 359}
    for split, size in sizes.items():
        bundle = load_data("digits", split)
        images, labels = bundle.dataset.tensors
        assert images.shape == (size, 1, 8, 8) and images.dtype == torch.float32
        assert labels.shape == (size,) and labels.dtype == torch.int64
        assert 0 <= images.min() and images.max() <= 1 and images.max() == 1
        assert set(labels.tolist()) == set(range(10))
        assert bundle.num_classes == 10 and bundle.input_shape == (1, 8, 8)
        assert bundle.spec == "digits:split_seed=0"


def test_digits_splits_partition_the_whole_dataset_and_are_reproducible():
    from sklearn.datasets import load_digits

    raw = load_digits()
    full = TensorDataset(
        torch.as_tensor(raw.images / 16.0, dtype=torch.float32).unsqueeze(1),
        torch.as_tensor(raw.target),
    )
    splits = [load_data("digits", split) for split in ("train", "val", "test")]
    whole = DataBundle(full, "digits", "all")
    assert np.array_equal(sorted_rows(*splits), sorted_rows(whole))
    again = load_data("digits", "train").dataset.tensors[0]
    assert torch.equal(again, splits[0].dataset.tensors[0])
    other = load_data("digits:split_seed=1", "train").dataset.tensors[0]
    assert not torch.equal(other, again)


def test_synthetic_blobs_are_reproducible_disjoint_and_unit_variance_within_class():
    spec = "synthetic:n=5000,d=4,classes=3,seed=7"
    train, val, test = (load_data(spec, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3000, 1000, 1000)
    assert train.input_shape == (4,) and train.num_classes == 3
    rows = sorted_rows(train, val, test)
    assert len(np.unique(rows, axis=0)) == 5000
    assert torch.equal(load_data(spec).dataset.tensors[0], train.dataset.tensors[0])
    assert not torch.equal(load_data(spec.replace("seed=7", "seed=8")).labels, train.labels)
    inputs, labels = (t.double() for t in train.dataset.tensors)
    residuals = torch.cat([inputs[labels == c] - inputs[labels == c].mean(0) for c in range(3)])
    # The sample variance of m unit normals has standard error sqrt(2 / m).
    assert abs(residuals.var() - 1) < 4 * math.sqrt(2 / residuals.numel())


# --- load_data: noise, saved labels, subsets -------------------------------------------------


def test_noisy_training_data_keeps_its_noise_in_every_subset():
    full = load_data("digits", label_noise="symmetric:0.4", seed=3)
    assert full.label_noise == LabelNoise("symmetric", 0.4, seed=3)
    assert torch.equal(load_data("digits", label_noise=full.label_noise.spec).labels, full.labels)
    assert abs(full.noisy_mask.sum().item() - 0.4 * len(full)) < binomial_bound(len(full), 0.4)
    assert torch.equal(full.clean_labels, load_data("digits").labels)
    part = load_data("digits", label_noise="symmetric:0.4", seed=3, subset=100)
    assert len(part) == 100
    assert torch.equal(part.labels, full.labels[part.indices])
    assert torch.equal(part.clean_labels, full.clean_labels[part.indices])
    assert torch.equal(part.dataset.tensors[0], full.dataset.tensors[0][part.indices])


def test_saved_labels_replace_the_split_labels():
    noisy = load_data("digits", label_noise="asymmetric:0.3", seed=1)
    again = load_data("digits", labels=noisy.labels, subset=50, seed=2)
    reference = load_data("digits", subset=50, seed=2)
    assert torch.equal(again.labels, noisy.labels[again.indices])
    assert torch.equal(again.clean_labels, reference.labels)
    with pytest.raises(DataError, match="labels must be 1079 integers"):
        load_data("digits", labels=noisy.labels[:10])
    with pytest.raises(DataError, match="not both"):
        load_data("digits", labels=noisy.labels, label_noise="symmetric:0.1")


def test_subsets_are_fixed_by_seed_and_nested():
    first = load_data("digits", subset=200, seed=4)
    assert torch.equal(first.indices, load_data("digits", subset=200, seed=4).indices)
    assert torch.equal(first.indices, first.indices.sort().values)
    smaller = load_data("digits", subset=50, seed=4)
    assert set(smaller.indices.tolist()) <= set(first.indices.tolist())
    assert not torch.equal(first.indices, load_data("digits", subset=200, seed=5).indices)
    for bad in (0, 1080, 2.5):
        with pytest.raises(DataError, match=r"subset must be an integer in 1\.\.1079"):
            load_data("digits", subset=bad)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"spec": "digits", "split": "holdout"}, DataError, "unknown split 'holdout'"),
        ({"spec": "digits:split=test"}, SpecError, "set by flatscope"),
        ({"spec": "mnist"}, SpecError, "unknown data 'mnist'; choose one of cifar10, cifar10n"),
        ({"spec": "digits", "seed": -1}, DataError, "seed must be a non-negative integer"),
        ({"spec": "digits", "batch_size": 0}, DataError, "batch size must be a positive"),
        ({"spec": "synthetic:classes=1"}, SpecError, "classes >= 2"),
    ],
)
def test_bad_load_data_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_data(**kwargs)


# --- loaders --------------------------------------------------------------------------------


def _indexed_bundle(n: int = 50, batch_size: int = 8) -> DataBundle:
    inputs = torch.arange(n, dtype=torch.float32)[:, None]
    return DataBundle(
        TensorDataset(inputs, torch.arange(n) % 3), "test", "train", 3, None, batch_size
    )


def _order(loader) -> list[int]:
    return [int(v) for x, _ in loader for v in x[:, 0]]


def test_unshuffled_batches_are_the_dataset_in_order_every_time():
    bundle = _indexed_bundle()
    batches = bundle.batches()
    assert [len(x) for x, _ in batches] == [8] * 6 + [2]
    assert _order(batches) == list(range(50))
    assert torch.equal(torch.cat([y for _, y in batches]), bundle.labels)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, bundle.batches(), strict=True))


def test_shuffled_order_depends_only_on_seed_and_epoch():
    bundle = _indexed_bundle()
    epoch0 = _order(bundle.loader(shuffle=True, epoch=0))
    assert sorted(epoch0) == list(range(50)) and epoch0 != list(range(50))
    assert _order(bundle.loader(shuffle=True, epoch=0)) == epoch0
    assert _order(bundle.loader(shuffle=True, epoch=1)) != epoch0
    assert _order(bundle.loader(shuffle=True, seed=1)) != epoch0
    loader = bundle.loader(shuffle=True, drop_last=True, batch_size=16)
    assert [len(x) for x, _ in loader] == [16] * 3


def test_iterating_loaders_leaves_the_global_generator_alone():
    bundle = _indexed_bundle()
    state = torch.get_rng_state()
    for shuffle in (False, True):
        list(bundle.loader(shuffle=shuffle))
    assert torch.equal(torch.get_rng_state(), state)


# --- user factories ---------------------------------------------------------------------------

_FACTORIES = textwrap.dedent("""
    import torch
    from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

    def tensors(split: str = "train", n: int = 10):
        offset = {"train": 0.0, "val": 100.0, "test": 200.0}[split]
        return torch.arange(n, dtype=torch.float32)[:, None] + offset, torch.arange(n) % 3

    def loader(n: int = 12):
        inputs = torch.arange(n, dtype=torch.float32)[:, None]
        return DataLoader(TensorDataset(inputs, torch.arange(n) % 2), batch_size=5)

    class Pairs(Dataset):
        classes = ["a", "b", "c"]

        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, index):
            return torch.full((2,), float(index)), index % 3

    def pairs(split: str, n: int = 30):
        return Pairs(n)

    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(2), 0

    def stream():
        return Stream()

    def empty():
        return TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))

    def number():
        return 3
""")


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    root = tmp_path_factory.mktemp("factories")
    package = root / "flatscope_data_fixture"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "factories.py").write_text(_FACTORIES)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield "flatscope_data_fixture.factories"


def test_factory_returning_tensors_gets_the_split(factories):
    test = load_data(f"{factories}:tensors:n=6", "test")
    assert test.dataset.tensors[0][0].item() == 200.0 and len(test) == 6
    assert test.spec == f"{factories}:tensors:n=6"


def test_factory_returning_a_loader_keeps_its_batch_size(factories):
    bundle = load_data(f"{factories}:loader")
    assert bundle.batch_size == 5 and [len(x) for x, _ in bundle.batches()] == [5, 5, 2]
    assert load_data(f"{factories}:loader", batch_size=4).batch_size == 4
    with pytest.raises(DataError, match="takes no split argument"):
        load_data(f"{factories}:loader", "test")


def test_generic_datasets_take_noise_subsets_and_batches(factories):
    bundle = load_data(f"{factories}:pairs", label_noise="symmetric:0.5", seed=1, subset=12)
    assert bundle.num_classes == 3 and bundle.class_names == ("a", "b", "c")
    assert len(bundle) == 12 and bundle.input_shape == (2,)
    inputs = torch.cat([x for x, _ in bundle.batches()])
    labels = torch.cat([y for _, y in bundle.batches()])
    assert torch.equal(inputs[:, 0].long(), bundle.indices)
    assert torch.equal(labels, bundle.labels)
    assert torch.equal(bundle.clean_labels, bundle.indices % 3)
    full = load_data(f"{factories}:pairs", label_noise="symmetric:0.5", seed=1)
    assert torch.equal(bundle.labels, full.labels[bundle.indices])


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("stream", SpecError, "map-style Dataset"),
        ("number", SpecError, "returned a int"),
        ("empty", DataError, "has no samples"),
    ],
)
def test_unusable_factory_results_are_refused(factories, name, error, message):
    with pytest.raises(error, match=message):
        load_data(f"{factories}:{name}")

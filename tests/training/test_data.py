"""Datasets, safe CIFAR reading, label noise, subsets and loaders."""

from __future__ import annotations

import builtins
import io
import math
import os
import pickle
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from flatscope.specs import SpecError
from flatscope.training.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataBundle,
    DataError,
    LabelNoise,
    add_label_noise,
    asymmetric_map,
    load_data,
    load_numpy_pickle,
)


def _binomial_bound(n: int, p: float) -> float:
    """Four standard deviations of a Binomial(n, p) count."""
    return 4 * math.sqrt(n * p * (1 - p))


def _sorted_rows(*bundles: DataBundle) -> np.ndarray:
    """All (input, label) rows of the bundles as one lexicographically sorted float64 matrix."""
    rows = np.concatenate(
        [
            torch.cat([b.dataset.tensors[0].flatten(1), b.labels[:, None]], 1).double().numpy()
            for b in bundles
        ]
    )
    return rows[np.lexsort(rows.T[::-1])]


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
    assert np.array_equal(_sorted_rows(*splits), _sorted_rows(whole))
    again = load_data("digits", "train").dataset.tensors[0]
    assert torch.equal(again, splits[0].dataset.tensors[0])
    other = load_data("digits:split_seed=1", "train").dataset.tensors[0]
    assert not torch.equal(other, again)


def test_synthetic_blobs_are_reproducible_disjoint_and_unit_variance_within_class():
    spec = "synthetic:n=5000,d=4,classes=3,seed=7"
    train, val, test = (load_data(spec, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3000, 1000, 1000)
    assert train.input_shape == (4,) and train.num_classes == 3
    rows = _sorted_rows(train, val, test)
    assert len(np.unique(rows, axis=0)) == 5000
    assert torch.equal(load_data(spec).dataset.tensors[0], train.dataset.tensors[0])
    assert not torch.equal(load_data(spec.replace("seed=7", "seed=8")).labels, train.labels)
    inputs, labels = (t.double() for t in train.dataset.tensors)
    residuals = torch.cat([inputs[labels == c] - inputs[labels == c].mean(0) for c in range(3)])
    # The sample variance of m unit normals has standard error sqrt(2 / m).
    assert abs(residuals.var() - 1) < 4 * math.sqrt(2 / residuals.numel())


# --- CIFAR-10 from torchvision's on-disk format ---------------------------------------------


def _legacy_numpy_names(payload: bytes) -> bytes:
    """Rename numpy 2's modules to the numpy 1 names that older pickles carry."""
    return payload.replace(b"numpy._core.", b"numpy.core.")


def _dump(path: Path, record: dict, protocol: int) -> None:
    payload = pickle.dumps(record, protocol=protocol)
    path.write_bytes(_legacy_numpy_names(payload) if protocol == 2 else payload)


def _write_fake_cifar(root: Path, protocol: int = 2, per_batch: int = 4, num_test: int = 3):
    """Five small training batches, a test batch and the meta file, as CIFAR-10 lays them out."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = num_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        record = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        _dump(folder / name, record, protocol)
        arrays[name] = (data, np.array(labels))
    meta = {b"label_names": [name.encode() for name in CIFAR10_CLASSES], b"num_vis": 3072}
    _dump(folder / "batches.meta", meta, protocol)
    train = [arrays[f"data_batch_{i}"] for i in range(1, 6)]
    return (
        np.concatenate([a[0] for a in train]),
        np.concatenate([a[1] for a in train]),
        arrays["test_batch"],
    )


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_torchvision_batches_and_normalises_per_channel(tmp_path, protocol):
    train_data, train_labels, (test_data, test_labels) = _write_fake_cifar(tmp_path, protocol)
    train = load_data(f"cifar10:{tmp_path}")
    images, labels = train.dataset.tensors
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(labels, torch.as_tensor(train_labels))
    assert train.class_names == CIFAR10_CLASSES
    sample, channel, row, col = 13, 2, 5, 30
    raw = train_data[sample, channel * 1024 + row * 32 + col]
    expected = (raw / 255 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]
    assert images[sample, channel, row, col].item() == pytest.approx(expected, rel=1e-6)
    test = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", "test")
    assert torch.equal(test.labels, torch.as_tensor(test_labels))
    assert len(test) == len(test_data) == 3


def test_cifar10_validation_holdout_is_fixed_and_disjoint(tmp_path):
    _write_fake_cifar(tmp_path)
    spec = f"cifar10:{tmp_path},val=6"
    train, val = load_data(spec, "train"), load_data(spec, "val")
    assert (len(train), len(val)) == (14, 6)
    everything = load_data(f"cifar10:{tmp_path}")
    assert np.array_equal(_sorted_rows(train, val), _sorted_rows(everything))
    assert torch.equal(load_data(spec, "val").dataset.tensors[0], val.dataset.tensors[0])
    with pytest.raises(DataError, match="no val split by default.*val=5000"):
        load_data(f"cifar10:{tmp_path}", "val")
    with pytest.raises(SpecError, match="val must lie in"):
        load_data(f"cifar10:{tmp_path},val=20")


class _Exploit:
    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)


@pytest.mark.parametrize("call", [os.system, builtins.exec])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, call):
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if call is os.system else f"open({str(marker)!r}, 'w')"
    _write_fake_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": _Exploit(call, command), b"labels": []}))
    with pytest.raises(DataError, match=r"refusing to load .*data_batch_3: it asks to call"):
        load_data(f"cifar10:{tmp_path}")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps({b"data": np.array([{}, None], dtype=object)}), "Python objects"),
        (pickle.dumps({b"data": np.zeros(3)})[:-8], "cannot read"),
        (b"just some text, not a pickle\n", "cannot read"),
        (pickle.dumps([1, 2, 3]), "not a CIFAR batch dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "N labels"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "0..9"),
    ],
)
def test_bad_cifar_batches_give_data_errors(tmp_path, payload, message):
    _write_fake_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload)
    with pytest.raises(DataError, match=message):
        load_data(f"cifar10:{tmp_path}")


def test_load_numpy_pickle_reads_plain_containers(tmp_path):
    record = {"a": [1, 2.5, "x", b"y", None, True], "b": np.arange(6, dtype=np.int16).reshape(2, 3)}
    path = tmp_path / "record.pkl"
    path.write_bytes(pickle.dumps(record, protocol=2))
    loaded = load_numpy_pickle(path)
    assert loaded["a"] == record["a"]
    assert np.array_equal(loaded["b"], record["b"]) and loaded["b"].dtype == np.int16


def test_missing_cifar_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 batches under .*data_batch_1"):
        load_data(f"cifar10:{tmp_path}")


# --- CIFAR-10N -------------------------------------------------------------------------------


def _legacy_torch_file(path: Path) -> None:
    """Rewrite a torch zip file so its pickle names numpy 1's modules."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = _legacy_numpy_names(data)
            target.writestr(item, data)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("legacy", [False, True])
def test_cifar10n_uses_the_chosen_human_labels_on_training_images(tmp_path, legacy):
    _, clean, (_, test_labels) = _write_fake_cifar(tmp_path)
    worse = (clean + 1 + np.arange(20) % 2) % 10
    record = {"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy()}
    human = tmp_path / "CIFAR-10_human.pt"
    torch.save(record, human)
    if legacy:
        _legacy_torch_file(human)
    bundle = load_data(f"cifar10n:{tmp_path},labels=worse")
    assert torch.equal(bundle.labels, torch.as_tensor(worse))
    assert torch.equal(bundle.clean_labels, torch.as_tensor(clean))
    assert bundle.noisy_mask.all()
    spec = f"cifar10n:{tmp_path},labels=worse,val=5"
    val = load_data(spec, "val")
    assert torch.equal(val.clean_labels[val.noisy_mask], val.clean_labels)
    assert len(val) + len(load_data(spec, "train")) == 20
    test = load_data(f"cifar10n:{tmp_path}", "test")
    assert torch.equal(test.labels, torch.as_tensor(test_labels)) and test.clean_labels is None


def test_cifar10n_refuses_mismatched_unknown_or_unsafe_label_files(tmp_path):
    _, clean, _ = _write_fake_cifar(tmp_path)
    human = tmp_path / "CIFAR-10_human.pt"
    spec = f"cifar10n:{tmp_path}"
    with pytest.raises(DataError, match="no CIFAR-10N label file.*human=FILE"):
        load_data(spec)
    torch.save({"clean_label": (clean + 1) % 10, "worse_label": clean}, human)
    with pytest.raises(DataError, match="clean_label does not match"):
        load_data(spec)
    torch.save({"worse_label": clean[:10]}, human)
    with pytest.raises(DataError, match="has 10 labels but CIFAR-10 has 20"):
        load_data(spec)
    with pytest.raises(SpecError, match="unknown labels 'best'"):
        load_data(f"{spec},labels=best")
    torch.save({"worse_label": _Exploit(os.system, "true")}, human)
    with pytest.raises(DataError, match="weights-only torch file: .*GLOBAL .*system"):
        load_data(spec)


# --- label noise ---------------------------------------------------------------------------


def _balanced_labels(n: int, k: int) -> torch.Tensor:
    return torch.arange(n) % k


def test_symmetric_noise_flips_a_binomial_fraction_to_uniform_other_classes():
    n, k, rate = 30_000, 10, 0.3
    labels = _balanced_labels(n, k)
    noisy = add_label_noise(labels, k, "symmetric:0.3", seed=5)
    changed = noisy != labels
    assert abs(changed.sum().item() - rate * n) < _binomial_bound(n, rate)
    shift = ((noisy - labels) % k)[changed]
    counts = torch.bincount(shift, minlength=k)
    assert counts[0] == 0
    flipped = changed.sum().item()
    assert all(
        abs(c - flipped / (k - 1)) < _binomial_bound(flipped, 1 / (k - 1)) for c in counts[1:]
    )


def test_asymmetric_noise_moves_each_class_to_its_mapped_class():
    n, k, rate = 20_000, 7, 0.2
    labels = _balanced_labels(n, k)
    noisy = add_label_noise(labels, k, LabelNoise("asymmetric", rate), seed=1)
    changed = noisy != labels
    assert torch.equal(noisy[changed], (labels[changed] + 1) % k)
    assert abs(changed.sum().item() - rate * n) < _binomial_bound(n, rate)


def test_asymmetric_noise_on_cifar10_uses_the_class_confusions():
    mapping = asymmetric_map(10, CIFAR10_CLASSES)
    name = dict(enumerate(CIFAR10_CLASSES))
    pairs = {(name[c], name[int(mapping[c])]) for c in range(10) if mapping[c] != c}
    expected = {
        ("truck", "automobile"),
        ("bird", "airplane"),
        ("deer", "horse"),
        ("cat", "dog"),
        ("dog", "cat"),
    }
    assert pairs == expected
    n, rate = 20_000, 0.4
    labels = _balanced_labels(n, 10)
    noisy = add_label_noise(labels, 10, "asymmetric:0.4", seed=2, class_names=CIFAR10_CLASSES)
    changed = noisy != labels
    assert torch.equal(noisy[changed], mapping[labels[changed]])
    movable = (mapping[labels] != labels).sum().item()
    assert abs(changed.sum().item() - rate * movable) < _binomial_bound(movable, rate)


def test_label_noise_is_reproducible_and_its_own_seed_wins():
    labels = _balanced_labels(1000, 10)
    first = add_label_noise(labels, 10, "symmetric:0.5", seed=3)
    assert torch.equal(first, add_label_noise(labels, 10, "symmetric:0.5", seed=3))
    assert not torch.equal(first, add_label_noise(labels, 10, "symmetric:0.5", seed=4))
    fixed = "symmetric:rate=0.5,seed=9"
    assert torch.equal(
        add_label_noise(labels, 10, fixed, seed=3), add_label_noise(labels, 10, fixed, seed=4)
    )
    assert torch.equal(add_label_noise(labels, 10, "asymmetric:0", seed=3), labels)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("symmetric:1.0", SpecError, r"must lie in \[0, 1\)"),
        ("symmetric:-0.1", SpecError, r"must lie in \[0, 1\)"),
        ("symmetric:nan", SpecError, r"must lie in \[0, 1\)"),
        ("symmetric:high", SpecError, "rate expects a number"),
        ("uniform:0.1", SpecError, "unknown label noise 'uniform'"),
        ("symmetric:rate=0.1,seed=-1", DataError, "non-negative"),
    ],
)
def test_bad_label_noise_specs_are_refused(spec, error, message):
    with pytest.raises(error, match=message):
        LabelNoise.parse(spec)


def test_label_noise_spec_round_trips():
    noise = LabelNoise.parse("asymmetric:rate=0.25,seed=3")
    assert noise == LabelNoise("asymmetric", 0.25, 3)
    assert LabelNoise.parse(noise.spec) == noise
    assert LabelNoise.parse("symmetric:0.4").spec == "symmetric:rate=0.4"


def test_bad_labels_for_noise_are_refused():
    with pytest.raises(DataError, match="0..2"):
        add_label_noise(torch.tensor([0, 3]), 3, "symmetric:0.1")
    with pytest.raises(DataError, match="integer"):
        add_label_noise(torch.tensor([0.0, 1.0]), 3, "symmetric:0.1")
    with pytest.raises(DataError, match="at least 2 classes"):
        add_label_noise(torch.tensor([0, 0]), 1, "symmetric:0.1")


# --- load_data: noise, saved labels, subsets -------------------------------------------------


def test_noisy_training_data_keeps_its_noise_in_every_subset():
    full = load_data("digits", label_noise="symmetric:0.4", seed=3)
    assert full.label_noise == LabelNoise("symmetric", 0.4, seed=3)
    assert torch.equal(load_data("digits", label_noise=full.label_noise.spec).labels, full.labels)
    assert abs(full.noisy_mask.sum().item() - 0.4 * len(full)) < _binomial_bound(len(full), 0.4)
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

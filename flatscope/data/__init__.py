"""Data sets from specs: digits, synthetic blobs, CIFAR-10/10N, user factories; label noise,
fixed seeded splits and subsets, and the safe readers of pickled data batches."""

from flatscope.data.datasets import DATASETS, SPLITS, DataBundle, load_data
from flatscope.data.errors import DataError
from flatscope.data.label_noise import LABEL_NOISE, LabelNoise, add_label_noise, asymmetric_map
from flatscope.data.safe_pickle import load_numpy_pickle

__all__ = [
    "DATASETS",
    "LABEL_NOISE",
    "SPLITS",
    "DataBundle",
    "DataError",
    "LabelNoise",
    "add_label_noise",
    "asymmetric_map",
    "load_data",
    "load_numpy_pickle",
]

"""Unpickling numeric numpy data without running pickled code."""

from __future__ import annotations

import builtins
import os
import pickle

import numpy as np
import pytest

from flatscope.data.datasets import load_data
from flatscope.data.errors import DataError
from flatscope.data.safe_pickle import load_numpy_pickle
from tests.data._datasets import Exploit, write_fake_cifar


@pytest.mark.parametrize("call", [os.system, builtins.exec])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, call):
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if call is os.system else f"open({str(marker)!r}, 'w')"
    write_fake_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": Exploit(call, command), b"labels": []}))
    with pytest.raises(DataError, match=r"refusing to load .*data_batch_3: it asks to call"):
        load_data(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_load_numpy_pickle_reads_plain_containers(tmp_path):
    record = {"a": [1, 2.5, "x", b"y", None, True], "b": np.arange(6, dtype=np.int16).reshape(2, 3)}
    path = tmp_path / "record.pkl"
    path.write_bytes(pickle.dumps(record, protocol=2))
    loaded = load_numpy_pickle(path)
    assert loaded["a"] == record["a"]
    assert np.array_equal(loaded["b"], record["b"]) and loaded["b"].dtype == np.int16

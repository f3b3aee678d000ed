"""The run-folder layout: checkpoint discovery, metrics.jsonl reading and writing."""

import json

import pytest

from flatscope.errors import FlatscopeError
from flatscope.io.run_folder import (
    append_record,
    checkpoint_path,
    is_run_folder,
    read_config,
    read_records,
    run_checkpoints,
    write_records,
)


def test_checkpoints_are_found_in_epoch_order_with_final_last(tmp_path):
    for epoch in (10, 2, 4):
        path = checkpoint_path(tmp_path, epoch, final=False)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "checkpoints" / "epoch_x.pt").write_bytes(b"")  # not an epoch: ignored
    checkpoint_path(tmp_path, 12, final=True).write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"config": {"epochs": 12}}))
    found = run_checkpoints(tmp_path)
    assert [c.epoch for c in found] == [2, 4, 10, 12]
    assert found[-1].path == tmp_path / "final.pt"
    assert is_run_folder(tmp_path)


def test_final_epoch_falls_back_to_the_last_record(tmp_path):
    (tmp_path / "final.pt").write_bytes(b"")
    write_records(tmp_path, [{"epoch": 1}, {"epoch": 7}])
    assert [c.epoch for c in run_checkpoints(tmp_path)] == [7]


def test_missing_or_empty_run_folders(tmp_path):
    assert run_checkpoints(tmp_path / "nope", required=False) == []
    assert run_checkpoints(tmp_path, required=False) == []
    with pytest.raises(FlatscopeError, match="not found"):
        run_checkpoints(tmp_path / "nope")
    with pytest.raises(FlatscopeError, match="no checkpoints"):
        run_checkpoints(tmp_path)
    assert not is_run_folder(tmp_path)


def test_records_round_trip_and_a_cut_line_is_skipped(tmp_path):
    write_records(tmp_path, [{"epoch": 1, "loss": 0.5}])
    append_record(tmp_path, {"epoch": 2, "loss": float("nan")})
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"epoch": 3, "loss"')  # a write cut by a kill
    assert read_records(tmp_path) == {1: {"epoch": 1, "loss": 0.5}, 2: {"epoch": 2, "loss": None}}
    assert read_records(tmp_path / "elsewhere") == {}


def test_config_is_read_as_an_object(tmp_path):
    assert read_config(tmp_path) is None
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(FlatscopeError, match="no JSON object"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(FlatscopeError, match="config.json is corrupt: it is not JSON"):
        read_config(tmp_path)


def test_final_checkpoint_of_a_config_without_epochs_is_refused(tmp_path):
    (tmp_path / "final.pt").write_bytes(b"")
    (tmp_path / "config.json").write_text('{"config": {"epochs": 3}}')
    assert [c.epoch for c in run_checkpoints(tmp_path)] == [3]
    (tmp_path / "config.json").write_text('{"config": {}}')
    with pytest.raises(FlatscopeError, match="corrupt: it holds no config.epochs"):
        run_checkpoints(tmp_path)
    (tmp_path / "config.json").unlink()
    write_records(tmp_path, [{"epoch": 1}, {"epoch": 2}])
    assert [c.epoch for c in run_checkpoints(tmp_path)] == [2]

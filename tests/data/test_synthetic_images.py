"""``synthetic:shape=CxHxW``: the Gaussian blobs as images, so convolutional models and ResNets
run on generated data."""

from __future__ import annotations

import pytest
import torch

from flatscope.cli import main
from flatscope.data import load_data
from flatscope.io import Report
from flatscope.models import build_model
from flatscope.models.specs import SpecError


def test_shape_gives_the_same_blobs_as_images():
    images = load_data("synthetic:n=50,classes=3,seed=4,shape=3x8x8")
    flat = load_data("synthetic:n=50,classes=3,seed=4,d=192")
    assert images.input_shape == (3, 8, 8)
    assert torch.equal(images.dataset.tensors[0], flat.dataset.tensors[0].reshape(-1, 3, 8, 8))
    assert torch.equal(images.labels, flat.labels)
    assert images.spec == "synthetic:n=50,d=none,classes=3,seed=4,separation=2.0,shape=3x8x8"
    assert load_data("synthetic").input_shape == (16,)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:d=12,shape=3x2x2", "d or shape, not both"),
        ("synthetic:shape=3x0x4", "positive sizes joined by 'x'"),
        ("synthetic:shape=3by4", "positive sizes joined by 'x'"),
    ],
)
def test_a_bad_shape_is_a_spec_error(spec, message):
    with pytest.raises(SpecError, match=message):
        load_data(spec)


def test_analyze_runs_a_resnet_checkpoint_on_image_shaped_synthetic_data(tmp_path):
    model_spec = "resnet18:width=2,num_classes=3"
    torch.save(build_model(model_spec, seed=0).state_dict(), tmp_path / "resnet.pt")
    out = tmp_path / "analysis"
    argv = [
        "analyze", str(tmp_path / "resnet.pt"), "--model", model_spec,
        "--data", "synthetic:n=40,classes=3,shape=3x32x32", "--subset", "8",
        "--metrics", "trace", "--num-matvecs", "4", "--out", str(out), "--no-figures",
        "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    report = Report.load(out / "report.json").to_dict()
    assert report["data"]["spec"].endswith("shape=3x32x32")
    assert report["data"]["num_samples"] == 8
    trace = report["metrics"]["hessian_trace"]
    assert trace["num_matvecs"] == 4 and "fc.weight" in trace["per_block"]

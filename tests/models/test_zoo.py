"""The model zoo: every model builds, runs on its inputs, and has the known architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatscope.models.specs import SpecError
from flatscope.models.zoo import MODELS, BasicBlock, build_model, model_spec

# (spec, input shape, output classes) — thin ResNets keep the forward passes fast.
FORWARD_CASES = [
    ("linear", (3, 1, 8, 8), 10),
    ("mlp", (3, 1, 8, 8), 10),
    ("mlp:in_features=12,hidden=5,depth=3,num_classes=4,activation=tanh", (3, 12), 4),
    ("cnn", (3, 1, 8, 8), 10),
    ("cnn:in_channels=3,width=4,batchnorm=false", (3, 3, 32, 32), 10),
    ("resnet18:width=4", (2, 3, 32, 32), 10),
    ("resnet34:width=2,num_classes=7", (2, 3, 32, 32), 7),
]


def test_forward_cases_cover_every_registered_model():
    covered = {spec.split(":")[0] for spec, _, _ in FORWARD_CASES}
    assert covered | {"hf"} == set(MODELS.names())  # hf needs a folder: tests/models/test_hf.py


@pytest.mark.parametrize(("spec", "shape", "classes"), FORWARD_CASES)
def test_every_model_maps_its_inputs_to_class_scores(spec, shape, classes):
    model = build_model(spec, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    out = model(torch.randn(*shape, generator=generator))
    assert out.shape == (shape[0], classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("spec", "count"), [("resnet18", 11_173_962), ("resnet34", 21_282_122)])
def test_full_width_resnets_have_the_published_cifar_parameter_counts(spec, count):
    # The CIFAR ResNet-18/34 (3x3 stem, no max-pool) sizes quoted in the literature.
    assert sum(p.numel() for p in build_model(spec).parameters()) == count


@pytest.mark.parametrize(("spec", "blocks"), [("resnet18", 8), ("resnet34", 16)])
def test_resnet_stages_halve_the_resolution_three_times(spec, blocks):
    model = build_model(f"{spec}:width=2", seed=0).eval()
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == blocks
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    shapes = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        stage.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
    model(torch.zeros(1, 3, 32, 32))
    assert shapes == [(2, 32, 32), (4, 16, 16), (8, 8, 8), (16, 4, 4)]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_mlp_parameter_count_matches_its_layer_sizes(depth):
    d, h, k = 12, 5, 4
    model = build_model(f"mlp:in_features={d},hidden={h},depth={depth},num_classes={k}")
    widths = [d] + [h] * depth + [k]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_cnn_batchnorm_switch():
    with_bn = build_model("cnn:width=4")
    without = build_model("cnn:width=4,batchnorm=false")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())


def test_seeded_builds_are_identical_and_leave_global_rng_alone():
    state = torch.get_rng_state()
    first = build_model("cnn:width=4", seed=3).state_dict()
    second = build_model("cnn:width=4", seed=3).state_dict()
    other = build_model("cnn:width=4", seed=4).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["0.weight"], other["0.weight"])


def test_model_spec_is_canonical_and_rebuilds_the_same_architecture():
    canonical = model_spec("mlp:hidden=8")
    assert canonical == "mlp:in_features=64,hidden=8,depth=2,num_classes=10,activation=relu"
    assert model_spec(canonical) == canonical
    assert model_spec("resnet18") == "resnet18:in_channels=3,num_classes=10,width=64"
    original = build_model("mlp:hidden=8", seed=0).state_dict()
    rebuilt = build_model(canonical, seed=0).state_dict()
    assert all(torch.equal(original[key], rebuilt[key]) for key in original)


def test_import_spec_builds_a_user_module():
    model = build_model("torch.nn:Linear:in_features=64,out_features=10")
    assert isinstance(model, nn.Linear) and model.weight.shape == (10, 64)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vit", "unknown model 'vit'; choose one of cnn, hf, linear, mlp, resnet18, resnet34"),
        ("mlp:activation=swish", "unknown activation 'swish'"),
        ("cnn:width=0", "width must be a positive integer"),
        ("mlp:depth=-1", "depth must be 0 or more"),
        ("resnet18:depth=3", "unexpected keyword"),
        ("vit:hidden=3", "unknown model 'vit'.*or an import spec 'module:factory'"),
        ("no_such_module:make", "no module 'no_such_module'.*not a model name \\(cnn, hf, linear"),
        ("collections:OrderedDict", "returned a OrderedDict, not a torch.nn.Module"),
        ("collections.abc:Sized", "calling collections.abc:Sized failed: TypeError"),
    ],
)
def test_bad_model_specs_raise_spec_errors(spec, message):
    with pytest.raises(SpecError, match=message):
        build_model(spec)


def test_factory_that_returns_no_module_is_refused():
    with pytest.raises(SpecError, match="returned a str, not a torch.nn.Module"):
        build_model("os.path:basename:p=x")

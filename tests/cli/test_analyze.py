"""``flatscope analyze``: every checkpoint layout gives the Python API's numbers; every bad input
is one line on stderr, exit status 2, no traceback and no output; a killed run resumes.

True subprocess runs (``python -m flatscope``) are started side by side where possible, since
each pays for importing torch; the many error cases run in-process through ``cli.main``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flatscope.app.analyze import analyze
from flatscope.cli import build_parser, main
from flatscope.data import load_data
from flatscope.io import Report, save_checkpoint
from flatscope.metrics import AnalysisSettings
from flatscope.models import build_model, model_spec

SPEC = "mlp:hidden=8,depth=1"
SETTINGS = {
    "num_matvecs": 6,
    "top_k": 2,
    "density_steps": 4,
    "density_probes": 2,
    "dtype": "float64",
    "seed": 3,
}
OPTIONS = [
    "--subset", "64", "--batch-size", "32", "--metrics", "trace,eigenvalues,density",
    "--num-matvecs", "6", "--top-k", "2", "--density-steps", "4", "--density-probes", "2",
    "--dtype", "float64", "--seed", "3", "--quiet",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]

USER_PACKAGE = """
import math, os, time
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

def nan_data(split="train"):
    inputs = torch.rand(40, 1, 8, 8)
    inputs[-1, 0, 0, 0] = math.nan
    return inputs, torch.arange(40) % 10

def empty(split="train"):
    return TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))

def broken(split="train"):
    raise RuntimeError("the data server is down")

def slow_loss(outputs, targets):
    if os.path.exists(os.environ.get("SLOW_MARKER", "")):
        time.sleep(0.05)
    return F.cross_entropy(outputs, targets)
"""


class Harmful:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + name: tensor for name, tensor in state.items()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Checkpoints of one set of weights in every layout, a user package, the API's numbers."""
    root = tmp_path_factory.mktemp("analyze")
    model = build_model(SPEC, seed=0)
    state = model.state_dict()
    files = {
        "raw.pt": state,
        "state_dict.pt": {"state_dict": state, "epoch": 3},
        "model_state_dict.pt": {"model_state_dict": state, "optimizer": {"lr": 0.1}},
        "model.pt": {"model": state},
        "net.pt": {"net": state},
        "ema.pt": {"ema": state, "step": 10},
        "custom.pt": {"weights": state, "other": {"x": torch.zeros(2)}},
        "module.pt": prefixed(state, "module."),
        "lightning.pt": {"state_dict": prefixed(state, "model.")},
        "compiled.pt": prefixed(state, "_orig_mod."),
        "ddp_compiled.pt": {"state_dict": prefixed(state, "module._orig_mod.")},
        "pickled_module.pt": model,
        "evil.pt": {"state_dict": state, "hook": Harmful(root / "pwned")},
        "nan.pt": {**state, "1.bias": state["1.bias"].clone().fill_(float("nan"))},
        "inf.pt": {**state, "1.weight": state["1.weight"].clone().fill_(float("inf"))},
    }
    for name, obj in files.items():
        torch.save(obj, root / name)
    other = build_model(SPEC, seed=1)
    torch.save(other.state_dict(), root / "other.pt")
    save_checkpoint(root / "flatscope.pt", model, model_spec=model_spec(SPEC), data_spec="digits")
    from safetensors.torch import save_file

    save_file(state, root / "weights.safetensors")
    torch.jit.script(model).save(str(root / "scripted.pt"))
    raw = (root / "raw.pt").read_bytes()
    (root / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (root / "garbage.pt").write_bytes(bytes(range(256)) * 8)
    (root / "notes.txt").write_text("these are not weights\n")
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "a_file").write_text("")
    (root / "userpkg").mkdir()
    (root / "userpkg" / "__init__.py").write_text("")
    (root / "userpkg" / "custom.py").write_text(USER_PACKAGE)
    sys.path.insert(0, str(root))
    data = load_data("digits", "train", subset=64, seed=3, batch_size=32)
    reference = analyze(
        model, "cross_entropy", data, "trace,eigenvalues,density", progress=False, **SETTINGS
    )
    yield {"root": root, "model": model, "data": data, "metrics": reference.metrics}
    sys.path.remove(str(root))
    for name in [name for name in sys.modules if name.startswith("userpkg")]:
        del sys.modules[name]


def environment(root: Path) -> dict[str, str]:
    paths = [str(REPO), str(root), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "OMP_NUM_THREADS": "1",
    }


def start(root: Path, *argv: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flatscope", *argv],
        cwd=root,
        env=env or environment(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_every_layout_in_subprocesses_gives_the_python_api_numbers(workspace):
    root = workspace["root"]
    runs = {
        "raw": ["raw.pt", "--model", SPEC],
        "flatscope": ["flatscope.pt"],
        "safetensors": ["weights.safetensors", "--model", SPEC],
        "torchscript": ["scripted.pt", "--model", SPEC, "--unsafe-pickle"],
    }
    processes = {
        name: start(root, "analyze", *argv, *OPTIONS, "--out", f"sub_{name}", "--no-figures")
        for name, argv in runs.items()
    }
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}: {stderr}"
        assert stderr == ""
        assert "hessian_trace " in stdout and f"report: sub_{name}/report.json" in stdout
        report = Report.load(root / f"sub_{name}" / "report.json")
        assert report.metrics == workspace["metrics"], name
    flatscope_report = Report.load(root / "sub_flatscope" / "report.json").to_dict()
    assert flatscope_report["model"] == model_spec(SPEC)
    assert flatscope_report["data"]["num_samples"] == 64


@pytest.mark.parametrize(
    "argv",
    [
        ["state_dict.pt"],
        ["model_state_dict.pt"],
        ["model.pt"],
        ["net.pt"],
        ["ema.pt"],
        ["custom.pt", "--checkpoint-key", "weights"],
        ["module.pt"],
        ["lightning.pt"],
        ["compiled.pt"],
        ["ddp_compiled.pt"],
        ["pickled_module.pt", "--unsafe-pickle"],
    ],
    ids=lambda argv: argv[0],
)
def test_nested_prefixed_and_pickled_layouts_in_process(workspace, capsys, argv):
    root = workspace["root"]
    out = root / f"in_{argv[0]}"
    model = [] if argv[0] == "pickled_module.pt" else ["--model", SPEC]
    options = [*model, *OPTIONS, "--metrics", "trace", "--no-figures", "--out", str(out)]
    assert main(["analyze", str(root / argv[0]), *argv[1:], *options]) == 0
    assert capsys.readouterr().err == ""
    report = Report.load(out / "report.json").to_dict()
    assert report["metrics"]["hessian_trace"] == workspace["metrics"]["hessian_trace"]
    if argv[0] == "pickled_module.pt":
        assert report["model"] == "pickled torch.nn.modules.container.Sequential"


def test_a_run_writes_figures_and_prints_the_summary(workspace, capsys):
    root = workspace["root"]
    out = root / "with_figures"
    assert main(["analyze", str(root / "flatscope.pt"), *OPTIONS, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert lines[0] == f"flatscope analysis of {root / 'flatscope.pt'}"
    for name in ("loss", "gradient_norm", "hessian_trace", "top_eigenvalues", "spectral_density"):
        assert any(line.startswith(f"{name} ") for line in lines), name
    assert lines[-1] == f"report: {out / 'report.json'}; figures in {out}"
    stems = ("spectral_density", "eigenvalues", "trace_per_block")
    expected = {f"{stem}.{ext}" for stem in stems for ext in ("png", "pdf")} | {"report.json"}
    assert {p.name for p in out.iterdir()} == expected


def test_a_budget_preset_sets_what_is_not_given_and_the_report_records_both(workspace, capsys):
    root = workspace["root"]
    out = root / "quick"
    options = ["--subset", "64", "--metrics", "trace,density", "--quiet", "--no-figures"]
    argv = [str(root / "flatscope.pt"), *options, "--budget", "quick", "--density-steps", "5"]
    assert main(["analyze", *argv, "--out", str(out)]) == 0
    capsys.readouterr()
    report = Report.load(out / "report.json").to_dict()
    quick = AnalysisSettings(budget="quick")
    assert report["settings"]["budget"] == "quick"
    assert report["settings"]["num_matvecs"] == quick.num_matvecs
    assert report["settings"]["density_steps"] == 5  # given, so it wins over the preset
    assert report["metrics"]["hessian_trace"]["num_matvecs"] == quick.num_matvecs
    assert report["num_params"] == sum(p.numel() for p in build_model(SPEC).parameters())


def test_resume_after_a_partial_run_ends_like_one_run(workspace, capsys):
    root = workspace["root"]
    out = root / "partial"
    common = [str(root / "raw.pt"), "--model", SPEC, *OPTIONS, "--no-figures", "--out", str(out)]
    assert main(["analyze", *common, "--metrics", "trace"]) == 0
    assert set(Report.load(out / "report.json").metrics) == {
        "loss",
        "gradient_norm",
        "hessian_trace",
    }
    assert main(["analyze", *common, "--resume"]) == 0
    assert Report.load(out / "report.json").metrics == workspace["metrics"]
    capsys.readouterr()


def test_a_killed_run_resumes_to_the_uninterrupted_numbers(workspace):
    """SIGKILL once the first metric is on disk; --resume then finishes the same report."""
    root = workspace["root"]
    marker = root / "slow"
    marker.write_text("")
    env = {**environment(root), "SLOW_MARKER": str(marker)}
    argv = ["analyze", "raw.pt", "--model", SPEC, *OPTIONS, "--no-figures", "--out", "killed"]
    argv += [
        "--metrics",
        "trace,density",
        "--density-steps",
        "30",
        "--loss",
        "userpkg.custom:slow_loss",
    ]
    report_path = root / "killed" / "report.json"
    process = start(root, *argv, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (
            report_path.exists()
            and "hessian_trace" in json.loads(report_path.read_text())["metrics"]
        ):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    interrupted = Report.load(report_path).metrics
    assert "hessian_trace" in interrupted and "spectral_density" not in interrupted
    marker.unlink()
    resumed = start(root, *argv, "--resume", env=env)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    final = Report.load(report_path).metrics
    assert final["hessian_trace"] == interrupted["hessian_trace"]
    whole = analyze(
        workspace["model"],
        "userpkg.custom:slow_loss",
        workspace["data"],
        "trace,density",
        progress=False,
        **{**SETTINGS, "density_steps": 30},
    )
    assert final == whole.metrics


def fails(capsys, argv: list[str], message: str) -> None:
    """The command exits with 2 and one line on stderr that contains ``message``."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("flatscope: error: ") and captured.err.count("\n") == 1
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err


MODEL = ["--model", SPEC]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.pt", *MODEL], "checkpoint file not found"),
        ([".", *MODEL], "is a directory, not a checkpoint file"),
        (["truncated.pt", *MODEL], "truncated or corrupt"),
        (["garbage.pt", *MODEL], "is not a readable PyTorch checkpoint"),
        (["notes.txt", *MODEL], "it looks like a text file"),
        (["photo.png", *MODEL], "it looks like a PNG image"),
        (["evil.pt", *MODEL], "which safe loading refuses; load it with --unsafe-pickle"),
        (["pickled_module.pt"], "safe loading refuses"),
        (["raw.pt", "--model", "cnn:width=2"], "the checkpoint does not fit the model"),
        (["raw.pt", "--model", "mlp:hidden=4,depth=1"], "shape mismatches (1.weight: checkpoint"),
        (["nan.pt", *MODEL], "weight '1.bias' holds 8 NaN"),
        (["inf.pt", *MODEL], "weight '1.weight' holds 0 NaN and 512 Inf"),
        (
            [
                "raw.pt",
                *MODEL,
                "--data",
                "userpkg.custom:nan_data",
                "--subset",
                "all",
                "--batch-size",
                "32",
            ],
            "loss on the data is nan",
        ),
        (["raw.pt", "--model", "transformer"], "unknown model 'transformer'; choose one of"),
        (["raw.pt", *MODEL, "--data", "imagenet"], "unknown data 'imagenet'"),
        (["raw.pt", *MODEL, "--metrics", "trace,flatness"], "unknown metric 'flatness'"),
        (["raw.pt", "--model", "nosuch.pkg:make"], "cannot import module 'nosuch.pkg'"),
        (["raw.pt", *MODEL, "--data", "userpkg.custom:broken"], "the data server is down"),
        (["raw.pt", *MODEL, "--data", "userpkg.custom:empty"], "has no samples"),
        (["raw.pt", *MODEL, "--subset", "5000"], "subset must be an integer in 1..1079"),
        (["raw.pt", *MODEL, "--loss", "hinge"], "unknown loss 'hinge'"),
        (["raw.pt", *MODEL, "--top-k", "0"], "top_k (--top-k) must be an integer >= 1"),
        (["raw.pt", *MODEL, "--budget", "fast"], "unknown budget (--budget) 'fast'; choose one"),
        (["raw.pt", *MODEL, "--params", "conv*"], "'conv*' matches no parameter"),
        (["raw.pt", *MODEL, "--out", "a_file/report"], "a_file is a file, not a directory"),
        (["raw.pt"], "does not say which model it holds; pass --model"),
        (["scripted.pt", "--unsafe-pickle"], "a TorchScript archive cannot be differentiated"),
        (["scripted.pt", *MODEL], "is a TorchScript archive, which contains code"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(workspace, capsys, monkeypatch, argv, message):
    root = workspace["root"]
    monkeypatch.chdir(root)
    before = {p.name for p in root.iterdir()}
    extra = [] if "--out" in argv else ["--out", "never"]
    fails(capsys, ["analyze", *argv, "--quiet", *extra], message)
    assert {p.name for p in root.iterdir()} == before
    assert not (root / "pwned").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_before_loading(workspace, capsys):
    root = workspace["root"]
    fails(capsys, ["analyze", "missing.pt", *MODEL, "--device", "cuda"], "no CUDA GPU is available")
    assert not (root / "missing-analysis").exists()


def test_resume_against_another_checkpoint_or_settings_is_refused(workspace, capsys):
    root = workspace["root"]
    out = root / "guarded"
    common = [*MODEL, *OPTIONS, "--metrics", "trace", "--no-figures", "--out", str(out)]
    assert main(["analyze", str(root / "raw.pt"), *common]) == 0
    capsys.readouterr()
    before = (out / "report.json").read_bytes()
    fails(capsys, ["analyze", str(root / "other.pt"), *common, "--resume"], "checkpoint.sha256")
    fails(
        capsys,
        ["analyze", str(root / "raw.pt"), *common, "--resume", "--seed", "4"],
        "settings.seed: 3 in the report, 4 now",
    )
    assert (out / "report.json").read_bytes() == before


def test_every_setting_is_an_option_whose_help_quotes_the_api_default():
    parser = build_parser()
    analyze_parser = parser._subparsers._group_actions[0].choices["analyze"]
    options = {action.dest: action for action in analyze_parser._actions}
    for field in dataclasses.fields(AnalysisSettings):
        action = options[field.name]
        assert action.default is argparse.SUPPRESS  # the API's default applies
        if field.default is not None:
            assert action.help.endswith(f"default {field.default})")

"""flatscope.app.analyze: report numbers against dense float64 Hessians, resume, refusals."""

from __future__ import annotations

import copy
import io
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, hessian

from flatscope.app.analyze import analyze, analyze_checkpoint, compute_order, summary
from flatscope.data import load_data
from flatscope.errors import OutputError, ReportError
from flatscope.io import save_checkpoint
from flatscope.linalg import diagonal
from flatscope.metrics import AnalysisError, AnalysisSettings, entries_of, parse_metrics
from flatscope.metrics import diagonal as diagonal_metric
from flatscope.metrics import sharpness as sharpness_metric
from flatscope.metrics.settings import BUDGETS
from flatscope.models import build_model
from flatscope.operators.params import flatten, unflatten

# the module, even once flatscope/__init__.py exports the function of the same name


SPEC = "mlp:in_features=4,hidden=3,depth=1,num_classes=3,activation=tanh"
D = 4 * 3 + 3 + 3 * 3 + 3  # parameters of SPEC
FAST = {"num_matvecs": 6, "density_steps": 4, "density_probes": 2, "top_k": 2}


@pytest.fixture(scope="module")
def problem():
    """A tiny tanh MLP, two batches of 12 samples, and its dense float64 Hessian."""
    model = build_model(SPEC, seed=0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 4, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    reference = copy.deepcopy(model).double()
    like = {name: p.detach() for name, p in reference.named_parameters()}

    def mean_loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(reference, unflatten(w, like), (x.double(),)), y)

    w = flatten(like.values())
    dense = {"H": hessian(mean_loss)(w), "loss": mean_loss(w), "grad": grad(mean_loss)(w)}
    return model, batches, dense


def run(problem, metrics, **kwargs):
    model, batches, _ = problem
    kwargs.setdefault("progress", False)
    return analyze(model, "cross_entropy", batches, metrics, **kwargs)


def test_numbers_match_the_dense_hessian(problem):
    model, batches, dense = problem
    H = dense["H"]
    report = run(
        problem,
        "trace,eigenvalues,density,diagonal",
        dtype="float64",
        num_matvecs=3 * D,
        top_k=3,
        bottom_k=2,
        eig_tol=1e-12,
        density_steps=D,
    )
    metrics = report.metrics
    assert metrics["loss"] == pytest.approx(float(dense["loss"]), rel=1e-12)
    assert metrics["gradient_norm"] == pytest.approx(float(dense["grad"].norm()), rel=1e-10)
    # The eigen search grows to min(num_matvecs / 2, d) = d vectors: the whole space, so the
    # deflated trace is exact, per block too; the pair spends num_matvecs products.
    trace = metrics["hessian_trace"]
    assert trace["value"] == pytest.approx(float(H.trace()), rel=1e-10)
    assert trace["deflation"]["subspace"] == D
    assert trace["deflation"]["num_matvecs"] == metrics["top_eigenvalues"]["num_matvecs"] == D
    assert trace["num_matvecs"] + D == trace["deflation"]["total_matvecs"] == 3 * D
    blocks = {"1.weight": slice(0, 12), "1.bias": slice(12, 15), "3.weight": slice(15, 24)}
    for name, block in blocks.items():
        assert trace["per_block"][name][0] == pytest.approx(
            float(H[block, block].trace()), abs=1e-9
        )
    exact = torch.linalg.eigvalsh(H)
    for name, expected in (
        ("top_eigenvalues", exact.flip(0)[:3]),
        ("bottom_eigenvalues", exact[:2]),
    ):
        entry = metrics[name]
        assert entry["converged"]
        errors = (torch.tensor(entry["values"], dtype=torch.float64) - expected).abs()
        assert (errors <= torch.tensor(entry["residuals"]) + 1e-12).all(), name
    # SLQ with d steps: every node carrying weight is an eigenvalue of H.
    density = metrics["spectral_density"]
    nodes = torch.tensor(density["nodes"], dtype=torch.float64)
    weights = torch.tensor(density["weights"], dtype=torch.float64)
    gaps = (nodes[weights > 1e-10][:, None] - exact).abs().min(1).values
    assert gaps.max() < 1e-8
    assert weights.sum(1).tolist() == pytest.approx([1.0, 1.0])
    # The diagonal: the same seeded probes on the dense matrix give the same estimate.
    reference = diagonal(H, 3 * D, seed=0)
    entry = metrics["hessian_diagonal"]
    torch.testing.assert_close(torch.tensor(entry["values"], dtype=torch.float64), reference.values)
    assert entry["sum"] == pytest.approx(float(reference.values.sum()))
    assert entry["per_block"]["1.bias"]["max"] == pytest.approx(
        float(reference.values[12:15].max())
    )


def test_large_diagonals_keep_the_summary_only(problem, monkeypatch):
    monkeypatch.setattr(diagonal_metric, "DIAGONAL_FULL_LIMIT", D - 1)
    entry = run(problem, "diagonal", **FAST).metrics["hessian_diagonal"]
    assert "values" not in entry and "stderr" not in entry
    assert entry["dimension"] == D and set(entry["per_block"]) == {
        "1.weight",
        "1.bias",
        "3.weight",
        "3.bias",
    }


def test_same_seed_same_numbers_and_another_seed_other_numbers(problem):
    first = run(problem, "trace,eigenvalues,density", seed=3, **FAST).metrics
    again = run(problem, "trace,eigenvalues,density", seed=3, **FAST).metrics
    other = run(problem, "trace", seed=4, **FAST).metrics
    assert first == again
    assert other["hessian_trace"]["value"] != first["hessian_trace"]["value"]


def test_resume_computes_only_the_missing_metrics_and_ends_like_one_run(problem, tmp_path):
    partial = run(problem, "density", out=tmp_path / "resumed", figures=False, **FAST)
    density_seconds = partial.timings["spectral_density"]
    resumed = run(problem, "all", out=tmp_path / "resumed", resume=True, figures=False, **FAST)
    whole = run(problem, "all", out=tmp_path / "whole", figures=False, **FAST)
    assert resumed.metrics == whole.metrics
    assert resumed.timings["spectral_density"] == density_seconds  # kept, not recomputed
    on_disk = json.loads((tmp_path / "resumed" / "report.json").read_text())
    assert on_disk["metrics"] == whole.metrics
    everything = entries_of(parse_metrics("all"), AnalysisSettings(**FAST))
    assert sorted(on_disk["metrics"]) == sorted(everything)
    assert list(whole.metrics) == compute_order(everything)
    assert {"hessian_trace", "top_eigenvalues", "spectral_density", "sharpness"} < set(everything)


def test_resume_refuses_other_settings_or_other_weights(problem, tmp_path):
    model, batches, _ = problem
    run(problem, "trace", out=tmp_path, figures=False, **FAST)
    before = (tmp_path / "report.json").read_bytes()
    with pytest.raises(ReportError, match=r"settings\.seed: 0 in the report, 1 now"):
        run(problem, "trace", out=tmp_path, resume=True, seed=1, **FAST)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed[1].bias.add_(0.1)
    with pytest.raises(ReportError, match=r"checkpoint\.sha256"):
        analyze(changed, "cross_entropy", batches, "trace", out=tmp_path, resume=True, **FAST)
    assert (tmp_path / "report.json").read_bytes() == before


def test_sharpness_is_the_landscape_functions_on_the_same_inputs(problem):
    from flatscope.landscape.sharpness import average_sharpness, worst_case_sharpness
    from flatscope.objective import Objective

    model, batches, _ = problem
    entry = run(problem, "sharpness", dtype="float64", sharpness_sigma=0.02, **FAST).metrics
    objective = Objective(model, F.cross_entropy, batches, device="cpu", dtype=torch.float64)
    average = average_sharpness(
        objective,
        0.02,
        num_samples=sharpness_metric.SHARPNESS_SAMPLES,
        trace_matvecs=FAST["num_matvecs"],
        seed=0,
    )
    worst = worst_case_sharpness(objective, 0.05, steps=sharpness_metric.SHARPNESS_STEPS, seed=0)
    assert entry["sharpness"] == {"average": average.to_dict(), "worst_case": worst.to_dict()}


def test_the_header_describes_the_inputs(problem):
    model, batches, _ = problem
    bundle = load_data("synthetic:n=60,d=4,classes=3", "train", subset=20, seed=2, batch_size=8)
    report = analyze(model, "mse", bundle, "trace", progress=False, params=["1.*"], **FAST)
    document = report.to_dict()
    assert report.path is None
    assert document["model"] == "torch.nn.modules.container.Sequential"
    assert document["checkpoint"]["path"] is None and len(document["checkpoint"]["sha256"]) == 64
    assert document["loss"] == "mse"
    data = document["data"]
    hashes = [data.pop("indices_sha256"), data.pop("labels_sha256")]
    assert data == {
        "spec": bundle.spec,
        "split": "train",
        "split_size": 36,
        "subset": 20,
        "seed": 2,
        "batch_size": 8,
        "label_noise": None,
        "label_noise_seed": None,
        "num_samples": 20,
    }
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)
    assert document["settings"]["params"] == ["1.*"] and document["settings"]["device"] == "cpu"
    assert set(document["metrics"]["hessian_trace"]["per_block"]) == {"1.weight", "1.bias"}


def test_the_header_tells_labels_and_samples_apart(tmp_path):
    """Same noisy labels and samples: the same hashes; another noise seed or subset: others.
    A checkpoint of a run on noisy labels records its noise spec and seed."""
    model = build_model("mlp:in_features=64,hidden=4,depth=1", seed=0)

    def header(**options) -> dict:
        data = load_data("digits", "train", batch_size=64, **options)
        report = analyze(model, "cross_entropy", data, "trace", progress=False, **FAST)
        return report.to_dict()["data"]

    noisy = header(subset=40, seed=1, label_noise="symmetric:rate=0.4,seed=5")
    assert noisy == header(subset=40, seed=1, label_noise="symmetric:rate=0.4,seed=5")
    assert noisy["label_noise"] == "symmetric:rate=0.4,seed=5" and noisy["label_noise_seed"] == 5
    other_labels = header(subset=40, seed=1, label_noise="symmetric:rate=0.4,seed=6")
    assert other_labels["labels_sha256"] != noisy["labels_sha256"]
    assert other_labels["indices_sha256"] == noisy["indices_sha256"]
    other_samples = header(subset=40, seed=2, label_noise="symmetric:rate=0.4,seed=5")
    assert other_samples["indices_sha256"] != noisy["indices_sha256"]
    whole = header()
    assert (whole["subset"], whole["indices_sha256"], whole["split_size"]) == (None, None, 1079)
    text = summary(
        {"checkpoint": {}, "model": "m", "loss": "l", "data": noisy, "metrics": {}, "timings": {}}
    )
    assert "40 of 1,079 samples (seeded subset, seed 1" in text
    assert f"labels: noise symmetric:rate=0.4,seed=5, sha256 {noisy['labels_sha256'][:12]}" in text

    bundle = load_data("digits", "train", label_noise="symmetric:0.4", seed=3)
    save_checkpoint(
        tmp_path / "run.pt",
        model,
        model_spec="mlp:in_features=64,hidden=4,depth=1",
        data_spec="digits",
        extra={"label_noise": bundle.label_noise.spec, "train_labels": bundle.labels},
    )
    report = analyze_checkpoint(tmp_path / "run.pt", "trace", progress=False, **FAST)
    data = report.to_dict()["data"]
    assert (data["label_noise"], data["label_noise_seed"]) == ("symmetric:rate=0.4,seed=3", 3)


class CountingLoss:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.cross_entropy(outputs, targets)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"metrics": "trace,hessian"}, AnalysisError, "unknown metric 'hessian'; choose from"),
        ({"metrics": "trace", "top_k": 0}, AnalysisError, r"top_k \(--top-k\) must be"),
        ({"metrics": "trace", "trace_method": "exact"}, AnalysisError, "unknown trace_method"),
        ({"metrics": "trace", "dtype": "float16"}, AnalysisError, "unknown dtype .* float32"),
        ({"metrics": "trace", "params": ["conv*"]}, AnalysisError, "'conv\\*' matches no"),
        ({"metrics": "trace", "num_probes": 3}, TypeError, "unknown setting"),
        ({"metrics": "trace", "out": "FILE/sub"}, OutputError, "is a file, not a directory"),
    ],
)
def test_bad_inputs_fail_before_any_computation_or_file(problem, tmp_path, kwargs, error, message):
    model, batches, _ = problem
    (tmp_path / "FILE").write_text("not a directory")
    if "out" in kwargs:
        kwargs["out"] = tmp_path / kwargs["out"]
    loss = CountingLoss()
    with pytest.raises(error, match=message):
        analyze(model, loss, batches, progress=False, **kwargs)
    assert loss.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused(problem):
    with pytest.raises(AnalysisError, match="no CUDA GPU is available"):
        run(problem, "trace", device="cuda")


def test_a_non_finite_loss_leaves_no_report(problem, tmp_path):
    model, batches, _ = problem
    (x, y), last = batches
    poisoned = [(x, y), (last[0].clone().index_fill_(1, torch.tensor([2]), math.nan), last[1])]
    with pytest.raises(AnalysisError, match="the loss on the data is nan"):
        analyze(model, "cross_entropy", poisoned, "trace", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_ticks_add_up_to_the_products_spent(problem, monkeypatch):
    monkeypatch.setattr("flatscope.progress.REDRAW_SECONDS", 0.0)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    report = run(problem, "trace,density", progress=True, **FAST)
    lines = [line for line in sys.stderr.getvalue().split("\n") if line]
    finals = {line.split("\r")[-1].split()[0]: line.split("\r")[-1].split()[2] for line in lines}
    assert finals == {
        "hessian_trace": f"{report.metrics['hessian_trace']['num_matvecs']}/6",
        "spectral_density": f"{report.metrics['spectral_density']['num_matvecs']}/8",
    }


def test_summary_lists_every_metric(problem):
    report = run(problem, "trace,eigenvalues,density,diagonal", bottom_k=1, **FAST)
    text = summary(report)
    for name in report.metrics:
        assert f"\n{name} " in text
    assert "(hutchpp, deflated by " in text and "residuals <=" in text


def test_the_bar_moves_per_product_and_the_numbers_are_the_operators(problem, monkeypatch):
    """Hutch++ asks for two columns at a time; on kept graphs they run one by one, with the
    same numbers as the estimator on the operator itself."""
    from flatscope.linalg import trace
    from flatscope.operators import HessianOperator
    from flatscope.progress import Progress

    steps = []
    update = Progress.update
    monkeypatch.setattr(Progress, "update", lambda bar, n=1: (steps.append(n), update(bar, n)))
    report = run(problem, "trace", progress=True, num_matvecs=6)
    assert steps == [1] * 6
    model, batches, _ = problem
    direct = trace(HessianOperator(model, F.cross_entropy, batches), "hutchpp", 6, seed=0)
    assert report.metrics["hessian_trace"]["value"] == direct.value


def test_the_cost_estimate_lists_every_planned_budget(problem, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log, not a terminal
    monkeypatch.setattr("flatscope.metrics.base.ESTIMATE_SECONDS", math.inf)
    run(problem, "trace,eigenvalues,density", progress=True, **FAST)
    assert sys.stderr.getvalue() == ""  # shorter than the threshold: no estimate
    monkeypatch.setattr("flatscope.metrics.base.ESTIMATE_SECONDS", 0.0)
    run(problem, "trace,eigenvalues,density", progress=True, **FAST)
    lines = sys.stderr.getvalue().splitlines()
    assert lines[0].startswith("estimated cost: ")
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    budgets = {"hessian_trace": 6, "top_eigenvalues": 500, "spectral_density": 8}
    assert rows == {**{k: str(v) for k, v in budgets.items()}, "total": "514"}


def test_a_budget_preset_is_recorded_with_the_settings_it_gave(problem):
    report = run(problem, "trace,density", budget="quick", density_steps=5)
    settings = report.to_dict()["settings"]
    assert settings["budget"] == "quick"
    assert (settings["num_matvecs"], settings["density_steps"]) == (30, 5)
    assert report.metrics["hessian_trace"]["num_matvecs"] == 30
    assert (
        report.metrics["spectral_density"]["num_matvecs"] == 5 * BUDGETS["quick"]["density_probes"]
    )


def test_sharpness_takes_the_analysis_trace(problem):
    """With the trace in the same analysis, the second-order prediction (sigma^2 / 2) tr H is
    the hessian_trace entry itself and costs no product of its own."""
    report = run(problem, "trace,sharpness", dtype="float64", sharpness_sigma=0.02, **FAST)
    trace, average = report.metrics["hessian_trace"], report.metrics["sharpness"]["average"]
    assert average["second_order"] == 0.02**2 / 2 * trace["value"]
    assert average["second_order_stderr"] == 0.02**2 / 2 * trace["stderr"]
    assert average["trace_num_matvecs"] == 0 and trace["num_matvecs"] == FAST["num_matvecs"]

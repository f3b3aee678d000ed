"""``flatscope verify``: exit codes, table and JSON, checkpoints analysed as analyze does."""

from __future__ import annotations

import json

import pytest

from flatscope.cli import main
from flatscope.io import Report, save_checkpoint
from flatscope.models.zoo import build_model
from tests._reports import HEADER

MODEL = "mlp:hidden=6,depth=1"
ANALYSIS = [
    "--subset",
    "48",
    "--num-matvecs",
    "9",
    "--eig-max-matvecs",
    "40",
    "--dtype",
    "float64",
    "--quiet",
]


def write_report(path, trace, top, bottom=None, gradient_norm=0.01) -> str:
    report = Report.new(HEADER, path)
    report.set_metric("loss", 0.5, 0.0)
    report.set_metric("gradient_norm", gradient_norm, 0.0)
    report.set_metric("hessian_trace", {"value": trace[0], "stderr": trace[1]}, 0.0)
    scaled = {"value": trace[0] / 10, "stderr": trace[1] / 10}
    report.set_metric("scaled_trace", scaled, 0.0)
    report.set_metric("top_eigenvalues", {"values": [top[0]], "residuals": [top[1]]}, 0.0)
    if bottom is not None:
        report.set_metric(
            "bottom_eigenvalues", {"values": [bottom[0]], "residuals": [bottom[1]]}, 0.0
        )
    return str(path)


@pytest.fixture
def reports(tmp_path):
    return {
        "flat": write_report(tmp_path / "flat.json", (10.0, 0.2), (1.0, 0.01), (-0.01, 0.001)),
        "sharp": write_report(tmp_path / "sharp.json", (20.0, 0.2), (2.0, 0.01)),
        "close": write_report(tmp_path / "close.json", (10.2, 0.2), (2.0, 0.01)),
        "no_bottom": write_report(tmp_path / "no_bottom.json", (10.0, 0.2), (1.0, 0.01)),
    }


def test_claims_that_hold_exit_zero(reports, capsys):
    assert main(["verify", reports["flat"], "--reference", reports["sharp"]]) == 0
    out = capsys.readouterr().out
    assert "verdict: every claim holds" in out
    assert f"vs {reports['sharp']}: trace" in out


def test_overlapping_error_bars_exit_one_with_json(reports, capsys):
    code = main(
        [
            "verify",
            reports["flat"],
            "--reference",
            reports["sharp"],
            "--reference",
            reports["close"],
            "--json",
        ]
    )
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1 and verdict["exit_code"] == 1 and verdict["holds"] is False
    statuses = {(c["reference"], c["name"]): c["status"] for c in verdict["criteria"]}
    assert statuses[(reports["close"], "trace")] == "not established"
    assert statuses[(reports["sharp"], "trace")] == "pass"
    assert verdict["settings"]["z_critical"] == pytest.approx(1.6448536, rel=1e-6)


def test_report_without_bottom_eigenvalues_is_not_established(reports, capsys):
    assert main(["verify", reports["no_bottom"]]) == 1
    out = capsys.readouterr().out
    assert "minimum: negative curvature" in out and "--bottom-k 1" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--confidence", "1.5"], "--confidence"),
        (["--grad-tol", "-1"], "--grad-tol"),
        (["--reference", "missing.pt"], "not found: missing.pt"),
        (["--num-matvecs", "1"], "--num-matvecs"),
    ],
)
def test_bad_input_exits_two_with_one_line(reports, capsys, extra, message):
    assert main(["verify", reports["flat"], *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_files_exit_two(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["verify", str(tmp_path / "broken.json")]) == 2
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "not valid JSON" in err[0] and "is a directory" in err[1]


def make_checkpoint(path, seed: int) -> str:
    model = build_model(MODEL, seed=seed)
    save_checkpoint(path, model, model_spec=MODEL, data_spec="digits")
    return str(path)


def test_checkpoint_is_analysed_as_analyze_does_and_is_not_flatter_than_itself(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "model.pt", seed=0)
    args = [checkpoint, "--reference", checkpoint, *ANALYSIS, "--json"]
    assert main(["verify", *args]) == 1
    verdict = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in verdict["criteria"]}
    # the same weights, data and seed: identical numbers on both sides, never a claim
    assert by_name["trace"]["status"] == "not established"
    assert by_name["trace"]["numbers"]["z"] == 0.0
    assert by_name["top_eigenvalue"]["status"] == "not established"
    assert by_name["scaled_trace"]["status"] == "not established"
    assert by_name["scaled_trace"]["numbers"]["z"] == 0.0

    out = tmp_path / "analysis"
    analyze_args = [checkpoint, "--metrics", "trace,eigenvalues", "--top-k", "1", "--bottom-k", "1"]
    assert main(["analyze", *analyze_args, *ANALYSIS, "--out", str(out)]) == 0
    capsys.readouterr()
    report = Report.load(out / "report.json").metrics
    assert by_name["gradient"]["numbers"]["gradient_norm"] == report["gradient_norm"]
    assert by_name["trace"]["numbers"]["value"] == report["hessian_trace"]["value"]
    low, high = by_name["negative_curvature"]["numbers"]["lambda_min"]
    bottom = report["bottom_eigenvalues"]
    assert high == bottom["values"][0] and low == high - bottom["residuals"][0]


def test_a_checkpoint_verdict_states_its_scope(reports, capsys):
    assert main(["verify", reports["flat"], "--reference", reports["sharp"]]) == 0
    out = capsys.readouterr().out
    assert "scope: single checkpoints: each 'vs' test covers the estimators' noise only" in out
    assert "verdict: every claim holds: a minimum; lower than" in out


def write_runs(folder, name: str, traces: list[float], **header) -> None:
    for seed, trace in enumerate(traces):
        run = folder / f"{name}-seed{seed}"
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("")
        (run / "analysis").mkdir()
        write_report(run / "analysis" / "report.json", (trace, 0.2), (trace / 10, 0.01))
        if header:
            document = json.loads((run / "analysis" / "report.json").read_text())
            document["data"].update(header)
            (run / "analysis" / "report.json").write_text(json.dumps(document))


def test_groups_of_runs_are_verified_over_seeds(tmp_path, capsys):
    write_runs(tmp_path, "fsgld", [100.0, 110.0, 95.0])
    write_runs(tmp_path, "sgd", [700.0, 760.0, 810.0])
    fsgld, sgd = str(tmp_path / "fsgld-seed*"), str(tmp_path / "sgd-seed*")
    code = main(["verify", "--group", f"fsgld={fsgld}", "--reference-group", f"sgd={sgd}"])
    out = capsys.readouterr().out
    assert code == 1  # the runs' reports have no bottom eigenvalue: no minimum established
    assert "vs sgd: trace" in out and "vs sgd: scaled trace" in out and "(3 seeds)" in out
    assert "scope: groups of runs: each 'vs' test is Welch's one-sided test over seeds" in out
    two = [str(tmp_path / f"fsgld-seed{k}") for k in range(2)]
    assert main(["verify", "--group", "fsgld", *two, "--reference-group", f"sgd={sgd}"]) == 1
    assert "needs at least 3 seeds per side" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "a=x*"], "needs --group and at least one --reference-group"),
        (["--group", "a", "--reference-group", "b=y"], "give NAME=RUN_OR_GLOB"),
        (["model.pt", "--reference-group", "b=y"], "not both"),
        (["--group", "a=nothing-*", "--reference-group", "b=y"], "matches nothing"),
    ],
)
def test_bad_groups_exit_two_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["verify", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_only_flatter_skips_the_minimum_criteria(reports, capsys):
    sharp, flat = reports["sharp"], reports["flat"]
    # the sharp report has no bottom eigenvalue: the minimum side is not established
    assert main(["verify", sharp, "--reference", flat]) == 1
    capsys.readouterr()
    assert main(["verify", flat, "--reference", sharp, "--only", "flatter"]) == 0
    out = capsys.readouterr().out
    assert "gradient" not in out and "negative curvature" not in out
    assert "note: the minimum criteria were not tested" in out


def test_a_reference_of_another_model_is_refused_unless_forced(reports, tmp_path, capsys):
    other = json.loads(open(reports["sharp"]).read())
    other["model"] = "cnn:width=4"
    (tmp_path / "cnn.json").write_text(json.dumps(other))
    argv = ["verify", reports["flat"], "--reference", str(tmp_path / "cnn.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model (" in err and "'cnn:width=4')" in err
    assert "--force" in err and "Traceback" not in err
    assert main([*argv, "--force"]) == 0
    assert "note: forced against" in capsys.readouterr().out

"""Verdicts of flatscope.app.verify on constructed cases whose answers are known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from flatscope.app.analyze import analyze
from flatscope.app.verify import IncomparableReports, verify, verify_groups
from flatscope.errors import FlatscopeError
from flatscope.io.report import to_jsonable
from flatscope.linalg import trace
from flatscope.metrics.criteria import (
    FAIL,
    NOT_ESTABLISHED,
    PASS,
    eigenvalue_interval,
    z_critical,
)
from flatscope.metrics.eigenvalues import check_negative_curvature, compare_top_eigenvalue
from flatscope.metrics.loss import check_gradient
from flatscope.metrics.sharpness import compare_sharpness
from flatscope.metrics.trace import compare_trace

F64 = torch.float64
Z95 = 1.6448536269514722


class Quadratic(nn.Module):
    """Outputs ``0.5 (w - c)^T A (w - c)`` for every sample: with the mean of the outputs as the
    loss, the Hessian is ``A`` and the gradient ``A (w - c)``; ``w`` starts at ``c`` (the
    minimum) unless given, ``c = 1`` so that ``D H D = A`` (``D = diag |w|``) there."""

    def __init__(self, A: torch.Tensor, w: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("c", torch.ones(A.shape[0], dtype=F64))
        self.w = nn.Parameter(self.c.clone() if w is None else w.clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.w - self.c
        return (0.5 * x @ self.A @ x).expand(inputs.shape[0])


def mean_output(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


def with_spectrum(spectrum: list[float], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(
        torch.randn(len(spectrum), len(spectrum), generator=generator, dtype=F64)
    )
    return Q @ torch.diag(torch.tensor(spectrum, dtype=F64)) @ Q.T


def quadratic_report(A: torch.Tensor, w: torch.Tensor | None = None, **settings) -> dict:
    data = (torch.zeros(4, 1, dtype=F64), torch.zeros(4, dtype=F64))
    options = {"dtype": "float64", "top_k": 1, "bottom_k": 1, "num_matvecs": 12, **settings}
    report = analyze(
        Quadratic(A, w),
        mean_output,
        data,
        ("trace", "scaled_trace", "eigenvalues"),
        progress=False,
        figures=False,
        **options,
    )
    return report.to_dict()


SPECTRUM = [10.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01]


# ------------------------------------------------------------- quadratics, end to end


def test_planted_negative_eigenvalue_is_not_a_minimum():
    saddle = quadratic_report(with_spectrum([*SPECTRUM[:-1], -1.0]))
    verdict = verify(saddle)
    gradient, curvature = verdict.criteria
    assert gradient.status == PASS  # w = 0 is a stationary point
    assert curvature.status == FAIL  # lambda_min = -1 < -0.05 * 10
    low, high = curvature.numbers["lambda_min"]
    assert low <= -1.0 <= high
    assert verdict.exit_code == 1 and not verdict.holds


def test_positive_definite_quadratic_is_a_minimum():
    bowl = quadratic_report(with_spectrum(SPECTRUM))
    verdict = verify(bowl)
    assert [c.status for c in verdict.criteria] == [PASS, PASS]
    assert verdict.exit_code == 0


def test_off_the_minimum_the_gradient_fails_at_its_exact_norm():
    A = with_spectrum(SPECTRUM)
    w = torch.full((len(SPECTRUM),), 1.5, dtype=F64)
    criterion = verify(quadratic_report(A, w)).criteria[0]
    exact = float((A @ (w - 1)).norm())
    loss = float(0.5 * (w - 1) @ A @ (w - 1))
    assert criterion.numbers["gradient_norm"] == pytest.approx(exact, rel=1e-12)
    assert criterion.numbers["threshold"] == pytest.approx(0.1 * max(loss, 1.0), rel=1e-12)
    assert criterion.status == (PASS if exact <= 0.1 * max(loss, 1) else FAIL) == FAIL


def test_of_two_quadratics_the_one_with_smaller_trace_is_flatter():
    flat = quadratic_report(with_spectrum(SPECTRUM))
    sharp = quadratic_report(with_spectrum([2 * s for s in SPECTRUM], seed=1))
    forward = verify(flat, {"sharp": sharp})
    assert [c.name for c in forward.criteria[2:]] == ["trace", "scaled_trace", "top_eigenvalue"]
    assert [c.status for c in forward.criteria[2:]] == [PASS, PASS, PASS]
    assert forward.exit_code == 0
    backward = verify(sharp, {"flat": flat})
    assert [c.status for c in backward.criteria[2:]] == [FAIL, FAIL, FAIL]
    assert backward.exit_code == 1


def test_false_claims_of_flatness_stay_at_the_nominal_rate():
    """Two matrices with the same trace: the z-test on Hutch++ estimates may claim "flatter"
    at most about 5% of the time (binomial error bar of the observed rate)."""
    A, B = with_spectrum(SPECTRUM, seed=2), with_spectrum(SPECTRUM, seed=3)
    pairs = 200
    claims = 0
    for seed in range(pairs):
        mine = {"hessian_trace": trace(A, "hutchpp", 12, seed=2 * seed).to_dict()}
        theirs = {"hessian_trace": trace(B, "hutchpp", 12, seed=2 * seed + 1).to_dict()}
        claims += compare_trace(mine, theirs, "B", 0.95).status == PASS
    assert claims / pairs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / pairs)


# ------------------------------------------------------------ the rules, on numbers


def metrics(**entries) -> dict:
    out = {"loss": 0.5, "gradient_norm": 0.01}
    for name, entry in (("trace", "hessian_trace"), ("scaled", "scaled_trace")):
        if name in entries:
            value, stderr = entries.pop(name)
            out[entry] = {"value": value, "stderr": stderr, "method": "hutchpp"}
    for name in ("top", "bottom"):
        if name in entries:
            value, residual = entries.pop(name)
            out[f"{name}_eigenvalues"] = {"values": [value], "residuals": [residual]}
    if "sharpness" in entries:
        value, stderr, sigma = entries.pop("sharpness")
        out["sharpness"] = {"average": {"value": value, "stderr": stderr, "sigma": sigma}}
    out.update(entries)
    return out


def test_z_critical_is_the_normal_quantile():
    assert z_critical(0.95) == pytest.approx(Z95, rel=1e-12)
    assert z_critical(0.5) == pytest.approx(0.0, abs=1e-12)
    for bad in (1.0, 0.4, True, "0.9"):
        with pytest.raises(ValueError, match="--confidence"):
            z_critical(bad)


def test_gradient_threshold_scales_with_the_loss_above_one():
    at = check_gradient(metrics(loss=3.0, gradient_norm=0.3), grad_tol=0.1)
    above = check_gradient(metrics(loss=3.0, gradient_norm=0.3 + 1e-9), grad_tol=0.1)
    small_loss = check_gradient(metrics(loss=0.2, gradient_norm=0.09), grad_tol=0.1)
    assert (at.status, above.status, small_loss.status) == (PASS, FAIL, PASS)
    assert check_gradient({"loss": 1.0}).status == NOT_ESTABLISHED


@pytest.mark.parametrize(
    ("bottom", "top", "status"),
    [
        ((-0.4, 0.05), (10.0, 0.1), PASS),  # lambda_min >= -0.45 >= -0.5 at the worst ends
        ((-0.6, 0.05), (10.0, 0.1), FAIL),  # -0.6 < -0.05 * 10.1 even at the best ends
        ((-0.48, 0.05), (10.0, 0.1), NOT_ESTABLISHED),  # -0.53 < -0.5 but -0.48 > -0.505
        ((2.0, 0.1), (10.0, 0.1), PASS),  # positive definite
    ],
)
def test_negative_curvature_uses_both_eigenvalue_intervals(bottom, top, status):
    assert check_negative_curvature(metrics(bottom=bottom, top=top), 0.05).status == status


def test_without_bottom_eigenvalues_a_minimum_is_not_established():
    criterion = check_negative_curvature(metrics(top=(10.0, 0.1)))
    assert criterion.status == NOT_ESTABLISHED
    assert "--bottom-k" in criterion.detail
    verdict = verify({"metrics": metrics(top=(10.0, 0.1))})
    assert verdict.exit_code == 1


def test_eigenvalue_intervals_are_one_sided_ritz_bounds():
    entry = {"values": [3.0, 5.0, 4.0], "residuals": [0.3, 0.5, 0.4]}
    assert eigenvalue_interval(entry, "largest") == (5.0, 5.5)
    assert eigenvalue_interval(entry, "smallest") == (2.7, 3.0)
    assert eigenvalue_interval({"values": [], "residuals": []}, "largest") is None


@pytest.mark.parametrize(
    ("difference", "status"),
    [
        (Z95 * math.sqrt(2) * (1 + 1e-9), PASS),
        (Z95 * math.sqrt(2) * (1 - 1e-9), NOT_ESTABLISHED),
        (0.0, NOT_ESTABLISHED),
        (-Z95 * math.sqrt(2) * (1 - 1e-9), NOT_ESTABLISHED),
        (-Z95 * math.sqrt(2) * (1 + 1e-9), FAIL),
    ],
)
def test_trace_z_test_at_its_critical_value(difference, status):
    mine = metrics(trace=(100.0, 1.0))
    theirs = metrics(trace=(100.0 + difference, 1.0))
    criterion = compare_trace(mine, theirs, "ref", 0.95)
    assert criterion.status == status
    assert criterion.numbers["z"] == pytest.approx(difference / math.sqrt(2), rel=1e-12)


def test_trace_without_error_bars_is_decided_only_when_exact():
    exact_lower = compare_trace(metrics(trace=(1.0, 0.0)), metrics(trace=(2.0, 0.0)), "r", 0.95)
    exact_equal = compare_trace(metrics(trace=(2.0, 0.0)), metrics(trace=(2.0, 0.0)), "r", 0.95)
    unknown = compare_trace(metrics(trace=(1.0, None)), metrics(trace=(2.0, 0.1)), "r", 0.95)
    assert (exact_lower.status, exact_equal.status) == (PASS, FAIL)
    assert unknown.status == NOT_ESTABLISHED
    assert compare_trace(metrics(), metrics(trace=(2.0, 0.1)), "r", 0.95).status == NOT_ESTABLISHED


@pytest.mark.parametrize(
    ("mine", "theirs", "status"),
    [
        ((10.0, 0.5), (10.6, 0.1), PASS),  # [10, 10.5] below [10.6, 10.7]
        ((10.0, 0.7), (10.6, 0.1), NOT_ESTABLISHED),  # [10, 10.7] overlaps
        ((10.7, 0.1), (10.6, 0.1), FAIL),  # [10.7, 10.8] at or above [10.6, 10.7]
    ],
)
def test_top_eigenvalue_needs_disjoint_intervals(mine, theirs, status):
    criterion = compare_top_eigenvalue(metrics(top=mine), metrics(top=theirs), "ref")
    assert criterion.status == status


def test_sharpness_needs_the_same_sigma_and_separated_errors():
    lower = compare_sharpness(
        metrics(sharpness=(0.01, 0.001, 0.05)), metrics(sharpness=(0.02, 0.001, 0.05)), "r", 0.95
    )
    other_sigma = compare_sharpness(
        metrics(sharpness=(0.01, 0.001, 0.05)), metrics(sharpness=(0.02, 0.001, 0.1)), "r", 0.95
    )
    overlapping = compare_sharpness(
        metrics(sharpness=(0.019, 0.001, 0.05)), metrics(sharpness=(0.02, 0.001, 0.05)), "r", 0.95
    )
    assert (lower.status, other_sigma.status, overlapping.status) == (
        PASS,
        NOT_ESTABLISHED,
        NOT_ESTABLISHED,
    )
    assert "different perturbations" in other_sigma.detail


def test_verdict_holds_only_when_every_criterion_passes():
    subject = {
        "metrics": metrics(trace=(10.0, 0.1), scaled=(1.0, 0.01), top=(1.0, 0.01), bottom=(0, 0.01))
    }
    sharper = {"metrics": metrics(trace=(20.0, 0.1), scaled=(2.0, 0.01), top=(2.0, 0.01))}
    close = {"metrics": metrics(trace=(10.1, 0.1), scaled=(2.0, 0.01), top=(2.0, 0.01))}
    assert verify(subject, {"sharper": sharper}).exit_code == 0
    verdict = verify(subject, {"sharper": sharper, "close": close})
    assert verdict.exit_code == 1
    assert [c.reference for c in verdict.criteria[2:]] == ["sharper"] * 3 + ["close"] * 3
    with_sharpness = verify(subject, [sharper], sharpness=True)
    assert with_sharpness.criteria[-1].status == NOT_ESTABLISHED  # no sharpness measured
    document = json.loads(json.dumps(to_jsonable(verdict.to_dict()), allow_nan=False))
    assert document["holds"] is False
    assert [c["status"] for c in document["criteria"]] == [PASS] * 5 + [NOT_ESTABLISHED, PASS, PASS]
    table = verdict.table()
    for text in ("vs close: trace", "not established", "verdict: the claims do not hold"):
        assert text in table


def test_a_flatter_claim_needs_the_scale_invariant_trace_too():
    """The raw trace is lower but tr(D H D) is not (or was not measured): not established."""
    subject = {"metrics": metrics(trace=(10.0, 0.1), scaled=(2.0, 0.01), top=(1.0, 0.01))}
    rescaled = {"metrics": metrics(trace=(20.0, 0.1), scaled=(2.0, 0.01), top=(2.0, 0.01))}
    verdict = verify(subject, {"r": rescaled})
    statuses = {c.name: c.status for c in verdict.criteria if c.reference == "r"}
    assert statuses["trace"] == PASS and statuses["scaled_trace"] == NOT_ESTABLISHED
    assert verdict.exit_code == 1
    unmeasured = {"metrics": metrics(trace=(20.0, 0.1), top=(2.0, 0.01))}
    verdict = verify({"metrics": metrics(trace=(10.0, 0.1), top=(1.0, 0.01))}, {"r": unmeasured})
    (scaled,) = [c for c in verdict.criteria if c.name == "scaled_trace"]
    assert scaled.status == NOT_ESTABLISHED and "--metrics ...,scaled_trace" in scaled.detail


def test_a_one_checkpoint_verdict_says_it_covers_estimator_noise_only():
    subject = {"metrics": metrics(trace=(10.0, 0.1), scaled=(1.0, 0.01), top=(1.0, 0.01))}
    sharper = {"metrics": metrics(trace=(20.0, 0.1), scaled=(2.0, 0.01), top=(2.0, 0.01))}
    verdict = verify(subject, {"sgd": sharper})
    assert "estimators' noise only" in verdict.table()
    assert "estimators' noise only" in verdict.to_dict()["scope"]


def test_where_verify_says_not_a_minimum_it_does_not_say_minimum():
    steep = {"metrics": metrics(gradient_norm=5.0, trace=(10.0, 0.1), scaled=(1.0, 0.01))}
    steep["metrics"].update(metrics(top=(1.0, 0.01), bottom=(0.5, 0.01)))
    steep["metrics"]["gradient_norm"] = 5.0
    sharper = {"metrics": metrics(trace=(20.0, 0.1), scaled=(2.0, 0.01), top=(2.0, 0.01))}
    verdict = verify(steep, {"sgd": sharper})
    conclusion = verdict.conclusion()
    assert conclusion.startswith("not a minimum (gradient failed)")
    assert "lower than sgd on trace, scaled trace, top eigenvalue" in conclusion
    assert "minimum" not in conclusion.removeprefix("not a minimum")
    assert conclusion in verdict.table().splitlines()[-1]


MLP = {"model": "mlp:hidden=8", "data": {"spec": "digits"}, "num_params": 610}


def test_reports_of_other_splits_and_estimators_are_noted():
    subject = {**MLP, "metrics": metrics(trace=(10.0, 0.1))}
    reference = {**MLP, "metrics": metrics(trace=(20.0, 0.1)), "loss": "mse"}
    notes = verify(subject, {"ref": reference}).notes
    assert any(note.startswith("loss differs") for note in notes)
    reference["metrics"]["hessian_trace"]["method"] = "xtrace"
    notes = verify(subject, {"ref": reference}).notes
    assert any("xtrace, whose error estimate runs low" in note for note in notes)


@pytest.mark.parametrize(
    "change, differs",
    [
        ({"model": "cnn:width=8"}, "model ('mlp:hidden=8' vs 'cnn:width=8')"),
        ({"data": {"spec": "synthetic"}}, "data.spec ('digits' vs 'synthetic')"),
        ({"num_params": 1234}, "num_params (610 vs 1234)"),
        ({"settings": {"params": ["fc.*"]}}, "settings.params (['0.*'] vs ['fc.*'])"),
        # the subject records no curvature: an older report, a Hessian's
        (
            {"settings": {"params": ["0.*"], "curvature": "ggn"}},
            "settings.curvature ('hessian' vs 'ggn')",
        ),
    ],
)
def test_a_reference_of_another_model_or_data_is_refused_unless_forced(change, differs):
    subject = {**MLP, "settings": {"params": ["0.*"]}, "metrics": metrics(trace=(10.0, 0.1))}
    reference = {**subject, **change, "metrics": metrics(trace=(20.0, 0.1))}
    with pytest.raises(IncomparableReports) as refused:
        verify(subject, {"ref": reference})
    message = str(refused.value)
    assert "\n" not in message and differs in message and "--force" in message
    verdict = verify(subject, {"ref": reference}, force=True, only="flatter")
    assert verdict.criteria[0].name == "trace" and verdict.criteria[0].status == PASS
    assert f"forced against ref despite different {differs}" in verdict.notes


def test_a_report_without_a_field_is_compared_on_the_others():
    subject = {**MLP, "metrics": metrics(trace=(10.0, 0.1))}
    older = {"model": MLP["model"], "data": MLP["data"], "metrics": metrics(trace=(20.0, 0.1))}
    assert verify(subject, {"ref": older}, only="flatter").criteria[0].status == PASS
    with pytest.raises(IncomparableReports, match="model"):
        verify(subject, {"ref": {**older, "model": "cnn"}})


def test_only_flatter_tests_just_the_comparisons():
    """A sampler's subject: far from a minimum (gradient and negative curvature fail), yet of
    lower trace and top eigenvalue than the reference."""
    sampler = metrics(trace=(10.0, 0.1), scaled=(1.0, 0.01), top=(1.0, 0.01), bottom=(-0.5, 0.01))
    sampler["gradient_norm"] = 5.0
    reference = metrics(trace=(20.0, 0.1), scaled=(2.0, 0.01), top=(2.0, 0.01))
    full = verify({**MLP, "metrics": sampler}, {"ref": {**MLP, "metrics": reference}})
    assert not full.holds
    assert {c.name for c in full.criteria if c.status == FAIL} == {
        "gradient",
        "negative_curvature",
    }
    only = verify(
        {**MLP, "metrics": sampler}, {"ref": {**MLP, "metrics": reference}}, only="flatter"
    )
    assert only.holds and all(c.reference == "ref" for c in only.criteria)
    assert [c.status for c in only.criteria] == [c.status for c in full.criteria[2:]]
    assert only.settings["only"] == "flatter" and "not tested" in only.notes[0]
    minimum = verify({**MLP, "metrics": sampler}, only="minimum")
    assert [c.name for c in minimum.criteria] == ["gradient", "negative_curvature"]


@pytest.mark.parametrize(
    "only, references, message",
    [
        ("flatter", {}, "--only flatter needs a reference"),
        ("minimum", {"ref": {"metrics": metrics()}}, "--only minimum tests the subject alone"),
        ("both", {}, "unknown --only 'both'; choose one of minimum, flatter"),
    ],
)
def test_an_only_that_leaves_nothing_to_test_is_refused(only, references, message):
    with pytest.raises(FlatscopeError, match=message):
        verify({"metrics": metrics()}, references, only=only)


def test_bad_tolerances_are_refused():
    with pytest.raises(ValueError, match="--grad-tol"):
        verify({"metrics": metrics()}, grad_tol=-1.0)
    with pytest.raises(TypeError, match="report"):
        verify({"no": "metrics"})


# ------------------------------------------------------------------ groups of runs


def run_report(trace: float, scaled: float, top: float, gradient_norm: float = 0.01, **data):
    document = metrics(trace=(trace, 0.1), scaled=(scaled, 0.01), top=(top, 0.01))
    document["gradient_norm"] = gradient_norm
    header = {"data": {"spec": "digits", "num_samples": 64, **data}, "loss": "cross_entropy"}
    return {**header, "metrics": document}


def test_groups_claim_flatter_by_welchs_test_over_seeds():
    flat = [run_report(t, s, e) for t, s, e in ((100, 9, 12), (110, 10, 14), (95, 8, 13))]
    sharp = [run_report(t, s, e) for t, s, e in ((700, 20, 90), (760, 23, 80), (810, 21, 95))]
    verdict = verify_groups(flat, {"sgd": sharp}, name="fsgld")
    claims = {c.name: c for c in verdict.criteria if c.reference == "sgd"}
    assert set(claims) == {"trace", "scaled trace", "top eigenvalue 1"}
    assert {c.status for c in claims.values()} == {PASS}
    trace_claim = claims["trace"]
    assert trace_claim.numbers["seeds"] == [3, 3]
    assert trace_claim.numbers["level"] == pytest.approx(0.9)
    assert trace_claim.numbers["p_lower"] < 0.05 and trace_claim.numbers["interval"][1] < 1
    assert "Welch t =" in trace_claim.detail and "Fieller interval" in trace_claim.detail
    minimum = [c for c in verdict.criteria if c.reference is None]
    assert [(c.name, c.status) for c in minimum] == [
        ("gradient", PASS),
        ("negative_curvature", NOT_ESTABLISHED),  # the runs' reports have no bottom eigenvalue
    ]
    assert "Welch's one-sided test over seeds" in verdict.table()
    backward = verify_groups(sharp, {"fsgld": flat}, name="sgd")
    assert {c.status for c in backward.criteria if c.reference} == {FAIL}


def test_groups_refuse_a_verdict_with_too_few_seeds_or_other_data():
    flat = [run_report(100 + k, 9, 12) for k in range(3)]
    sharp = [run_report(700 + k, 20, 90) for k in range(3)]
    few = verify_groups(flat[:2], {"sgd": sharp})
    for claim in (c for c in few.criteria if c.reference):
        assert claim.status == NOT_ESTABLISHED and "at least 3 seeds per side" in claim.detail
    other = [run_report(700 + k, 20, 90, spec="synthetic") for k in range(3)]
    refused = verify_groups(flat, {"sgd": other})
    claims = [c for c in refused.criteria if c.reference]
    assert all(c.status == NOT_ESTABLISHED and "--force" in c.detail for c in claims)
    forced = verify_groups(flat, {"sgd": other}, force=True)
    assert {c.status for c in forced.criteria if c.reference} == {PASS}
    assert any("forced despite different data: data.spec differs" in n for n in forced.notes)
    steep = [run_report(100 + k, 9, 12, gradient_norm=1.0 if k else 0.01) for k in range(3)]
    gradient = verify_groups(steep, {"sgd": sharp}).criteria[0]
    assert gradient.status == FAIL and gradient.measured == "1 of 3 runs pass"


def test_groups_of_other_curvatures_are_refused_unless_forced():
    """Hessian runs (recorded, or implied by reports without the field) against GGN runs."""
    flat = [run_report(100 + k, 9, 12) for k in range(3)]
    flat[0]["settings"] = {"curvature": "hessian"}
    ggn = [{**run_report(700 + k, 20, 90), "settings": {"curvature": "ggn"}} for k in range(3)]
    refused = verify_groups(flat, {"sgd": ggn})
    claims = [c for c in refused.criteria if c.reference]
    assert all(c.status == NOT_ESTABLISHED and "curvatures" in c.detail for c in claims)
    assert all("settings.curvature differs" in c.detail for c in claims)
    assert not verify_groups(flat, {"sgd": [run_report(700 + k, 20, 90) for k in range(3)]}).notes

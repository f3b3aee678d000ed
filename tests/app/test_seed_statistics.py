"""flatscope.app.seed_statistics: Welch's test against scipy, Fieller's interval as the
inversion of Welch's test, refusals."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from flatscope.app.seed_statistics import MIN_SEEDS, fieller_interval, seed_test, welch_test


def samples(seed: int, n: int, m: int, shift: float = 0.0) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    a = [rng.gauss(10.0 + shift, 1.0) for _ in range(n)]
    b = [rng.gauss(10.0, 3.0) for _ in range(m)]
    return a, b


@pytest.mark.parametrize(("n", "m", "shift"), [(3, 3, 0.0), (3, 5, -3.0), (6, 4, 2.0)])
def test_welch_test_is_scipys(n, m, shift):
    a, b = samples(n * m, n, m, shift)
    t, df, p_lower = welch_test(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(reference.statistic, rel=1e-12)
    assert p_lower == pytest.approx(
        stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue, rel=1e-10
    )
    assert 2 * min(p_lower, 1 - p_lower) == pytest.approx(reference.pvalue, rel=1e-10)
    assert min(n, m) - 1 <= df <= n + m - 2


@pytest.mark.parametrize("seed", range(4))
def test_fieller_interval_ends_where_welchs_test_of_the_ratio_is_at_its_level(seed):
    """At each end rho, Welch's two-sided test of mean(a) = rho mean(b) has p = 1 - level."""
    a, b = samples(seed, 4, 3, shift=-4.0)
    low, high = fieller_interval(a, b, 0.95)
    assert low < (sum(a) / 4) / (sum(b) / 3) < high
    for rho in (low, high):
        p = stats.ttest_ind(a, [rho * x for x in b], equal_var=False).pvalue
        assert p == pytest.approx(0.05, abs=1e-8)


def test_the_interval_excludes_one_exactly_when_welchs_test_rejects():
    disagreements = 0
    for seed in range(300):
        a, b = samples(seed, 3, 3, shift=random.Random(seed).uniform(-6, 6))
        result = seed_test("trace", a, b, 0.95)
        low, high = result.interval
        disagreements += (low > 1 or high < 1) != (result.p_two_sided < 0.05)
    assert disagreements == 0


def test_a_reference_mean_near_zero_gives_an_unbounded_interval():
    """With mean(b) indistinguishable from 0, large ratios cannot be excluded; with both means
    indistinguishable from 0 no ratio can."""
    low, high = fieller_interval([1.0, 1.2, 0.9], [0.5, -0.4, 0.1], 0.95)
    assert 0 < low < (31 / 30) / (0.2 / 3) and high == math.inf
    assert fieller_interval([0.1, -0.2, 0.15], [0.5, -0.4, 0.1], 0.95) == (-math.inf, math.inf)


def test_fewer_than_three_seeds_per_side_are_refused():
    result = seed_test("trace", [1.0, 2.0], [3.0, 4.0, 5.0])
    assert MIN_SEEDS == 3
    assert result.refused is not None and "at least 3 seeds per side" in result.refused
    assert result.interval is None and result.p_two_sided is None
    assert result.ratio == pytest.approx(1.5 / 4.0) and result.seeds == (2, 3)
    forced = seed_test("trace", [1.0, 2.0, 1.5], [3.0, 4.0, 5.0], refuse="other data")
    assert forced.refused == "other data" and forced.p_two_sided is None
    with pytest.raises(ValueError, match="finite"):
        seed_test("trace", [1.0, math.nan, 2.0], [3.0, 4.0, 5.0])

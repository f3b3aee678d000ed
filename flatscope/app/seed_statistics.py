"""Optimizer-level statistics over seeds: the ratio of two groups' means and Welch's test.

Each training run (seed) contributes one number per measure, its point estimate. The spread of
these numbers between seeds contains the estimators' noise as well as the run-to-run variation,
so the statistics below cover both (a one-checkpoint z-test covers the first only).

For groups ``A`` (``n_a`` runs, mean ``a``, sample variance ``s_a^2``) and ``B``:

- **Welch's t-test** (Welch, Biometrika 1947) of ``mu_A = mu_B``:
  ``t = (a - b) / sqrt(v_a + v_b)``, ``v = s^2 / n``, with the Welch–Satterthwaite degrees of
  freedom ``nu = (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))``. It does not assume
  equal variances, which matters here: a sharper optimizer's traces spread more.
- **The ratio of means** ``r = a / b`` with **Fieller's interval** (Fieller, JRSS B 1954): the
  set of ``rho`` for which Welch's test of ``mu_A = rho mu_B`` does not reject,
  ``(a - rho b)^2 <= t_q(nu(rho))^2 (v_a + rho^2 v_b)``, ``nu(rho)`` Welch's degrees of freedom
  of ``A`` against ``rho B``. At ``rho = 1`` this is Welch's test itself, so the interval
  excludes 1 exactly when the test rejects. It is unbounded when ``b`` cannot be told from 0.

Why these: with 3 to 5 seeds a bootstrap has only 10 to 126 distinct resamples and its
intervals are too short; an exact permutation test of 3 against 3 seeds has 20 splits, so its
smallest two-sided p-value is 0.1 and it can never reject at 5%. A log-scale interval would be
for the ratio of geometric means; the tables report the ratio of arithmetic means, for which
Fieller's interval is exact under normality. The price: Welch's test assumes per-seed values
that are roughly normal within each group.

With fewer than :data:`MIN_SEEDS` runs on a side no verdict is given: with two seeds the
variance has one degree of freedom, ``t_{0.975}(1) = 12.7``, and the test's size depends on
normality far more than with three or more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import optimize, special

from flatscope.io.tables import mean

__all__ = ["MIN_SEEDS", "SeedTest", "fieller_interval", "seed_test", "welch_test"]

#: The fewest runs per side for an optimizer-level verdict.
MIN_SEEDS = 3


def _mean_and_squared_error(values: Sequence[float]) -> tuple[float, float]:
    """The mean and ``s^2 / n``, the squared standard error of the mean (``n >= 2``)."""
    n = len(values)
    centre = math.fsum(values) / n
    return centre, math.fsum((v - centre) ** 2 for v in values) / ((n - 1) * n)


def _sd(values: Sequence[float]) -> float:
    """The sample standard deviation, NaN for one value."""
    return (
        math.sqrt(_mean_and_squared_error(values)[1] * len(values)) if len(values) > 1 else math.nan
    )


def _welch_df(va: float, vb: float, na: int, nb: int) -> float:
    """Welch–Satterthwaite degrees of freedom of ``v_a + v_b`` (infinite when both are 0)."""
    denominator = va**2 / (na - 1) + vb**2 / (nb - 1)
    return math.inf if denominator == 0 else (va + vb) ** 2 / denominator


def welch_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's test of ``mean(a) = mean(b)``: ``(t, nu, p_lower)``, where ``p_lower`` is the
    one-sided p-value of ``mean(a) < mean(b)`` (the two-sided one is
    ``2 min(p_lower, 1 - p_lower)``). Needs two values per side."""
    (ma, va), (mb, vb) = _mean_and_squared_error(a), _mean_and_squared_error(b)
    difference = ma - mb
    if va + vb == 0:  # no spread at all: the means are equal or differ beyond any noise
        t = 0.0 if difference == 0 else math.copysign(math.inf, difference)
        return t, math.inf, 0.5 if difference == 0 else float(difference > 0)
    t = difference / math.sqrt(va + vb)
    nu = _welch_df(va, vb, len(a), len(b))
    return t, nu, float(special.stdtr(nu, t))


def fieller_interval(a: Sequence[float], b: Sequence[float], level: float) -> tuple[float, float]:
    """The two-sided ``level`` Fieller interval of ``mean(a) / mean(b)`` that inverts Welch's
    test (module docs); ``-inf`` or ``inf`` where it is unbounded.

    Raises:
        ValueError: ``mean(b)`` is 0, or a side has fewer than two values.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Fieller's interval needs at least two values per side")
    (ma, va), (mb, vb) = _mean_and_squared_error(a), _mean_and_squared_error(b)
    if mb == 0:
        raise ValueError("the ratio of means is undefined: the reference mean is 0")
    ratio = ma / mb
    if va + vb == 0:
        return ratio, ratio
    quantile = 0.5 + level / 2

    def excess(rho: float) -> float:
        spread = va + rho**2 * vb
        nu = _welch_df(va, rho**2 * vb, len(a), len(b))
        critical = special.ndtri(quantile) if math.isinf(nu) else special.stdtrit(nu, quantile)
        return (ma - rho * mb) ** 2 - critical**2 * spread

    def edge(direction: float) -> float:
        step = 1e-3 * max(abs(ratio), math.sqrt(va + vb) / abs(mb))
        inside = ratio
        for doubling in range(80):
            candidate = ratio + direction * step * 2.0**doubling
            # visit rho = 1 on the way, so that the interval holds 1 iff Welch's test accepts
            if (inside - 1) * (candidate - 1) < 0 and excess(1.0) > 0:
                candidate = 1.0
            if excess(candidate) > 0:
                low, high = sorted((inside, candidate))
                return optimize.brentq(excess, low, high, xtol=1e-12 * max(1.0, abs(ratio)))
            inside = candidate
        return direction * math.inf

    return edge(-1.0), edge(1.0)


@dataclass(frozen=True)
class SeedTest:
    """One measure of two groups of runs, compared over seeds.

    Attributes:
        measure: the row name (``"trace"``, ``"scaled trace"``, ...).
        values, reference_values: the per-seed values of the group and of the reference group.
        mean, sd, reference_mean, reference_sd: their means and sample standard deviations.
        ratio: ``mean / reference_mean`` (``None`` when the reference mean is 0).
        interval: Fieller's interval of the ratio at ``level`` (``None`` when refused).
        level: the two-sided level of the interval.
        t, df: Welch's statistic and degrees of freedom (``None`` when refused).
        p_lower: one-sided p-value of ``mean < reference mean``.
        p_two_sided: two-sided p-value of ``mean != reference mean``.
        refused: why no verdict is given (too few seeds), else ``None``.
    """

    measure: str
    values: list[float]
    reference_values: list[float]
    mean: float
    sd: float
    reference_mean: float
    reference_sd: float
    ratio: float | None
    interval: tuple[float, float] | None
    level: float
    t: float | None
    df: float | None
    p_lower: float | None
    p_two_sided: float | None
    refused: str | None

    @property
    def seeds(self) -> tuple[int, int]:
        """The number of runs on each side."""
        return len(self.values), len(self.reference_values)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}


def _refusal(n: int, m: int) -> str | None:
    if min(n, m) >= MIN_SEEDS:
        return None
    return (
        f"{n} and {m} runs: an optimizer-level verdict needs at least {MIN_SEEDS} seeds per "
        "side (with fewer the spread between seeds cannot be estimated reliably)"
    )


def seed_test(
    measure: str,
    values: Sequence[float],
    reference_values: Sequence[float],
    level: float = 0.95,
    refuse: str | None = None,
) -> SeedTest:
    """Compare one measure of two groups of runs (module docs): the ratio of means with its
    two-sided ``level`` Fieller interval and Welch's p-values, or a refusal with fewer than
    :data:`MIN_SEEDS` runs on a side or for the reason ``refuse``.

    Raises:
        ValueError: an empty side or a ``level`` outside ``(0, 1)``.
    """
    if not values or not reference_values:
        raise ValueError(f"{measure}: each side needs at least one run")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    values, reference_values = [float(v) for v in values], [float(v) for v in reference_values]
    if not all(math.isfinite(v) for v in values + reference_values):
        raise ValueError(f"{measure}: the per-seed values must be finite numbers")
    reference_mean = mean(reference_values)
    ratio = None if reference_mean == 0 else mean(values) / reference_mean
    sd, reference_sd = _sd(values), _sd(reference_values)
    refused = _refusal(len(values), len(reference_values)) or refuse
    interval = t = df = p_lower = p_two_sided = None
    if refused is None:
        t, df, p_lower = welch_test(values, reference_values)
        p_two_sided = min(1.0, 2 * min(p_lower, 1 - p_lower))
        if ratio is not None:
            interval = fieller_interval(values, reference_values, level)
    return SeedTest(
        measure,
        values,
        reference_values,
        mean(values),
        sd,
        reference_mean,
        reference_sd,
        ratio,
        interval,
        level,
        t,
        df,
        p_lower,
        p_two_sided,
        refused,
    )

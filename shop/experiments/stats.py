"""Experiment statistics: pure functions over sufficient statistics (no database, no Django).

Every metric is a mean over *visitors* (the unit of randomisation):
- a mean metric (conversion: purchased 0/1; revenue per visitor; add-to-cart 0/1) is summarised by
  ``MeanStat`` (n, sum, sum of squares);
- a ratio metric (rail CTR = clicks / impressions, both summed per visitor) by ``RatioStat``; its
  variance comes from the delta method, which accounts for clicks of one visitor being correlated.

``compare`` gives the relative lift of an arm over the control, mu_arm / mu_control - 1, with a
delta-method 95% CI (the ratio of two independent means), its two-sided p-value, an always-valid
confidence sequence (asymptotic normal mixture, Waudby-Smith et al. 2023, parametrised like
GrowthBook: tuning N, rho from alpha and N) and the visitors per arm a fixed-horizon test needs to
detect the observed effect. ``srm`` checks the visitors per arm against the configured weights.

No verdict below a minimum sample (``MIN_VISITORS_PER_ARM`` visitors and ``MIN_NONZERO_PER_ARM`` visitors
with a non-zero value, e.g. converters or buyers, in each arm): on a handful of visitors the normal
approximation behind every interval here is not to be trusted (a heavy-tailed revenue difference between
14 and 18 visitors once came out "significant"). GrowthBook likewise hides a metric's result until each
variation reaches its minimum sample size (by default 150 conversions); our floor is lower, sized to a
demo shop's traffic, and stated in every such verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import optimize as _scipy_optimize
from scipy import stats as _scipy_stats

ALPHA = 0.05
POWER = 0.8
SRM_ALPHA = 0.001  # GrowthBook, Eppo and Statsig warn below this p-value
SEQUENTIAL_TUNING = 5000  # GrowthBook's default N: the confidence sequence is tightest near N total visitors
MIN_VISITORS_PER_ARM = 100  # below this in either arm: "not enough data yet"
MIN_NONZERO_PER_ARM = 30  # visitors with a non-zero value (converted, bought, added, clicked) in each arm
REVENUE_CAP_PERCENTILE = 0.99  # revenue per visitor is winsorized at this percentile of the buyers' revenue


@dataclass(frozen=True, slots=True)
class MeanStat:
    """Per-visitor values x_i summarised: n visitors, sum x_i, sum x_i^2, and how many x_i are non-zero
    (None: unknown; for a 0/1 metric it is the sum)."""

    n: int
    sum: float
    sum_squares: float
    nonzero: int | None = None

    @classmethod
    def from_values(cls, values) -> MeanStat:
        values = [float(v) for v in values]
        return cls(
            n=len(values),
            sum=sum(values),
            sum_squares=sum(v * v for v in values),
            nonzero=sum(1 for v in values if v != 0),
        )

    @property
    def value(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def unit_variance(self) -> float:
        """Sample variance of one visitor's value (n - 1 denominator)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1))

    @property
    def variance(self) -> float:
        """Variance of the estimate ``value``."""
        return self.unit_variance / self.n if self.n else 0.0


@dataclass(frozen=True, slots=True)
class RatioStat:
    """sum y_i / sum z_i over visitors (e.g. clicks / impressions), with the cross sum for the delta method."""

    n: int
    num: MeanStat
    den: MeanStat
    sum_products: float

    @classmethod
    def from_pairs(cls, pairs) -> RatioStat:
        pairs = [(float(a), float(b)) for a, b in pairs]
        return cls(
            n=len(pairs),
            num=MeanStat.from_values(a for a, _ in pairs),
            den=MeanStat.from_values(b for _, b in pairs),
            sum_products=sum(a * b for a, b in pairs),
        )

    @property
    def value(self) -> float:
        return self.num.sum / self.den.sum if self.den.sum else 0.0

    @property
    def variance(self) -> float:
        """Delta method: Var(Ybar/Zbar) ~ (s_y^2 - 2 R s_yz + R^2 s_z^2) / (n Zbar^2)."""
        if self.n < 2 or self.den.sum == 0:
            return 0.0
        mean_den = self.den.value
        cov = (self.sum_products - self.num.sum * self.den.sum / self.n) / (self.n - 1)
        r = self.value
        var = self.num.unit_variance - 2 * r * cov + r * r * self.den.unit_variance
        return max(0.0, var / (self.n * mean_den * mean_den))

    @property
    def unit_variance(self) -> float:
        return self.variance * self.n

    @property
    def nonzero(self) -> int | None:
        """Visitors with a non-zero numerator (e.g. at least one click)."""
        return self.num.nonzero


Stat = MeanStat | RatioStat


@dataclass(frozen=True, slots=True)
class Comparison:
    """An arm against the control on one metric. Fields are None where the data cannot say (no visitors,
    a control value of zero, no variance yet)."""

    control_value: float
    arm_value: float
    control_n: int
    arm_n: int
    lift: float | None  # relative: arm / control - 1
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    seq_ci_low: float | None
    seq_ci_high: float | None
    visitors_per_arm_needed: int | None  # fixed-horizon sample size per arm for the observed effect
    control_nonzero: int | None = None  # visitors with a non-zero value (None: not known)
    arm_nonzero: int | None = None
    min_visitors: int = MIN_VISITORS_PER_ARM
    min_nonzero: int = MIN_NONZERO_PER_ARM

    @property
    def enough_data(self) -> bool:
        """Both arms reached the minimum sample: a verdict may be given."""
        if min(self.control_n, self.arm_n) < self.min_visitors:
            return False
        return all(k is None or k >= self.min_nonzero for k in (self.control_nonzero, self.arm_nonzero))

    @property
    def more_visitors_for_minimum(self) -> int:
        """About this many more visitors per arm until both reach the minimum sample, at the rates seen so far
        (0 once reached; visitors alone when an arm has no non-zero value yet to project from)."""
        more = max(0, self.min_visitors - min(self.control_n, self.arm_n))
        for n, k in ((self.control_n, self.control_nonzero), (self.arm_n, self.arm_nonzero)):
            if k is not None and 0 < k < self.min_nonzero:
                more = max(more, math.ceil(self.min_nonzero * n / k) - n)
        return more

    @property
    def conclusive(self) -> bool:
        """Significant at one look, on enough data."""
        return self.enough_data and self.significant

    @property
    def significant(self) -> bool:
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)

    @property
    def sequentially_significant(self) -> bool:
        return self.seq_ci_low is not None and (self.seq_ci_low > 0 or self.seq_ci_high < 0)

    @property
    def more_visitors_per_arm(self) -> int | None:
        """About this many more visitors per arm before a fixed-horizon test would detect this effect."""
        if self.visitors_per_arm_needed is None:
            return None
        return max(0, self.visitors_per_arm_needed - min(self.control_n, self.arm_n))


def winsorize_cap(values, *, percentile: float) -> float | None:
    """The value above which a per-visitor value is counted as this value (winsorizing): the ``percentile``
    (0-1, linear interpolation) of the non-zero values, e.g. the revenue of visitors who bought, all arms
    together so that every arm is capped alike (as Statsig computes its percentile over non-zero unit values
    and GrowthBook's percentile capping can ignore zeros). None: no cap (``percentile`` 0 or 1, or no non-zero
    value). One whale order in one arm otherwise decides a revenue comparison on its own: the delta method's
    normal approximation does not hold for a mean dominated by one visitor."""
    if not 0.0 < percentile < 1.0:
        return None
    nonzero = sorted(float(v) for v in values if v)
    if not nonzero:
        return None
    pos = percentile * (len(nonzero) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(nonzero) - 1)
    return nonzero[low] + (nonzero[high] - nonzero[low]) * (pos - low)


def z_critical(alpha: float = ALPHA) -> float:
    return float(_scipy_stats.norm.ppf(1 - alpha / 2))


def relative_lift(*, control: Stat, arm: Stat) -> tuple[float, float] | None:
    """(lift, variance of lift) by the delta method for the ratio of two independent means."""
    mu_c, mu_a = control.value, arm.value
    if control.n == 0 or arm.n == 0 or mu_c == 0:
        return None
    lift = mu_a / mu_c - 1
    variance = arm.variance / mu_c**2 + mu_a**2 * control.variance / mu_c**4
    return lift, variance


def sequential_rho(*, alpha: float = ALPHA, tuning: float = SEQUENTIAL_TUNING) -> float:
    """Mixing parameter of the normal-mixture confidence sequence that is tightest near ``tuning`` samples."""
    if not 0 < alpha < 1 or tuning <= 0:
        raise ValueError("alpha must lie in (0, 1) and tuning be positive")
    log_alpha = math.log(alpha)
    return math.sqrt((-2 * log_alpha + math.log(-2 * log_alpha + 1)) / tuning)


def sequential_halfwidth(
    *, unit_variance: float, n: int, alpha: float = ALPHA, tuning: float = SEQUENTIAL_TUNING
) -> float:
    """Half-width of the two-sided asymptotic confidence sequence after n observations.

    ``unit_variance`` is per observation: for a two-sample estimate with variance SE^2 over
    n = n_arm + n_control visitors pass SE^2 * n.
    """
    if n < 1 or unit_variance <= 0:
        raise ValueError("need n >= 1 and a positive variance")
    rho = sequential_rho(alpha=alpha, tuning=tuning)
    n_rho2_1 = n * rho * rho + 1
    return math.sqrt(unit_variance) * math.sqrt(2 * n_rho2_1 * math.log(math.sqrt(n_rho2_1) / alpha) / (n * rho) ** 2)


def _lift_unit_variance(
    *, control_mean: float, arm_mean: float, control_unit_variance: float, arm_unit_variance: float
) -> float:
    """n x Var(relative lift) for two arms of n visitors each, by the delta method ``relative_lift`` uses:
    s_a^2 / m_c^2 + m_a^2 s_c^2 / m_c^4 (``*_unit_variance``: the variance of one visitor's value)."""
    return arm_unit_variance / control_mean**2 + arm_mean**2 * control_unit_variance / control_mean**4


def sample_size_per_arm(
    *,
    control_mean: float,
    arm_mean: float,
    control_unit_variance: float,
    arm_unit_variance: float,
    alpha: float = ALPHA,
    power: float = POWER,
) -> int | None:
    """Visitors per arm for the lift test this module reports (relative lift m_a / m_c - 1, delta-method
    interval, two-sided at ``alpha``) to detect that lift with probability ``power``, at these means and
    per-visitor variances: (z_{1-a/2} + z_power)^2 (s_a^2 / m_c^2 + m_a^2 s_c^2 / m_c^4) / lift^2."""
    if control_mean == 0 or arm_mean == control_mean:
        return None
    lift = arm_mean / control_mean - 1
    unit = _lift_unit_variance(
        control_mean=control_mean,
        arm_mean=arm_mean,
        control_unit_variance=control_unit_variance,
        arm_unit_variance=arm_unit_variance,
    )
    if unit <= 0:
        return None
    z = z_critical(alpha) + float(_scipy_stats.norm.ppf(power))
    return math.ceil(z * z * unit / (lift * lift))


def _rate_moments(control_rate: float, lift: float) -> dict[str, float]:
    """Means and per-visitor variances (p (1 - p)) of a rate p_c and of p_a = p_c (1 + lift)."""
    pa = control_rate * (1 + lift)
    return {
        "control_mean": control_rate,
        "arm_mean": pa,
        "control_unit_variance": control_rate * (1 - control_rate),
        "arm_unit_variance": pa * (1 - pa),
    }


def visitors_for_lift(*, control_rate: float, lift: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Visitors per arm for the lift test this module reports (relative lift of a rate, delta-method
    interval, two-sided at ``alpha``) to detect a true relative ``lift`` with probability ``power``."""
    arm_rate = control_rate * (1 + lift)
    if lift == 0 or not 0 < control_rate < 1 or not 0 < arm_rate < 1:
        return None
    return sample_size_per_arm(**_rate_moments(control_rate, lift), alpha=alpha, power=power)


def minimum_detectable_lift(
    *, control_rate: float, visitors_per_arm: int, alpha: float = ALPHA, power: float = POWER
) -> float | None:
    """Smallest relative lift (upwards) of a rate such as conversion that the lift test this module reports
    detects with probability ``power`` when each arm has ``visitors_per_arm``: the lift L solving
    (z_{1-a/2} + z_power) * SE(L) = L (None when even a rate of 1 would not be detected)."""
    if visitors_per_arm < 1 or not 0 < control_rate < 1:
        return None
    z = z_critical(alpha) + float(_scipy_stats.norm.ppf(power))

    def gap(lift: float) -> float:
        return z * math.sqrt(_lift_unit_variance(**_rate_moments(control_rate, lift)) / visitors_per_arm) - lift

    top = 1 / control_rate - 1  # the arm's rate reaches 1
    if gap(top) > 0:
        return None
    return float(_scipy_optimize.brentq(gap, 0.0, top, xtol=1e-9))


def compare(
    *,
    control: Stat,
    arm: Stat,
    alpha: float = ALPHA,
    tuning: float = SEQUENTIAL_TUNING,
    power: float = POWER,
    min_visitors: int = MIN_VISITORS_PER_ARM,
    min_nonzero: int = MIN_NONZERO_PER_ARM,
) -> Comparison:
    base = {
        "control_value": control.value,
        "arm_value": arm.value,
        "control_n": control.n,
        "arm_n": arm.n,
        "control_nonzero": control.nonzero,
        "arm_nonzero": arm.nonzero,
        "min_visitors": min_visitors,
        "min_nonzero": min_nonzero,
    }
    empty = dict.fromkeys(("lift", "ci_low", "ci_high", "p_value", "seq_ci_low", "seq_ci_high"))
    needed = sample_size_per_arm(
        control_mean=control.value,
        arm_mean=arm.value,
        control_unit_variance=control.unit_variance,
        arm_unit_variance=arm.unit_variance,
        alpha=alpha,
        power=power,
    )
    result = relative_lift(control=control, arm=arm)
    if result is None:
        return Comparison(**base, **empty, visitors_per_arm_needed=needed)
    lift, variance = result
    if variance <= 0:
        return Comparison(**base, **{**empty, "lift": lift}, visitors_per_arm_needed=needed)
    se = math.sqrt(variance)
    z = z_critical(alpha)
    n = control.n + arm.n
    half_seq = sequential_halfwidth(unit_variance=variance * n, n=n, alpha=alpha, tuning=tuning)
    # metrics are non-negative, so a lift is never below -100%: intersecting an interval with the
    # possible values keeps its coverage
    return Comparison(
        **base,
        lift=lift,
        ci_low=max(-1.0, lift - z * se),
        ci_high=lift + z * se,
        p_value=float(2 * _scipy_stats.norm.sf(abs(lift) / se)),
        seq_ci_low=max(-1.0, lift - half_seq),
        seq_ci_high=lift + half_seq,
        visitors_per_arm_needed=needed,
    )


@dataclass(frozen=True, slots=True)
class SrmResult:
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    threshold: float = SRM_ALPHA

    @property
    def mismatch(self) -> bool:
        return self.p_value < self.threshold


def srm(*, visitors: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_ALPHA) -> SrmResult:
    """Pearson chi-square of visitors per arm against the configured weights (arms with weight > 0)."""
    arms = [k for k, w in weights.items() if w > 0]
    observed = {k: int(visitors.get(k, 0)) for k in arms}
    total = sum(observed.values())
    weight_sum = sum(weights[k] for k in arms)
    expected = {k: total * weights[k] / weight_sum for k in arms}
    if total == 0 or len(arms) < 2:
        return SrmResult(observed=observed, expected=expected, chi2=0.0, p_value=1.0, threshold=threshold)
    chi2 = sum((observed[k] - expected[k]) ** 2 / expected[k] for k in arms)
    p = float(_scipy_stats.chi2.sf(chi2, df=len(arms) - 1))
    return SrmResult(observed=observed, expected=expected, chi2=chi2, p_value=p, threshold=threshold)


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def verdict(*, arm: str, control: str, metric: str, comparison: Comparison, srm_result: SrmResult | None) -> str:
    """One sentence a merchant can act on."""
    if srm_result is not None and srm_result.mismatch:
        return (
            f"Do not trust these numbers: visitors per arm do not match the configured split "
            f"(sample-ratio mismatch, p = {srm_result.p_value:.2g})."
        )
    c = comparison
    if c.arm_n == 0 or c.control_n == 0:
        return f"No visitors in {arm if c.arm_n == 0 else control} yet."
    if not c.enough_data:
        seen = f"{c.control_n:,} and {c.arm_n:,} visitors" + (
            f", {c.control_nonzero:,} and {c.arm_nonzero:,} with a non-zero value"
            if c.control_nonzero is not None and c.arm_nonzero is not None
            else ""
        )
        so_far = f"; {arm} {_pct(c.lift)} so far" if c.lift is not None else ""
        return (
            f"{metric}: not enough data yet to compare {arm} with {control} ({control} and {arm}: {seen}{so_far}). "
            f"A verdict needs {c.min_visitors:,} visitors and {c.min_nonzero:,} with a non-zero value in each arm: "
            f"about {c.more_visitors_for_minimum:,} more visitors per arm."
        )
    if c.lift is None:
        return f"{metric}: the control {control} has no {metric} yet, so no lift can be computed."
    if c.ci_low is None:
        return f"{metric}: {arm} {_pct(c.lift)} against {control}; too little variation to judge yet."
    span = f"{_pct(c.lift)} (95% CI {_pct(c.ci_low)} to {_pct(c.ci_high)})"
    if c.sequentially_significant:
        word = "beats" if c.lift > 0 else "loses to"
        return f"{metric}: {arm} {word} {control} by {span}; this holds however often you look."
    if c.significant:
        word = "ahead of" if c.lift > 0 else "behind"
        return (
            f"{metric}: {arm} is {word} {control} by {span} at a single look (p = {c.p_value:.3f}); "
            f"the always-valid interval ({_pct(c.seq_ci_low)} to {_pct(c.seq_ci_high)}) does not confirm it yet."
        )
    more = c.more_visitors_per_arm
    tail = f"; about {more:,} more visitors per arm would detect an effect this size" if more else ""
    return f"{metric}: no clear difference between {arm} and {control}, {span}{tail}."

"""Turn per-visitor rows of one experiment into the results a merchant reads (pure: no database).

A visitor enters the experiment at its first event that carries one of the experiment's arms (its
first rail render); its arm is that event's arm. Conversion and revenue count its orders placed
from that moment until the experiment stopped; add-to-cart and rail clicks/impressions likewise.

Conversion through a rail counts a visitor whose order holds a product it had clicked on one of the
experiment's rails before (click-through attribution, as merchants' recommendation reports count it):
the arms differ only in their rails, and most orders come from browsing and search, which every arm
shares, so site-wide conversion dilutes whatever the rails do. It is a diagnostic beside the primary
metric, not a replacement: a rail can win purchases another page would have made anyway.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .assignment import ExperimentSpec
from .stats import (
    ALPHA,
    REVENUE_CAP_PERCENTILE,
    SEQUENTIAL_TUNING,
    Comparison,
    MeanStat,
    RatioStat,
    Stat,
    compare,
    srm,
    verdict,
    winsorize_cap,
)


@dataclass(frozen=True, slots=True)
class VisitorRow:
    arm: str
    first_seen: dt.datetime
    model_version: str  # newest model version that served this visitor ("" when none did)
    orders: int
    revenue: float
    added_to_cart: bool
    impressions: int  # rail impressions
    clicks: int  # rail clicks
    rail_orders: int = 0  # orders holding a product this visitor had clicked on a rail before


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    kind: str  # "proportion", "mean" or "ratio"
    primary: bool = False
    note: str = ""  # how to read it, in words (beside the lift table)


METRICS: tuple[Metric, ...] = (
    Metric("conversion", "Conversion (visitors with an order)", "proportion", primary=True),
    Metric(
        "rail_conversion",
        "Conversion through a rail (clicked, then bought)",
        "proportion",
        note=(
            "Conversion through a rail: visitors whose order holds a product they had clicked on one of the "
            "experiment's rails. The arms differ only in their rails, so this is where a ranking shows first; "
            "it is not the verdict, since a rail can take a sale that browsing or search would have made anyway."
        ),
    ),
    Metric("revenue_per_visitor", "Revenue per visitor", "mean"),
    Metric("add_to_cart", "Add-to-cart rate (visitors)", "proportion"),
    Metric("rail_ctr", "Rail CTR (clicks / impressions)", "ratio"),
)


def metric_stat(metric: str, rows: Sequence[VisitorRow], *, revenue_cap: float | None = None) -> Stat:
    """The metric over ``rows``; revenue per visitor counts each visitor's revenue up to ``revenue_cap``."""
    if metric == "conversion":
        k = sum(1 for r in rows if r.orders > 0)
        return MeanStat(n=len(rows), sum=k, sum_squares=k, nonzero=k)
    if metric == "rail_conversion":
        k = sum(1 for r in rows if r.rail_orders > 0)
        return MeanStat(n=len(rows), sum=k, sum_squares=k, nonzero=k)
    if metric == "add_to_cart":
        k = sum(1 for r in rows if r.added_to_cart)
        return MeanStat(n=len(rows), sum=k, sum_squares=k, nonzero=k)
    if metric == "revenue_per_visitor":
        if revenue_cap is None:
            return MeanStat.from_values(r.revenue for r in rows)
        return MeanStat.from_values(min(r.revenue, revenue_cap) for r in rows)
    if metric == "rail_ctr":
        return RatioStat.from_pairs((r.clicks, r.impressions) for r in rows)
    raise ValueError(f"unknown metric {metric!r}")


def _counts(stat: Stat) -> tuple[float, float]:
    """(numerator, denominator) a person can check: converters / visitors, clicks / impressions."""
    if isinstance(stat, RatioStat):
        return stat.num.sum, stat.den.sum
    return stat.sum, stat.n


@dataclass(frozen=True, slots=True)
class ArmValue:
    arm: str
    value: float
    numerator: float
    denominator: float
    visitors: int


@dataclass(frozen=True, slots=True)
class ArmComparison:
    arm: str
    comparison: Comparison
    verdict: str


@dataclass(frozen=True, slots=True)
class Cap:
    """How a mean metric was winsorized: each visitor's value counted up to ``value``."""

    percentile: float  # of the non-zero values, all arms together
    value: float
    visitors_capped: int  # visitors whose value was above it
    largest: float  # the largest value before capping
    uncapped: dict[str, float]  # per arm, the mean without the cap

    def note(self, label: str) -> str:
        uncapped = ", ".join(f"{arm} {value:,.2f}" for arm, value in self.uncapped.items())
        return (
            f"{label}: each visitor counts up to {self.value:,.2f}, the {self.percentile * 100:g}th percentile of "
            f"the visitors with an order (all arms together); {self.visitors_capped} visitor"
            f"{'' if self.visitors_capped == 1 else 's'} above it, the largest {self.largest:,.2f}. "
            f"Without the cap: {uncapped}."
        )


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: Metric
    arms: list[ArmValue]
    comparisons: list[ArmComparison]
    cap: Cap | None = None


@dataclass(frozen=True, slots=True)
class DayRow:
    date: dt.date
    arm: str
    visitors: int
    conversion: float
    revenue_per_visitor: float
    cumulative_visitors: int
    cumulative_conversion: float
    # cumulative lift in conversion against the control up to this day (None for the control itself)
    cumulative_lift: float | None
    cumulative_ci_low: float | None
    cumulative_ci_high: float | None
    cumulative_seq_ci_low: float | None
    cumulative_seq_ci_high: float | None


@dataclass(frozen=True, slots=True)
class ModelVersionRow:
    model_version: str
    arm: str
    visitors: int
    conversion: float
    revenue_per_visitor: float
    add_to_cart: float
    rail_ctr: float


@dataclass(frozen=True, slots=True)
class Results:
    experiment: ExperimentSpec
    control: str | None
    visitors: dict[str, int]
    crossovers: int  # visitors seen under more than one arm (a reshuffle mid-run, or a bug): left out
    srm_result: object
    metrics: list[MetricResult]
    verdict: str
    by_day: list[DayRow] = field(default_factory=list)
    by_model_version: list[ModelVersionRow] = field(default_factory=list)


def _by_arm(rows: Iterable[VisitorRow], arms: Sequence[str]) -> dict[str, list[VisitorRow]]:
    grouped: dict[str, list[VisitorRow]] = {a: [] for a in arms}
    for r in rows:
        if r.arm in grouped:
            grouped[r.arm].append(r)
    return grouped


def _by_day(
    grouped: dict[str, list[VisitorRow]], control: str | None, alpha: float, tuning: float, revenue_cap: float | None
) -> list[DayRow]:
    days = sorted({r.first_seen.date() for rows in grouped.values() for r in rows})
    out: list[DayRow] = []
    per_day = {arm: defaultdict(list) for arm in grouped}
    for arm, rows in grouped.items():
        for r in rows:
            per_day[arm][r.first_seen.date()].append(r)
    cumulative: dict[str, list[VisitorRow]] = {arm: [] for arm in grouped}
    for day in days:
        for arm in grouped:
            cumulative[arm].extend(per_day[arm][day])
        control_stat = metric_stat("conversion", cumulative[control]) if control else None
        for arm in grouped:
            today = per_day[arm][day]
            cum = metric_stat("conversion", cumulative[arm])
            comp = None
            if control_stat is not None and arm != control:
                comp = compare(control=control_stat, arm=cum, alpha=alpha, tuning=tuning)
            out.append(
                DayRow(
                    date=day,
                    arm=arm,
                    visitors=len(today),
                    conversion=metric_stat("conversion", today).value,
                    revenue_per_visitor=metric_stat("revenue_per_visitor", today, revenue_cap=revenue_cap).value,
                    cumulative_visitors=cum.n,
                    cumulative_conversion=cum.value,
                    cumulative_lift=comp.lift if comp else None,
                    cumulative_ci_low=comp.ci_low if comp else None,
                    cumulative_ci_high=comp.ci_high if comp else None,
                    cumulative_seq_ci_low=comp.seq_ci_low if comp else None,
                    cumulative_seq_ci_high=comp.seq_ci_high if comp else None,
                )
            )
    return out


def _by_model_version(grouped: dict[str, list[VisitorRow]], revenue_cap: float | None) -> list[ModelVersionRow]:
    out = []
    for arm, rows in grouped.items():
        versions: dict[str, list[VisitorRow]] = defaultdict(list)
        for r in rows:
            versions[r.model_version].append(r)
        for version in sorted(versions):
            vrows = versions[version]
            out.append(
                ModelVersionRow(
                    model_version=version,
                    arm=arm,
                    visitors=len(vrows),
                    conversion=metric_stat("conversion", vrows).value,
                    revenue_per_visitor=metric_stat("revenue_per_visitor", vrows, revenue_cap=revenue_cap).value,
                    add_to_cart=metric_stat("add_to_cart", vrows).value,
                    rail_ctr=metric_stat("rail_ctr", vrows).value,
                )
            )
    return out


def proportion_head_to_head(
    *, results: Results, metric: str, baseline: str, arm: str, alpha: float = ALPHA, tuning: float = SEQUENTIAL_TUNING
) -> Comparison | None:
    """``arm`` against ``baseline`` (neither need be the control) on a proportion metric such as conversion,
    from the counts in ``results``; None when the metric is not a proportion or an arm is missing."""
    m = next((m for m in results.metrics if m.metric.key == metric), None)
    if m is None or m.metric.kind != "proportion":
        return None
    values = {v.arm: v for v in m.arms}
    if baseline not in values or arm not in values:
        return None

    def stat(v: ArmValue) -> MeanStat:
        k = v.numerator  # 0/1 per visitor: the visitors with a 1 are the non-zero ones the minimum sample counts
        return MeanStat(n=int(v.denominator), sum=k, sum_squares=k, nonzero=int(round(k)))

    return compare(control=stat(values[baseline]), arm=stat(values[arm]), alpha=alpha, tuning=tuning)


def results_compute(
    *,
    experiment: ExperimentSpec,
    rows: Iterable[VisitorRow],
    crossovers: int = 0,
    alpha: float = ALPHA,
    tuning: float = SEQUENTIAL_TUNING,
    revenue_cap_percentile: float = REVENUE_CAP_PERCENTILE,
) -> Results:
    """``revenue_cap_percentile``: revenue per visitor is winsorized at this percentile of the revenue of the
    visitors with an order, all arms together (0 or 1: not capped); see :func:`stats.winsorize_cap`."""
    arms = [a.key for a in experiment.arms]
    control = experiment.control
    grouped = _by_arm(rows, arms)
    visitors = {arm: len(grouped[arm]) for arm in arms}
    revenues = [r.revenue for arm in arms for r in grouped[arm]]
    revenue_cap = winsorize_cap(revenues, percentile=revenue_cap_percentile)
    srm_result = srm(visitors=visitors, weights={a.key: a.weight for a in experiment.arms})

    metrics: list[MetricResult] = []
    for metric in METRICS:
        stats = {arm: metric_stat(metric.key, grouped[arm], revenue_cap=revenue_cap) for arm in arms}
        values = []
        for arm in arms:
            num, den = _counts(stats[arm])
            values.append(
                ArmValue(arm=arm, value=stats[arm].value, numerator=num, denominator=den, visitors=visitors[arm])
            )
        comparisons = []
        if control is not None:
            for arm in arms:
                if arm == control:
                    continue
                comp = compare(control=stats[control], arm=stats[arm], alpha=alpha, tuning=tuning)
                text = verdict(arm=arm, control=control, metric=metric.label, comparison=comp, srm_result=srm_result)
                comparisons.append(ArmComparison(arm=arm, comparison=comp, verdict=text))
        cap = None
        if metric.key == "revenue_per_visitor" and revenue_cap is not None:
            cap = Cap(
                percentile=revenue_cap_percentile,
                value=revenue_cap,
                visitors_capped=sum(1 for v in revenues if v > revenue_cap),
                largest=max(revenues),
                uncapped={arm: metric_stat(metric.key, grouped[arm]).value for arm in arms},
            )
        metrics.append(MetricResult(metric=metric, arms=values, comparisons=comparisons, cap=cap))

    primary = next(m for m in metrics if m.metric.primary)
    if srm_result.mismatch:
        overall = primary.comparisons[0].verdict if primary.comparisons else "Sample-ratio mismatch."
    elif sum(visitors.values()) == 0:
        overall = "No visitors have seen the experiment yet."
    else:
        overall = " ".join(c.verdict for c in primary.comparisons) or "The experiment has no control arm."
    return Results(
        experiment=experiment,
        control=control,
        visitors=visitors,
        crossovers=crossovers,
        srm_result=srm_result,
        metrics=metrics,
        verdict=overall,
        by_day=_by_day(grouped, control, alpha, tuning, revenue_cap),
        by_model_version=_by_model_version(grouped, revenue_cap),
    )

"""What each arm actually served during an experiment: the serving mix beside the lift table.

An arm's name says which ranking it asks for; what a visitor saw is the source that answered. When the
``dlrm`` arm's requests mostly fall back (no model yet, latency budget spent, scorer busy), its visitors
saw the popular list and its "lift" measures popularity against popularity. The recommendation service
counts every request by (minute, placement, experiment, arm, source, reason) as ``ServingStat`` rows, the
experiment being the one that assigned the arm; this module sums the experiment's own counters of the
personalised placements per arm and says in plain words when an arm did not serve what it names. A
request served while no experiment ran (the default arm) or under another experiment is none of its
own, even in the minute it started.

Sources: ``live`` (re-ranked for this request) and ``batch`` (the model's precomputed list) are the arm's
own ranking; ``fallback`` is the popular list because the arm's ranking could not answer (``reason``);
``popularity`` is the popular list by design (the control arm). The fallback reason ``no_activity`` is
not a fault: a visitor with no history has nothing to personalise on, so every arm shows it the popular
list (counted apart from faults).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Sum

from shop.recs.live import BATCH, FALLBACK, LIVE, POPULARITY, TRENDING
from shop.recs.models import ServingStat

from .models import Experiment

NO_ACTIVITY = "no_activity"
# Below this share of personalised renders served by the arm's own ranking, the report warns that the
# arm's figures mostly describe the popular list.
OWN_SHARE_WARN = 0.5


@dataclass(frozen=True, slots=True)
class ServingRow:
    """Requests of one arm, source and fallback reason (summed over minutes and placements)."""

    arm: str
    source: str
    reason: str
    requests: int


@dataclass(frozen=True, slots=True)
class ArmMix:
    arm: str
    requests: int  # personalised rail renders and API answers (the trending rail is the same in every arm)
    by_source: dict[str, int]
    fallback_reasons: dict[str, int]  # reason -> requests that fell back for it (no_activity included)
    own: int  # answered by the arm's own ranking (live or batch; the popular list for the control)
    no_history: int  # popular list because the visitor had nothing to personalise on (not a fault)
    faults: int  # popular list because the arm's ranking failed (every other reason)
    intended: str  # the source this arm means to serve: "live/batch" or "popularity"
    note: str = ""

    @property
    def own_share(self) -> float | None:
        return self.own / self.requests if self.requests else None

    @property
    def fault_share(self) -> float | None:
        return self.faults / self.requests if self.requests else None

    @property
    def no_history_share(self) -> float | None:
        return self.no_history / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class ServingMix:
    arms: list[ArmMix]
    warnings: list[str] = field(default_factory=list)
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _reasons_text(reasons: dict[str, int], total: int) -> str:
    faults = sorted(((n, r) for r, n in reasons.items() if r != NO_ACTIVITY), reverse=True)
    return ", ".join(f"{r} {_pct(n / total)}" for n, r in faults)


def serving_mix_compute(*, rows: Iterable[ServingRow], arms: list[str], control: str | None) -> ServingMix:
    """Per arm: requests by source and reason, the share its own ranking answered, and a plain warning for
    an arm that mostly served something else (pure: no database)."""
    per_arm: dict[str, list[ServingRow]] = {a: [] for a in arms}
    for r in rows:
        if r.arm in per_arm:
            per_arm[r.arm].append(r)
    out, warnings = [], []
    for arm in arms:
        by_source: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for r in per_arm[arm]:
            by_source[r.source] = by_source.get(r.source, 0) + r.requests
            if r.reason and r.source not in (LIVE, BATCH):
                reasons[r.reason] = reasons.get(r.reason, 0) + r.requests
        total = sum(by_source.values())
        by_design = arm == POPULARITY  # the control ranking is the popular list itself
        if by_design:
            own, intended = by_source.get(POPULARITY, 0), POPULARITY
        else:
            own, intended = by_source.get(LIVE, 0) + by_source.get(BATCH, 0), "live/batch"
        no_history = reasons.get(NO_ACTIVITY, 0)
        faults = 0 if by_design else by_source.get(FALLBACK, 0) - no_history
        note = ""
        if total == 0:
            if arm != control:
                note = f"no rail requests were counted for {arm}: its serving mix is unknown"
        elif not by_design and own / total < OWN_SHARE_WARN:
            parts = []
            if faults:
                parts.append(f"faults: {_reasons_text(reasons, total)}")
            if no_history:
                parts.append(f"no history to personalise on: {_pct(no_history / total)}")
            note = (
                f"{arm} served its own ranking on only {_pct(own / total)} of {total:,} personalised rail renders; "
                f"{_pct((total - own) / total)} showed the popular list ({'; '.join(parts)}). "
                f"Its figures mostly describe the popular list, not the {arm} ranking."
            )
        elif not by_design and faults / total >= 0.1:
            note = (
                f"{arm}: {_pct(faults / total)} of its personalised rail renders fell back to the popular list "
                f"({_reasons_text(reasons, total)})."
            )
        if note:
            warnings.append(note)
        out.append(
            ArmMix(
                arm=arm,
                requests=total,
                by_source=by_source,
                fallback_reasons=reasons,
                own=own,
                no_history=no_history,
                faults=max(0, faults),
                intended=intended,
                note=note,
            )
        )
    return ServingMix(arms=out, warnings=warnings)


def experiment_serving_rows(*, experiment: Experiment) -> list[ServingRow]:
    """The serving counters of requests whose arm this experiment assigned, summed per (arm, source,
    reason); the trending rail (the same in every arm) is left out. Bounded by the current run's window
    too: a resalted restart moves ``started_at`` (the counters of the earlier run, under the old salt, are
    left out by minute) and minutes after the stop's are left out, as the lift table's events are (a
    process attributes requests for a few seconds past ``stopped_at`` from its cached copy of the running
    experiment, EXPERIMENTS_CACHE_TTL_S). A process writes its counters every RECS_STATS_FLUSH_S (the
    newest seconds may be missing)."""
    if experiment.started_at is None:
        return []
    qs = ServingStat.objects.filter(
        experiment=experiment, minute__gte=experiment.started_at.replace(second=0, microsecond=0)
    )
    if experiment.stopped_at is not None:
        qs = qs.filter(minute__lt=experiment.stopped_at)
    qs = (
        qs.exclude(placement=TRENDING)
        .filter(arm__in=[a.key for a in experiment.arms.all()])
        .values("arm", "source", "reason")
        .annotate(n=Sum("requests"))
        .order_by("arm", "source", "reason")
    )
    return [ServingRow(arm=r["arm"], source=r["source"], reason=r["reason"], requests=r["n"]) for r in qs]


def experiment_serving_mix(*, experiment: Experiment) -> ServingMix:
    arms = list(experiment.arms.all())
    control = next((a.key for a in arms if a.is_control), None)
    mix = serving_mix_compute(
        rows=experiment_serving_rows(experiment=experiment), arms=[a.key for a in arms], control=control
    )
    return ServingMix(arms=mix.arms, warnings=mix.warnings, since=experiment.started_at, until=experiment.stopped_at)

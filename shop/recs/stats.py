"""Serving counters: every recommendation request counted by (minute, placement, experiment, arm, source,
reason, model version).

A request adds to an in-process aggregate (a dict update under a lock: no query on the request path); the
serving thread writes the aggregate out every RECS_STATS_FLUSH_S as :class:`ServingStat` rows, one row per
key and flush, and the staff endpoint ``GET /api/recs/serving-stats`` sums them by minute for the console.
The experiment is the one that assigned the arm (None when none ran and the arm was the default), so an
experiment's serving mix counts only its own requests, not those of the minute it started in before it ran
(``shop.experiments.serving_mix``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from dataclasses import dataclass, field

from django.db.models import Sum
from django.utils import timezone

from shop.ops import metrics

from .models import ServingStat

BUCKETS = ServingStat.LATENCY_BUCKETS_MS
STAGES = ("assign", "db", "retrieve", "features", "rank", "rules", "batch", "popularity")


@dataclass
class _Agg:
    requests: int = 0
    ms_sum: float = 0.0
    ms_max: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    hist: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))


_lock = threading.Lock()
_aggs: dict[tuple, _Agg] = {}


def serving_record(
    *,
    placement: str,
    arm: str | None,
    source: str,
    reason: str,
    model_version: str | None,
    timings_ms: dict,
    experiment_id: int | None = None,
) -> None:
    """Count one served request (called once per recommendation, on the request path: no I/O).
    ``experiment_id``: the experiment that assigned ``arm``; None when no experiment chose it."""
    # Prometheus too (per-process samples; summed over gunicorn processes at scrape time)
    metrics.recs_served(source)
    if reason:
        metrics.recs_fallback(reason)
    metrics.recs_stages({stage: ms / 1000.0 for stage, ms in timings_ms.items() if ms is not None})
    minute = timezone.now().replace(second=0, microsecond=0)
    key = (minute, placement, experiment_id, arm or "", source, reason, model_version or "")
    total = float(timings_ms.get("total", 0.0))
    with _lock:
        agg = _aggs.get(key)
        if agg is None:
            agg = _aggs[key] = _Agg()
        agg.requests += 1
        agg.ms_sum += total
        agg.ms_max = max(agg.ms_max, total)
        for stage in STAGES:
            v = timings_ms.get(stage)
            if v:
                agg.stages[stage] = agg.stages.get(stage, 0.0) + float(v)
        agg.hist[bisect.bisect_left(BUCKETS, total)] += 1


def serving_stats_pending() -> int:
    """Requests counted in this process and not written yet."""
    with _lock:
        return sum(a.requests for a in _aggs.values())


def serving_stats_forget() -> None:
    """Drop this process's counters unwritten (tests: one test's served requests must not be written into
    the next test's figures by its flush)."""
    global _aggs
    with _lock:
        _aggs = {}


def serving_stats_flush() -> int:
    """Write this process's counters as ServingStat rows; returns the requests written."""
    global _aggs
    with _lock:
        aggs, _aggs = _aggs, {}
    if not aggs:
        return 0
    rows = [
        ServingStat(
            minute=minute,
            placement=placement,
            experiment_id=experiment_id,
            arm=arm,
            source=source,
            reason=reason,
            model_version=version,
            requests=a.requests,
            latency_ms_sum=round(a.ms_sum, 3),
            latency_ms_max=round(a.ms_max, 3),
            stage_ms_sum={k: round(v, 3) for k, v in a.stages.items()},
            latency_hist=a.hist,
        )
        for (minute, placement, experiment_id, arm, source, reason, version), a in aggs.items()
    ]
    try:
        ServingStat.objects.bulk_create(rows)
    except Exception:
        with _lock:  # put them back: counted next time
            for key, a in aggs.items():
                cur = _aggs.setdefault(key, _Agg())
                cur.requests += a.requests
                cur.ms_sum += a.ms_sum
                cur.ms_max = max(cur.ms_max, a.ms_max)
                for k, v in a.stages.items():
                    cur.stages[k] = cur.stages.get(k, 0.0) + v
                cur.hist = [x + y for x, y in zip(cur.hist, a.hist, strict=True)]
        raise
    return sum(a.requests for a in aggs.values())


def _quantile(hist: list[int], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile (None when empty or beyond the last bound)."""
    n = sum(hist)
    if n == 0:
        return None
    target = q * n
    seen = 0
    for i, c in enumerate(hist):
        seen += c
        if seen >= target:
            return float(BUCKETS[i]) if i < len(BUCKETS) else None
    return None


def serving_stats(*, minutes: int) -> dict:
    """Per minute over the last ``minutes``: requests by source, fallback reasons, mean latency per stage,
    p50/p99 (bucket upper bounds) and the worst request; plus the totals of the whole window."""
    since = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes - 1)
    rows = ServingStat.objects.filter(minute__gte=since).order_by("minute")
    per_minute: dict[dt.datetime, dict] = {}
    total = {"requests": 0, "by_source": {}, "fallback_reasons": {}, "by_arm": {}, "hist": [0] * (len(BUCKETS) + 1)}
    for r in rows.iterator():
        m = per_minute.setdefault(
            r.minute,
            {"requests": 0, "by_source": {}, "fallback_reasons": {}, "ms_sum": 0.0, "ms_max": 0.0, "stages": {},
             "hist": [0] * (len(BUCKETS) + 1)},
        )  # fmt: skip
        for bucket in (m, total):
            bucket["requests"] += r.requests
            bucket["by_source"][r.source] = bucket["by_source"].get(r.source, 0) + r.requests
            if r.reason:
                bucket["fallback_reasons"][r.reason] = bucket["fallback_reasons"].get(r.reason, 0) + r.requests
            if len(r.latency_hist) == len(bucket["hist"]):
                bucket["hist"] = [x + y for x, y in zip(bucket["hist"], r.latency_hist, strict=True)]
        total["by_arm"][r.arm] = total["by_arm"].get(r.arm, 0) + r.requests
        m["ms_sum"] += r.latency_ms_sum
        m["ms_max"] = max(m["ms_max"], r.latency_ms_max)
        for k, v in (r.stage_ms_sum or {}).items():
            m["stages"][k] = m["stages"].get(k, 0.0) + v
    minutes_out = []
    for minute, m in per_minute.items():
        n = max(m["requests"], 1)
        minutes_out.append(
            {
                "minute": minute,
                "requests": m["requests"],
                "by_source": m["by_source"],
                "fallback_reasons": m["fallback_reasons"],
                "latency_ms_mean": round(m["ms_sum"] / n, 3),
                "latency_ms_p50": _quantile(m["hist"], 0.5),
                "latency_ms_p99": _quantile(m["hist"], 0.99),
                "latency_ms_max": round(m["ms_max"], 3),
                "stage_ms_mean": {k: round(v / n, 3) for k, v in m["stages"].items()},
            }
        )
    return {
        "minutes": minutes,
        "since": since,
        "requests": total["requests"],
        "by_source": total["by_source"],
        "by_arm": total["by_arm"],
        "fallback_reasons": total["fallback_reasons"],
        "latency_ms_p50": _quantile(total["hist"], 0.5),
        "latency_ms_p99": _quantile(total["hist"], 0.99),
        "latency_buckets_ms": list(BUCKETS),
        "per_minute": minutes_out,
    }


def serving_requests_total() -> int:
    return ServingStat.objects.aggregate(n=Sum("requests"))["n"] or 0

"""Reads of recommendations and task progress (the storefront's rail and the console use these)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Subquery
from django.utils import timezone

from shop.events.models import Visitor

from .models import (
    AcceleratorBenchmark,
    ModelVersion,
    Recommendation,
    ScoreSet,
    ServingPointer,
    ServingStat,
    TaskRun,
)
from .stats import _quantile as latency_quantile


def _serving_set():
    # only ever a complete set: one that failed or is still being written is never read, whatever the pointer says
    return Subquery(
        ServingPointer.objects.filter(id=1, score_set__status=ScoreSet.Status.COMPLETE).values("score_set_id")[:1]
    )


def recommendations_for_visitor(*, visitor_id: uuid.UUID | str, limit: int = 12) -> list[int]:
    """Product ids precomputed for this visitor in the serving score set, best first ([] when none).

    Only the complete set the serving pointer names is read, so a batch being written never shows. A
    visitor who logged in on a new device gets their account's list (scored under another visitor row).
    Inactive or out-of-stock products are left out.
    """
    base = Recommendation.objects.filter(
        score_set_id=_serving_set(), product__is_active=True, product__stock__gt=0
    ).order_by("rank")
    ids = list(base.filter(visitor_id=visitor_id).values_list("product_id", flat=True)[:limit])
    if ids:
        return ids
    user_id = Visitor.objects.filter(pk=visitor_id).values_list("user_id", flat=True).first()
    if user_id is None:
        return []
    other = (
        Recommendation.objects.filter(score_set_id=_serving_set(), visitor__user_id=user_id)
        .values_list("visitor_id", flat=True)
        .first()
    )
    if other is None:
        return []
    return list(base.filter(visitor_id=other).values_list("product_id", flat=True)[:limit])


@dataclass(frozen=True)
class TaskRunOut:
    id: str
    kind: str
    state: str
    stage: str
    percent: float
    device: str
    hostname: str
    deliveries: int
    error: str
    result: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def task_run_get(*, run_id: uuid.UUID | str) -> TaskRunOut | None:
    run = TaskRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    return TaskRunOut(
        id=str(run.id),
        kind=run.kind,
        state=run.state,
        stage=run.stage,
        percent=run.percent,
        device=run.device,
        hostname=run.hostname,
        deliveries=run.deliveries,
        error=run.error,
        result=run.result,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def task_run_list(*, kind: str | None = None, limit: int = 20) -> list[TaskRun]:
    qs = TaskRun.objects.all()
    if kind:
        qs = qs.filter(kind=kind)
    return list(qs[:limit])


def model_version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def model_version_list(*, limit: int = 50) -> list[ModelVersion]:
    return list(ModelVersion.objects.all()[:limit])


# ------------------------------------------------------------------------------------ console figures


@dataclass(frozen=True)
class BenchmarkOut:
    """One stored accelerator benchmark (``recommender.bench`` on a worker): its grid as flat rows."""

    id: int
    created_at: datetime
    device: str
    hostname: str
    machine: dict
    quick: bool
    cells: list[dict]  # device, precision, threads, batch, path ("reuse"|"baseline"), p50_ms, p99_ms, ...
    floors: dict
    targets: dict
    int8_agreement: dict


def accelerator_benchmarks_latest(*, limit: int = 10) -> list[BenchmarkOut]:
    """The newest benchmark of each worker device (a CPU node and a GPU node report separately)."""
    seen: set[str] = set()
    out: list[BenchmarkOut] = []
    for b in AcceleratorBenchmark.objects.order_by("-created_at", "-id")[: limit * 10]:
        if b.device in seen or not isinstance(b.results, dict):
            continue
        seen.add(b.device)
        r = b.results
        out.append(
            BenchmarkOut(
                id=b.pk,
                created_at=b.created_at,
                device=b.device,
                hostname=b.hostname,
                machine=dict(r.get("machine") or {}),
                quick=bool(r.get("quick", False)),
                cells=[c for c in r.get("cells") or [] if isinstance(c, dict)],
                floors=dict(r.get("floors") or {}),
                targets=dict(r.get("targets") or {}),
                int8_agreement=dict(r.get("int8_agreement") or {}),
            )
        )
        if len(out) >= limit:
            break
    return out


SWEEP_FILE = "pipeline_sweep.json"


def candidates_sweep_latest() -> dict | None:
    """The latest ``python -m recommender.sweep`` report (quality vs latency per number of
    stage-1 candidates), with the time it was written; None when it was never run or is unreadable."""
    path = Path(settings.BENCH_DIR) / SWEEP_FILE
    try:
        report = json.loads(path.read_text())
        written = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
        return None
    return {**report, "written_at": written}


@dataclass(frozen=True)
class ArmGuardrail:
    """Serving health of one experiment arm: latency from the per-request histogram and how often an
    earlier source did not serve (a fallback, with a reason)."""

    arm: str
    requests: int
    latency_ms_p50: float | None  # upper bound of the histogram bucket holding it
    latency_ms_p99: float | None
    fallbacks: int
    fallback_rate: float | None


def serving_guardrails_by_arm(*, minutes: int) -> list[ArmGuardrail]:
    """Per arm over the last ``minutes`` (rows written by the serving counters), arms by name."""
    since = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    size = len(ServingStat.LATENCY_BUCKETS_MS) + 1
    acc: dict[str, dict] = {}
    for arm, requests, reason, hist in ServingStat.objects.filter(minute__gte=since).values_list(
        "arm", "requests", "reason", "latency_hist"
    ):
        a = acc.setdefault(arm, {"requests": 0, "fallbacks": 0, "hist": [0] * size})
        a["requests"] += requests
        if reason:
            a["fallbacks"] += requests
        if isinstance(hist, list) and len(hist) == size:
            a["hist"] = [x + y for x, y in zip(a["hist"], hist, strict=True)]
    return [
        ArmGuardrail(
            arm=arm or "(no experiment)",
            requests=a["requests"],
            latency_ms_p50=latency_quantile(a["hist"], 0.5),
            latency_ms_p99=latency_quantile(a["hist"], 0.99),
            fallbacks=a["fallbacks"],
            fallback_rate=a["fallbacks"] / a["requests"] if a["requests"] else None,
        )
        for arm, a in sorted(acc.items())
    ]

"""Reads of recommendations and task progress (the storefront's rail and the console use these)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Subquery

from shop.events.models import Visitor

from .models import ModelVersion, Recommendation, ServingPointer, TaskRun


def _serving_set():
    return Subquery(ServingPointer.objects.filter(id=1).values("score_set_id")[:1])


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

"""Batch scoring: every active visitor's top list into a new ScoreSet, then one serving pointer flip."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from shop.catalog.models import Product
from shop.events.models import Event, Visitor

from . import keys
from .models import ModelVersion, Recommendation, ScoreSet, ServingPointer, TaskRun
from .runs import task_run_progress

Kind = TaskRun.Kind


def _visitors_to_score() -> Any:
    """Visitors with an event in the last RECS_ACTIVE_DAYS, and every visitor of a registered user."""
    since = timezone.now() - dt.timedelta(days=settings.RECS_ACTIVE_DAYS)
    recent = Event.objects.filter(visitor_id=OuterRef("pk"), occurred_at__gte=since)
    return Visitor.objects.filter(Exists(recent) | Q(user__isnull=False))


def recommendations_batch_score(*, run_id: uuid.UUID | str) -> dict:
    """Write every active visitor's top RECS_TOP_K into a new ScoreSet, chunk by chunk, then flip the
    serving pointer in one transaction.

    The storefront keeps reading the previous complete set the whole time. Visitors are scored in id
    order and each chunk commits its rows together with the set's cursor, so a rerun of the same run (after
    a crash or a kill) resumes after the last committed chunk: no duplicate rows, no lost visitors.
    """
    from . import engine

    k = settings.RECS_TOP_K
    chunk = settings.RECS_SCORE_CHUNK
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None:
        raise RuntimeError("no active model version: retrain first")
    score_set, created = ScoreSet.objects.get_or_create(run_id=run_id, defaults={"model_version": active})
    if score_set.status == ScoreSet.Status.COMPLETE:
        return {"score_set": score_set.pk, "rows": score_set.rows, "visitors": score_set.visitors, "resumed": False}
    if not created and score_set.model_version_id != active.pk:
        # the champion changed while this run was down: rebuild for the new one
        with transaction.atomic():
            score_set.recommendations.all().delete()
            ScoreSet.objects.filter(pk=score_set.pk).update(model_version=active, cursor="", rows=0, visitors=0)
        score_set.refresh_from_db()
    resumed = bool(score_set.cursor)

    task_run_progress(run_id=run_id, stage=f"loading model {active.version}", percent=0)
    ranker = engine.load_ranker(
        model_dir=Path(settings.MODEL_DIR),
        version=active.version,
        max_per_category=settings.RECS_MAX_PER_CATEGORY or None,
    )
    visitors = _visitors_to_score()
    total = visitors.count()
    todo = visitors.order_by("id")
    if score_set.cursor:
        todo = todo.filter(id__gt=uuid.UUID(score_set.cursor))
    done = total - todo.count()
    products = dict(Product.objects.filter(is_active=True).values_list("id", "stock"))
    throttle = settings.RECS_BATCH_THROTTLE_S
    batch: list[tuple[uuid.UUID, str]] = []

    def flush(batch: list[tuple[uuid.UUID, str]]) -> None:
        nonlocal done
        ranked = ranker.recommend([key for _, key in batch], k=k * 2)
        rows: list[Recommendation] = []
        for (visitor_id, _), items in zip(batch, ranked, strict=True):
            rank = 0
            for item_id, score in items:
                pid = int(item_id)
                if pid not in products or products[pid] <= 0:
                    continue
                rows.append(
                    Recommendation(
                        score_set=score_set, visitor_id=visitor_id, product_id=pid, rank=rank, score=float(score)
                    )
                )
                rank += 1
                if rank >= k:
                    break
        with transaction.atomic():
            Recommendation.objects.bulk_create(rows, batch_size=5000)
            ScoreSet.objects.filter(pk=score_set.pk).update(
                cursor=str(batch[-1][0]), rows=F("rows") + len(rows), visitors=F("visitors") + len(batch)
            )
        done += len(batch)
        task_run_progress(run_id=run_id, stage="scoring visitors", percent=99.0 * done / max(total, 1))
        if throttle:
            time.sleep(throttle)

    for visitor_id, user_id in todo.values_list("id", "user_id").iterator(chunk_size=2000):
        batch.append((visitor_id, keys.user_key(visitor_id=visitor_id, user_id=user_id)))
        if len(batch) >= chunk:
            flush(batch)
            batch = []
    if batch:
        flush(batch)

    with transaction.atomic():
        ss = ScoreSet.objects.select_for_update().get(pk=score_set.pk)
        ss.status = ScoreSet.Status.COMPLETE
        ss.completed_at = timezone.now()
        ss.save(update_fields=["status", "completed_at"])
        pointer, _ = ServingPointer.objects.select_for_update().get_or_create(id=1)
        previous = pointer.score_set_id
        pointer.score_set = ss
        pointer.save(update_fields=["score_set", "updated_at"])
    _score_sets_prune(keep={ss.pk, previous})
    champion = ModelVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()
    return {
        "score_set": ss.pk,
        "rows": ss.rows,
        "visitors": ss.visitors,
        "resumed": resumed,
        "model_version": active.version,
        # a promotion happened while this ran: score again for the new champion
        "_then": Kind.BATCH_SCORE if champion != active.pk else None,
    }


def _score_sets_prune(*, keep: set) -> None:
    """Drop score sets older than the serving one and the one before it (a quick rollback target)."""
    old = ScoreSet.objects.exclude(pk__in=[k for k in keep if k is not None]).exclude(status=ScoreSet.Status.BUILDING)
    for ss in old:
        ss.delete()

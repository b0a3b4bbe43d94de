"""Batch scoring: every active visitor's top list into a new ScoreSet, then one serving pointer flip."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from shop.catalog.models import Product
from shop.events.models import Event, Visitor

from . import keys
from .models import ModelVersion, Recommendation, ScoreSet, ServingPointer, TaskRun
from .runs import RunClosed, task_run_lock_open, task_run_progress

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

    if fanout_enabled():
        return recommendations_batch_score_fanout(run_id=run_id)
    k = settings.RECS_TOP_K
    chunk = settings.RECS_SCORE_CHUNK
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None:
        raise RuntimeError("no active model version: retrain first")
    score_sets_prune()
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
        rows = _recommendation_rows(ranker, batch, products=products, score_set_id=score_set.pk, k=k)
        with transaction.atomic():
            Recommendation.objects.bulk_create(rows, batch_size=5000)
            building = ScoreSet.objects.filter(pk=score_set.pk, status=ScoreSet.Status.BUILDING).update(
                cursor=str(batch[-1][0]), rows=F("rows") + len(rows), visitors=F("visitors") + len(batch)
            )
            if not building:  # the run was reaped and its set failed meanwhile: stop writing into it
                raise RunClosed(f"score set {score_set.pk} is no longer being built")
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
        task_run_lock_open(run_id=run_id)  # a reaped run never publishes (nor flips its run back)
        ss = ScoreSet.objects.select_for_update().get(pk=score_set.pk)
        if ss.status != ScoreSet.Status.BUILDING:
            raise RunClosed(f"score set {ss.pk} is {ss.status}; it is not published")
        ss.status = ScoreSet.Status.COMPLETE
        ss.completed_at = timezone.now()
        ss.save(update_fields=["status", "completed_at"])
        pointer, _ = ServingPointer.objects.select_for_update().get_or_create(id=1)
        pointer.score_set = ss
        pointer.save(update_fields=["score_set", "updated_at"])
    score_sets_prune()
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


def score_sets_prune() -> int:
    """Delete the score sets that will never be served again; return how many.

    Kept: the serving set, the newest other complete set (a quick rollback target) and sets still being
    built by an open run. A set left ``building`` by a run that closed (failed, reaped, killed for good) is
    marked failed first; failed sets go. The storefront reads only the pointer's set, never a failed one.
    """
    ScoreSet.objects.filter(status=ScoreSet.Status.BUILDING).exclude(run__state__in=TaskRun.ACTIVE_STATES).update(
        status=ScoreSet.Status.FAILED
    )
    serving = ServingPointer.objects.filter(id=1).values_list("score_set_id", flat=True).first()
    complete = ScoreSet.objects.filter(status=ScoreSet.Status.COMPLETE).exclude(pk=serving)
    previous = complete.order_by("-completed_at", "-pk").values_list("pk", flat=True).first()
    doomed = ScoreSet.objects.exclude(status=ScoreSet.Status.BUILDING).exclude(
        pk__in=[pk for pk in (serving, previous) if pk is not None]
    )
    pruned = 0
    for ss in doomed:
        ss.delete()
        pruned += 1
    return pruned


def _recommendation_rows(
    ranker, batch: list[tuple[uuid.UUID, str]], *, products: dict[int, int], score_set_id: int, k: int
) -> list[Recommendation]:
    """Rank ``batch`` (visitor id, user key) and keep each visitor's top ``k`` active, in-stock products."""
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
                    score_set_id=score_set_id, visitor_id=visitor_id, product_id=pid, rank=rank, score=float(score)
                )
            )
            rank += 1
            if rank >= k:
                break
    return rows


# ------------------------------------------------------------------------ fan-out across every gpu worker
#
# With RECS_SCORE_FANOUT and a Celery result backend (the Docker stack: Redis), the batch score is a chord:
# one chunk task per RECS_SCORE_CHUNK visitors on the ``gpu`` queue, taken by whichever worker consumes it,
# and a finalize task that flips the serving pointer once, after every chunk succeeded. A chunk replaces its
# own visitors' rows in one transaction, so a chunk that is redelivered (its worker died) or retried writes
# the same rows again, never twice; a chunk that fails for good fails the run and the set is never served.

CHUNK_TASK = "worker.tasks.batch_score_chunk"
FINALIZE_TASK = "worker.tasks.batch_score_finalize"
FAILED_TASK = "worker.tasks.batch_score_failed"

_rankers: dict[tuple[str, str, int | None], Any] = {}


def fanout_enabled() -> bool:
    return bool(settings.RECS_SCORE_FANOUT and settings.CELERY_RESULT_BACKEND)


def chunk_task_id(run_id: uuid.UUID | str, index: int) -> str:
    """Deterministic, so the finalize step can check every chunk's stored outcome by id."""
    return f"{run_id}-chunk-{index:05d}"


def recommendations_batch_score_fanout(*, run_id: uuid.UUID | str) -> dict:
    """Plan the chunks (visitor id ranges) of a new ScoreSet and send them as a chord once this commits.

    Returns ``_pending``: the run stays running until :func:`batch_score_finalize` (or the failure handler)
    closes it.
    """
    from celery import chord, current_app

    from .export import snapshot_latest

    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None:
        raise RuntimeError("no active model version: retrain first")
    snapshot = snapshot_latest()
    if snapshot is None:
        raise RuntimeError("no snapshot to take the shoppers' history from: export first")
    score_set, created = ScoreSet.objects.get_or_create(run_id=run_id, defaults={"model_version": active})
    if score_set.status == ScoreSet.Status.COMPLETE:
        return {"score_set": score_set.pk, "rows": score_set.rows, "visitors": score_set.visitors, "resumed": False}
    if not created:  # the planner was redelivered: start the set over (chunks rewrite their rows anyway)
        with transaction.atomic():
            score_set.recommendations.all().delete()
            ScoreSet.objects.filter(pk=score_set.pk).update(
                model_version=active, status=ScoreSet.Status.BUILDING, rows=0, visitors=0, cursor=""
            )
    ids = list(_visitors_to_score().order_by("id").values_list("id", flat=True))
    size = max(1, settings.RECS_SCORE_CHUNK)
    bounds: list[tuple[str | None, str | None]] = []
    for i in range(0, len(ids), size):
        after = str(ids[i - 1]) if i else None
        upto = str(ids[i + size - 1]) if i + size < len(ids) else None  # the last chunk is open-ended
        bounds.append((after, upto))
    common = {"run_id": str(run_id), "score_set_id": score_set.pk}
    header = [
        current_app.signature(
            CHUNK_TASK,
            kwargs={
                **common,
                "index": i,
                "after": after,
                "upto": upto,
                "total": len(ids),
                "version": active.version,
                "snapshot": snapshot.name,
            },
            task_id=chunk_task_id(run_id, i),
        )  # fmt: skip
        for i, (after, upto) in enumerate(bounds)
    ]
    body = current_app.signature(FINALIZE_TASK, kwargs={**common, "chunks": len(header)})
    body.link_error(current_app.signature(FAILED_TASK, kwargs=common, immutable=True))
    if header:
        transaction.on_commit(lambda: chord(header)(body))
    else:  # nobody to score: publish the empty set the same way
        transaction.on_commit(lambda: body.clone(args=([],)).apply_async())
    task_run_progress(
        run_id=run_id, stage=f"scoring {len(ids)} visitors in {len(header)} chunks", percent=1 if header else 99
    )
    return {"_pending": True, "score_set": score_set.pk, "chunks": len(header), "visitors_planned": len(ids)}


def _ranker_for(*, version: str, snapshot: str):
    """One loaded pipeline per worker process, reused by every chunk of the same version and snapshot."""
    from . import engine
    from .export import _snapshot_root

    key = (version, snapshot, settings.RECS_MAX_PER_CATEGORY or None)
    if key not in _rankers:
        _rankers.clear()
        _rankers[key] = engine.load_ranker(
            model_dir=Path(settings.MODEL_DIR),
            version=version,
            snapshot=_snapshot_root() / snapshot,
            max_per_category=settings.RECS_MAX_PER_CATEGORY or None,
        )
    return _rankers[key]


def batch_score_chunk(
    *,
    run_id: str,
    score_set_id: int,
    index: int,
    after: str | None,
    upto: str | None,
    total: int,
    version: str,
    snapshot: str,
) -> dict:
    """Score the visitors with ``after < id <= upto`` and replace their rows in the set, in one transaction."""
    status = ScoreSet.objects.filter(pk=score_set_id).values_list("status", flat=True).first()
    if status != ScoreSet.Status.BUILDING:
        return {"index": index, "visitors": 0, "rows": 0, "skipped": f"score set {status or 'gone'}"}
    t0 = time.perf_counter()
    ranker = _ranker_for(version=version, snapshot=snapshot)
    todo = _visitors_to_score().order_by("id")
    if after:
        todo = todo.filter(id__gt=uuid.UUID(after))
    if upto:
        todo = todo.filter(id__lte=uuid.UUID(upto))
    batch = [(vid, keys.user_key(visitor_id=vid, user_id=uid)) for vid, uid in todo.values_list("id", "user_id")]
    products = dict(Product.objects.filter(is_active=True).values_list("id", "stock"))
    rows = _recommendation_rows(ranker, batch, products=products, score_set_id=score_set_id, k=settings.RECS_TOP_K)
    with transaction.atomic():
        Recommendation.objects.filter(score_set_id=score_set_id, visitor_id__in=[v for v, _ in batch]).delete()
        Recommendation.objects.bulk_create(rows, batch_size=5000)
        # progress only (a redelivered chunk counts twice here); the exact totals are counted at the end
        ScoreSet.objects.filter(pk=score_set_id).update(visitors=F("visitors") + len(batch))
    done = ScoreSet.objects.filter(pk=score_set_id).values_list("visitors", flat=True).first() or 0
    task_run_progress(run_id=run_id, stage="scoring visitors", percent=1 + 98.0 * min(done, total) / max(total, 1))
    if settings.RECS_BATCH_THROTTLE_S:  # spares the database between chunks, as in the sequential path
        time.sleep(settings.RECS_BATCH_THROTTLE_S)
    return {"index": index, "visitors": len(batch), "rows": len(rows), "seconds": round(time.perf_counter() - t0, 3)}


def batch_score_finalize(*, run_id: str, score_set_id: int, chunks: int, results: list[dict]) -> dict:
    """Every chunk succeeded: count the set, flip the serving pointer once, close the run."""
    from .runs import State, task_run_finish, task_run_start_unless_running

    results = list({int(r["index"]): r for r in results if isinstance(r, dict) and "index" in r}.values())
    with transaction.atomic():
        ss = ScoreSet.objects.select_for_update().get(pk=score_set_id)
        if ss.status != ScoreSet.Status.BUILDING:  # a duplicate finalize: the first one published it
            return {"score_set": ss.pk, "status": ss.status, "duplicate": True}
        counts = Recommendation.objects.filter(score_set_id=ss.pk).aggregate(
            rows=Count("id"), visitors=Count("visitor_id", distinct=True)
        )
        ss.status = ScoreSet.Status.COMPLETE
        ss.completed_at = timezone.now()
        ss.rows = counts["rows"]
        ss.visitors = sum(int(r.get("visitors", 0)) for r in results if not r.get("skipped"))
        ss.save(update_fields=["status", "completed_at", "rows", "visitors"])
        pointer, _ = ServingPointer.objects.select_for_update().get_or_create(id=1)
        pointer.score_set = ss
        pointer.save(update_fields=["score_set", "updated_at"])
    score_sets_prune()
    workers: dict[str, int] = {}
    for r in results:
        workers[r.get("hostname") or "?"] = workers.get(r.get("hostname") or "?", 0) + 1
    active = ModelVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()
    result = {
        "score_set": ss.pk,
        "rows": ss.rows,
        "visitors": ss.visitors,
        "resumed": False,
        "model_version": ModelVersion.objects.filter(pk=ss.model_version_id).values_list("version", flat=True).first(),
        "chunks": chunks,
        "workers": workers,
        "chunk_seconds": round(sum(float(r.get("seconds", 0)) for r in results), 3),
    }
    closed = task_run_finish(run_id=run_id, state=State.SUCCEEDED, result=result)
    if closed and active != ss.model_version_id:  # a promotion happened meanwhile: score for the new champion
        task_run_start_unless_running(kind=Kind.BATCH_SCORE, trigger=f"after batch_score {run_id}")
    return result


def batch_score_failed(*, run_id: str, score_set_id: int, error: str = "") -> None:
    """A chunk failed for good: the set is never served, the run fails and stops blocking new ones."""
    from .runs import task_run_fail

    ScoreSet.objects.filter(pk=score_set_id, status=ScoreSet.Status.BUILDING).update(status=ScoreSet.Status.FAILED)
    task_run_fail(run_id=run_id, error=f"a batch-scoring chunk failed: {error}"[:4000])

"""Background work on recommendations: export, retrain, batch score, evaluate, benchmark.

Every run is a ``TaskRun`` row created by :func:`task_run_start` (the one "already running" check, done by
the database: a unique constraint on ``TaskRun.active_kind``) and executed by :func:`task_run_execute`
(called by the thin Celery tasks in ``worker/tasks.py``, or inline by ``manage.py retrain --inline``).
The work itself calls ``recommender/`` through :mod:`shop.recs.engine`; the recommender never touches
the database, so everything it needs is exported first to a Parquet snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from shop.catalog.models import Product
from shop.events.models import Event, Visitor

from . import keys
from .models import AcceleratorBenchmark, ModelVersion, Recommendation, ScoreSet, ServingPointer, TaskRun

log = logging.getLogger(__name__)

Kind = TaskRun.Kind
State = TaskRun.State

INTERACTION_SCHEMA_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "placement", "position", "device")
ITEM_SCHEMA_COLUMNS = ("item_id", "category", "brand", "price", "created", "in_stock")


class AlreadyRunning(Exception):
    """A run of this kind is queued or running; ``run`` is that run."""

    def __init__(self, run: TaskRun | None, kind: str):
        self.run = run
        self.kind = kind
        super().__init__(f"a {kind} run is already {'running' if run is None else run.state} ({run and run.id})")


class RunLocked(Exception):
    """Another process is executing a run of this kind right now (execution lock held)."""


# ------------------------------------------------------------------------------------------------ runs


def _task_for(kind: str):
    from worker import tasks  # late: worker.tasks imports this module

    return {
        Kind.EXPORT: tasks.export_training_data,
        Kind.RETRAIN: tasks.retrain,
        Kind.BATCH_SCORE: tasks.batch_score,
        Kind.EVALUATE: tasks.evaluate,
        Kind.BENCHMARK: tasks.benchmark_accelerator,
    }[kind]


def task_run_start(*, kind: str, params: dict | None = None, trigger: str = "", enqueue: bool = True) -> TaskRun:
    """Create a pending run and queue its task once the row is committed.

    Raises :class:`AlreadyRunning` when a run of ``kind`` is pending or running: the unique constraint on
    ``active_kind`` makes this hold across processes and machines, so two requests never queue twice.
    """
    if kind not in Kind.values:
        raise ValueError(f"unknown run kind {kind!r}")
    _task_runs_reap_stale(kind=kind)
    try:
        with transaction.atomic():
            run = TaskRun.objects.create(kind=kind, active_kind=kind, params=params or {}, trigger=trigger)
            if enqueue:
                # task id = run id, so the shop can read progress by the id the API returned
                _task_for(kind).apply_async_on_commit(kwargs={"run_id": str(run.id)}, task_id=str(run.id))
    except IntegrityError:
        raise AlreadyRunning(TaskRun.objects.filter(active_kind=kind).first(), kind) from None
    return run


def _task_runs_reap_stale(*, kind: str) -> None:
    """A run whose worker vanished for good (no heartbeat for RECS_STALE_RUN_S) stops blocking new runs."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.RECS_STALE_RUN_S)
    stale = TaskRun.objects.filter(active_kind=kind).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    for run in stale:
        _task_run_finish(run_id=run.id, state=State.FAILED, error="abandoned: no progress for too long")


def _device_name() -> str:
    """The accelerator this process computes on, e.g. "cuda:0 NVIDIA H100 80GB HBM3" or "cpu (16 threads)".

    Asked inside the task, i.e. after any fork: CUDA is never initialised in a parent process.
    """
    try:
        import torch

        if torch.cuda.is_available():
            i = torch.cuda.current_device()
            return f"cuda:{i} {torch.cuda.get_device_name(i)}"
        return f"cpu ({torch.get_num_threads()} threads)"
    except Exception:  # torch missing or broken: still record something true
        return f"cpu ({os.cpu_count()} cores)"


def task_run_begin(*, run_id: uuid.UUID | str, retries: int = 0, hostname: str = "") -> TaskRun | None:
    """Count one delivery of the run's task and mark it running.

    Returns None when there is nothing to do: the run already finished (a duplicate delivery), or its task
    has been delivered more than RECS_MAX_DELIVERIES times without being retried on purpose, which means
    it keeps killing its worker (OOM, segfault): it is marked failed instead of being requeued forever.
    """
    with transaction.atomic():
        run = TaskRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            log.warning("task run %s does not exist; nothing to do", run_id)
            return None
        if run.is_finished:
            log.info("task run %s already %s; duplicate delivery ignored", run_id, run.state)
            return None
        run.deliveries += 1
        lost = run.deliveries - 1 - retries  # deliveries that neither finished nor asked for a retry
        if lost >= settings.RECS_MAX_DELIVERIES:
            run.save(update_fields=["deliveries"])
            _task_run_finish(
                run_id=run.id,
                state=State.FAILED,
                error=f"gave up: delivered {run.deliveries} times, the worker died {lost} times while running it",
            )
            return None
        now = timezone.now()
        run.state = State.RUNNING
        run.stage = "starting" if run.deliveries == 1 else f"resuming (delivery {run.deliveries})"
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.hostname = hostname or socket.gethostname()
        run.device = _device_name()
        run.save(update_fields=["deliveries", "state", "stage", "started_at", "heartbeat_at", "hostname", "device"])
    return run


def task_run_progress(*, run_id: uuid.UUID | str, stage: str, percent: float | None = None) -> None:
    """Publish progress (and a heartbeat) in its own short transaction, visible to the shop at once."""
    fields: dict[str, Any] = {"stage": stage[:64], "heartbeat_at": timezone.now()}
    if percent is not None:
        fields["percent"] = round(max(0.0, min(100.0, float(percent))), 2)
    TaskRun.objects.filter(pk=run_id, state=State.RUNNING).update(**fields)


def _task_run_finish(*, run_id: uuid.UUID | str, state: str, result: dict | None = None, error: str = "") -> None:
    fields: dict[str, Any] = {"state": state, "active_kind": None, "finished_at": timezone.now(), "error": error}
    if state == State.SUCCEEDED:
        fields.update(stage="done", percent=100.0)
    else:
        fields["stage"] = "failed"
    if result is not None:
        fields["result"] = result
    TaskRun.objects.filter(pk=run_id).update(**fields)


def task_run_fail(*, run_id: uuid.UUID | str, error: str) -> None:
    _task_run_finish(run_id=run_id, state=State.FAILED, error=error)


@contextmanager
def run_lock(kind: str) -> Iterator[bool]:
    """Execution lock per kind, held while a run executes; yields whether it was acquired.

    PostgreSQL: a session advisory lock, released by the server when the worker's connection dies
    (kill -9 included). SQLite (the embedded demo, one machine): an flock on a file under var/,
    released by the kernel when the process dies.
    """
    key = zlib.crc32(f"shop.recs:{kind}".encode())
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [key])
            got = bool(cur.fetchone()[0])
        try:
            yield got
        finally:
            if got:
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    import fcntl

    lock_dir = Path(settings.VAR_DIR) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"recs-{kind}.lock", "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            got = False
        try:
            yield got
        finally:
            if got:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def task_run_execute(
    *,
    run_id: uuid.UUID | str,
    retries: int = 0,
    will_retry: Callable[[BaseException], bool] = lambda exc: False,
    hostname: str = "",
) -> dict:
    """Run one TaskRun to the end: count the delivery, take the execution lock, do the work, record the outcome.

    ``will_retry(exc)`` tells whether the caller (Celery's autoretry) will try again after ``exc``: then the
    run stays open (state running, error noted) instead of failing.
    """
    run = task_run_begin(run_id=run_id, retries=retries, hostname=hostname)
    if run is None:
        return {"run_id": str(run_id), "skipped": True}
    body = _BODIES[run.kind]
    try:
        with run_lock(run.kind) as got:
            if not got:
                raise RunLocked(f"another {run.kind} run is executing")
            result = body(run_id=run.id)
    except BaseException as exc:
        if will_retry(exc):
            TaskRun.objects.filter(pk=run.id).update(error=f"retrying after {exc!r}"[:2000], stage="waiting to retry")
        else:
            task_run_fail(run_id=run.id, error="".join(traceback.format_exception_only(exc)).strip()[:4000])
        raise
    then = result.pop("_then", None)
    _task_run_finish(run_id=run.id, state=State.SUCCEEDED, result=result)
    if then:
        with suppress(AlreadyRunning):
            task_run_start(kind=then, trigger=f"after {run.kind} {run.id}")
    return {"run_id": str(run.id), **{k: v for k, v in result.items() if isinstance(v, str | int | float | bool)}}


# ---------------------------------------------------------------------------------------------- export


def _snapshot_root() -> Path:
    return Path(settings.SNAPSHOT_DIR)


def snapshot_latest() -> Path | None:
    """The newest complete snapshot directory (``snap-<n>-<time>``), or None."""
    root = _snapshot_root()
    if not root.is_dir():
        return None
    snaps = sorted((p for p in root.glob("snap-*") if (p / "manifest.json").is_file()), key=lambda p: p.name)
    return snaps[-1] if snaps else None


def snapshot_manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def training_data_export(*, run_id: uuid.UUID | str | None = None, chunk_size: int | None = None) -> dict:
    """Stream every event into a new versioned Parquet snapshot, in constant memory.

    Rows come through a server-side cursor (``.iterator(chunk_size=...)`` over ``values_list``: tuples, not
    model instances) and are written with pyarrow's ParquetWriter one row group at a time, so 10M events
    never need 10M objects. The snapshot is cut at the largest event id seen at the start (events arriving
    meanwhile go to the next one), written into a temporary directory and renamed into place atomically.
    Columns are those ``recommender.data.load_parquet`` reads.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk = chunk_size or settings.RECS_EXPORT_ROW_GROUP
    t0 = time.perf_counter()
    root = _snapshot_root()
    root.mkdir(parents=True, exist_ok=True)
    max_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    total = Event.objects.filter(id__lte=max_id).count() if run_id else 0
    tmp = root / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        schema = pa.schema(
            [
                ("user_id", pa.string()),
                ("item_id", pa.string()),
                ("event_type", pa.string()),
                ("timestamp", pa.int64()),
                ("placement", pa.string()),
                ("position", pa.int32()),
                ("device", pa.string()),
            ]
        )
        rows = (
            Event.objects.filter(id__lte=max_id)
            .order_by("id")
            .values_list(
                keys.event_user_key(),
                "product_id",
                "type",
                keys.epoch_seconds("occurred_at"),
                "placement",
                "position",
                "device",
            )
            .iterator(chunk_size=min(chunk, 20_000))
        )
        n = 0
        with pq.ParquetWriter(tmp / "interactions.parquet", schema, compression="zstd") as writer:
            buf: list[tuple] = []
            for row in rows:
                buf.append(row)
                if len(buf) >= chunk:
                    writer.write_table(_interactions_table(buf, schema))
                    n += len(buf)
                    buf = []
                    if run_id:
                        task_run_progress(run_id=run_id, stage="exporting events", percent=90.0 * n / max(total, 1))
            if buf:
                writer.write_table(_interactions_table(buf, schema))
                n += len(buf)
        n_items = _export_items(tmp / "items.parquet")
        number = _next_snapshot_number(root)
        name = f"snap-{number:06d}-{timezone.now():%Y%m%dT%H%M%S}"
        manifest = {
            "name": name,
            "events": n,
            "items": n_items,
            "max_event_id": max_id,
            "created_at": timezone.now().isoformat(),
            "interactions": "interactions.parquet",
            "items_file": "items.parquet",
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _snapshots_prune(root)
    return {"snapshot": name, "path": str(root / name), "events": n, "items": n_items, "max_event_id": max_id,
            "seconds": manifest["seconds"]}  # fmt: skip


def _interactions_table(buf: list[tuple], schema):
    import pyarrow as pa

    user, item, kind, ts, placement, position, device = zip(*buf, strict=True)
    return pa.Table.from_arrays(
        [
            pa.array(user, pa.string()),
            pa.array(item, pa.int64()).cast(pa.string()),
            pa.array(kind, pa.string()),
            pa.array(ts, pa.int64()),
            pa.array(placement, pa.string()),
            pa.array([-1 if p is None else p for p in position], pa.int32()),
            pa.array(device, pa.string()),
        ],
        schema=schema,
    )


def _export_items(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = Product.objects.order_by("id").values_list(
        "id", "category_id", "brand_id", "price", keys.epoch_seconds("created_at"), "stock", "is_active"
    )
    cols: dict[str, list] = {c: [] for c in ITEM_SCHEMA_COLUMNS}
    for pid, cat, brand, price, created, stock, active in rows.iterator(chunk_size=10_000):
        cols["item_id"].append(str(pid))
        cols["category"].append(str(cat))
        cols["brand"].append("" if brand is None else str(brand))
        cols["price"].append(float(price))
        cols["created"].append(int(created or 0))
        cols["in_stock"].append(bool(active and stock > 0))
    table = pa.table(
        {
            "item_id": pa.array(cols["item_id"], pa.string()),
            "category": pa.array(cols["category"], pa.string()),
            "brand": pa.array(cols["brand"], pa.string()),
            "price": pa.array(cols["price"], pa.float64()),
            "created": pa.array(cols["created"], pa.int64()),
            "in_stock": pa.array(cols["in_stock"], pa.bool_()),
        }
    )
    pq.write_table(table, path, compression="zstd")
    return table.num_rows


def _next_snapshot_number(root: Path) -> int:
    numbers = []
    for p in root.glob("snap-*"):
        try:
            numbers.append(int(p.name.split("-")[1]))
        except (IndexError, ValueError):
            continue
    return max(numbers, default=0) + 1


def _snapshots_prune(root: Path) -> None:
    snaps = sorted(p for p in root.glob("snap-*") if p.is_dir())
    for old in snaps[: max(0, len(snaps) - settings.SNAPSHOTS_KEEP)]:
        shutil.rmtree(old, ignore_errors=True)


def _export_body(*, run_id: uuid.UUID) -> dict:
    task_run_progress(run_id=run_id, stage="exporting events", percent=0)
    return training_data_export(run_id=run_id)


# --------------------------------------------------------------------------------------------- retrain


def model_retrain(*, run_id: uuid.UUID | str) -> dict:
    """Export if events arrived since the latest snapshot, train on it, register the version, apply the
    champion/challenger gate, and on promotion queue a batch score (sent once this commits)."""
    from . import engine

    run = TaskRun.objects.get(pk=run_id)
    snap = snapshot_latest()
    newest_event = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if run.params.get("export", True) and (snap is None or snapshot_manifest(snap)["max_event_id"] < newest_event):
        task_run_progress(run_id=run_id, stage="exporting events", percent=1)
        exported = training_data_export(chunk_size=None)
        snap = Path(exported["path"])
    if snap is None:
        raise RuntimeError("no events to train on: the snapshot would be empty")
    manifest = snapshot_manifest(snap)
    if manifest["events"] == 0:
        raise RuntimeError("no events to train on: the latest snapshot is empty")

    def on_progress(stage: str, fraction: float) -> None:
        task_run_progress(run_id=run_id, stage=stage, percent=10 + 80 * fraction)

    task_run_progress(run_id=run_id, stage="training", percent=10)
    trained = engine.train_and_register(
        snapshot=snap, model_dir=Path(settings.MODEL_DIR), overrides=settings.RECS_TRAIN_CONFIG, progress=on_progress
    )
    task_run_progress(run_id=run_id, stage="gate", percent=92)
    decision = engine.promote_if_better(
        model_dir=Path(settings.MODEL_DIR), version=trained.version, tolerance=settings.RECS_GATE_TOLERANCE
    )
    with transaction.atomic():
        mv = ModelVersion.objects.create(
            version=trained.version,
            metrics=trained.metrics,
            gate_reasons=decision.reasons,
            training_seconds=trained.seconds,
            examples=trained.examples,
            snapshot=snap.name,
            device=TaskRun.objects.values_list("device", flat=True).get(pk=run_id),
            status=ModelVersion.Status.REJECTED if not decision.passed else ModelVersion.Status.CANDIDATE,
            run_id=run_id,
        )
        batch_run = None
        if decision.passed:
            model_version_activate(version=mv)
            try:
                # queued when this transaction commits (apply_async_on_commit), so it sees the new version
                batch_run = task_run_start(kind=Kind.BATCH_SCORE, trigger=f"promotion {mv.version}")
            except AlreadyRunning:
                # the running batch score notices at its end that the champion changed and starts another
                batch_run = None
    return {
        "batch_score_run": str(batch_run.id) if batch_run else None,
        "version": mv.version,
        "promoted": decision.passed,
        "reasons": decision.reasons,
        "metrics": trained.metrics,
        "training_seconds": round(trained.seconds, 3),
        "examples": trained.examples,
        "snapshot": snap.name,
    }


@transaction.atomic
def model_version_activate(*, version: ModelVersion) -> ModelVersion:
    """Make ``version`` the one active row (the partial unique constraint allows only one)."""
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
        is_active=False, status=ModelVersion.Status.RETIRED
    )
    version.is_active = True
    version.status = ModelVersion.Status.ACTIVE
    version.save(update_fields=["is_active", "status"])
    return version


def retrain_due() -> tuple[bool, str]:
    """Beat's question: retrain now? Yes after RECS_RETRAIN_EVERY_MINUTES since the last retrain or after
    RECS_RETRAIN_AFTER_EVENTS new events since the latest snapshot, whichever comes first."""
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is None:
        return False, "no events yet"
    snap = snapshot_latest()
    exported_to = snapshot_manifest(snap)["max_event_id"] if snap else 0
    new_events = Event.objects.filter(id__gt=exported_to).count()
    if new_events == 0:
        return False, "no new events since the latest snapshot"
    if new_events >= settings.RECS_RETRAIN_AFTER_EVENTS:
        return True, f"{new_events} new events"
    last = TaskRun.objects.filter(kind=Kind.RETRAIN, state=State.SUCCEEDED).order_by("-finished_at").first()
    if last is None:
        return True, "never trained"
    age = timezone.now() - last.finished_at
    if age >= dt.timedelta(minutes=settings.RECS_RETRAIN_EVERY_MINUTES):
        return True, f"last retrain {age} ago"
    return False, f"{new_events} new events, last retrain {age} ago"


def retrain_if_due() -> dict:
    due, why = retrain_due()
    if not due:
        return {"started": False, "reason": why}
    try:
        run = task_run_start(kind=Kind.RETRAIN, trigger="schedule")
    except AlreadyRunning as e:
        return {"started": False, "reason": str(e)}
    return {"started": True, "reason": why, "run_id": str(run.id)}


# ----------------------------------------------------------------------------------------- batch score


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


# ----------------------------------------------------------------------------------- evaluate / bench


def model_evaluate(*, run_id: uuid.UUID | str) -> dict:
    """Offline metrics of a version (params ``version``, default the active one) on the latest snapshot."""
    from . import engine

    run = TaskRun.objects.get(pk=run_id)
    version = (
        run.params.get("version")
        or ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    )
    if not version:
        raise RuntimeError("no model version to evaluate")
    snap = snapshot_latest()
    if snap is None:
        raise RuntimeError("no snapshot: export first")
    task_run_progress(run_id=run_id, stage=f"evaluating {version}", percent=5)
    metrics = engine.evaluate(snapshot=snap, model_dir=Path(settings.MODEL_DIR), version=version)
    ModelVersion.objects.filter(version=version).update(metrics={**metrics, "evaluated_on": snap.name})
    return {"version": version, "snapshot": snap.name, "metrics": metrics}


def accelerator_benchmark(*, run_id: uuid.UUID | str) -> dict:
    """Run the recommender's benchmark on this node's devices and store the figures."""
    from . import engine

    run = TaskRun.objects.get(pk=run_id)
    task_run_progress(run_id=run_id, stage="benchmarking", percent=5)
    results = engine.benchmark(model_dir=Path(settings.MODEL_DIR), options=run.params)
    bench = AcceleratorBenchmark.objects.create(
        device=run.device or _device_name(), hostname=run.hostname, results=results, run_id=run_id
    )
    return {"benchmark": bench.pk, "device": bench.device}


_BODIES: dict[str, Callable[..., dict]] = {
    Kind.EXPORT: _export_body,
    Kind.RETRAIN: model_retrain,
    Kind.BATCH_SCORE: recommendations_batch_score,
    Kind.EVALUATE: model_evaluate,
    Kind.BENCHMARK: accelerator_benchmark,
}

"""Task runs: one ``TaskRun`` row per piece of background work, its queueing, progress, locks and outcome.

:func:`task_run_start` creates the row (the one "already running" check, done by the database: a unique
constraint on ``TaskRun.active_kind``) and sends the worker's task by name once the row is committed; the
shop never imports the worker. :func:`shop.recs.execution.task_run_execute` does the work when the task
arrives (or inline, ``manage.py retrain --inline``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from .models import ScoreSet, TaskRun

log = logging.getLogger(__name__)

Kind = TaskRun.Kind
State = TaskRun.State

#: The worker's task for each kind of run, by name (``worker/tasks.py`` registers them under these names).
TASK_NAMES = {
    Kind.EXPORT: "worker.tasks.export_training_data",
    Kind.RETRAIN: "worker.tasks.retrain",
    Kind.BATCH_SCORE: "worker.tasks.batch_score",
    Kind.EVALUATE: "worker.tasks.evaluate",
    Kind.BENCHMARK: "worker.tasks.benchmark_accelerator",
}


class AlreadyRunning(Exception):
    """A run of this kind is queued or running; ``run`` is that run."""

    def __init__(self, run: TaskRun | None, kind: str):
        self.run = run
        self.kind = kind
        super().__init__(f"a {kind} run is already {'running' if run is None else run.state} ({run and run.id})")


class RunLocked(Exception):
    """Another process is executing a run of this kind right now (execution lock held)."""


class RunClosed(Exception):
    """The run was closed while its work went on (reaped as abandoned, or finished): its outcome is not published."""


#: The stage of a pending run whose task the broker did not take (it was down): the outbox.
#: :func:`task_runs_send_pending` sends them once it is back (beat, and a retry in the process that failed).
TO_SEND = "to send"

try:  # redis is the production broker; the embedded demo's filesystem broker runs without the client
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError

    BROKER_DOWN: tuple[type[BaseException], ...] = (
        BrokerOperationalError, OSError, _RedisConnectionError, _RedisTimeoutError
    )  # fmt: skip
except ImportError:  # pragma: no cover
    BROKER_DOWN = (BrokerOperationalError, OSError)


def task_send(*, kind: str, run_id: uuid.UUID | str) -> None:
    """Queue the worker's task for a run once the current transaction commits (at once outside one).

    Sent by name through the process's Celery app (the worker's app, loaded at start-up as an installed
    app), so its routing (``gpu`` queue) and broker apply. The task id is the run id: the shop reads progress
    by the id the API returned. A broker that refuses the message never fails the caller (the run's row is
    committed already): the run stays pending with stage :data:`TO_SEND` and is sent when the broker returns.
    """
    transaction.on_commit(partial(_task_send_now, kind=kind, run_id=run_id))


def _publish(*, kind: str, run_id: uuid.UUID | str) -> None:
    current_app.send_task(TASK_NAMES[kind], kwargs={"run_id": str(run_id)}, task_id=str(run_id))


def _task_send_now(*, kind: str, run_id: uuid.UUID | str) -> bool:
    try:
        _publish(kind=kind, run_id=run_id)
    except BROKER_DOWN as exc:
        TaskRun.objects.filter(pk=run_id, state=State.PENDING).update(stage=TO_SEND)
        log.warning("broker unavailable: %s run %s kept to send when it returns (%s: %s)", kind, run_id,
                    type(exc).__name__, exc)  # fmt: skip
        _outbox_retry_start()
        return False
    return True


def task_runs_send_pending(*, limit: int = 100) -> int:
    """Send the tasks of pending runs the broker refused earlier (the outbox), oldest first; return how many
    are still waiting. Stops at the first refusal (the broker is still down). Each run is locked while its
    task is sent, so two drains never send one run twice; the worker's delivery count covers the rest."""
    ids = list(
        TaskRun.objects.filter(state=State.PENDING, stage=TO_SEND).order_by("created_at").values_list("pk", "kind")
    )
    for run_id, kind in ids[:limit]:
        with transaction.atomic():
            locked = TaskRun.objects.select_for_update(skip_locked=True).filter(
                pk=run_id, state=State.PENDING, stage=TO_SEND
            )
            if locked.values_list("pk").first() is None:
                continue  # sent by another drain, started or reaped meanwhile
            try:
                _publish(kind=kind, run_id=run_id)
            except BROKER_DOWN as exc:
                log.info("broker still unavailable (%s); %d run(s) to send", type(exc).__name__, len(ids))
                break
            locked.update(stage="queued")
            log.info("%s run %s sent after the broker returned", kind, run_id)
    return TaskRun.objects.filter(state=State.PENDING, stage=TO_SEND).count()


_outbox_lock = threading.Lock()
_outbox_thread: threading.Thread | None = None


def _outbox_retry_start() -> None:
    """Retry the outbox from this process every RECS_OUTBOX_RETRY_S until it is empty (beat drains it too,
    every RECS_OUTBOX_EVERY_S, should this process end first). 0 turns the in-process retry off."""
    global _outbox_thread
    every = settings.RECS_OUTBOX_RETRY_S
    if not every:
        return
    with _outbox_lock:
        if _outbox_thread is not None and _outbox_thread.is_alive():
            return
        _outbox_thread = threading.Thread(target=_outbox_retry_loop, args=(every,), name="runs-outbox", daemon=True)
        _outbox_thread.start()


def _outbox_retry_loop(every: float) -> None:
    deadline = time.monotonic() + settings.RECS_STALE_RUN_S
    try:
        while time.monotonic() < deadline:
            time.sleep(every)
            try:
                if task_runs_send_pending() == 0:
                    return
            except Exception:  # the database may be away too: try again next round
                log.warning("outbox retry failed", exc_info=True)
                close_old_connections()
    finally:
        connection.close()


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
                task_send(kind=kind, run_id=run.id)
    except IntegrityError:
        raise AlreadyRunning(TaskRun.objects.filter(active_kind=kind).first(), kind) from None
    return run


def task_run_start_unless_running(*, kind: str, trigger: str) -> TaskRun | None:
    """Start a run of ``kind`` as a follow-up of something else (a promotion, a finished run); None when one
    is already pending or running (that one will do: a batch score checks the champion at its end)."""
    try:
        return task_run_start(kind=kind, trigger=trigger)
    except AlreadyRunning:
        return None


def _task_runs_reap_stale(*, kind: str) -> None:
    """A run whose worker vanished for good (no heartbeat for RECS_STALE_RUN_S) stops blocking new runs."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.RECS_STALE_RUN_S)
    stale = TaskRun.objects.filter(active_kind=kind).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    for run in stale:
        task_run_finish(run_id=run.id, state=State.FAILED, error="abandoned: no progress for too long")


def device_name() -> str:
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
            task_run_finish(
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
        run.device = device_name()
        run.save(update_fields=["deliveries", "state", "stage", "started_at", "heartbeat_at", "hostname", "device"])
    return run


def task_run_progress(*, run_id: uuid.UUID | str, stage: str, percent: float | None = None) -> None:
    """Publish progress (and a heartbeat) in its own short transaction, visible to the shop at once."""
    fields: dict[str, Any] = {"stage": stage[:64], "heartbeat_at": timezone.now()}
    if percent is not None:
        fields["percent"] = round(max(0.0, min(100.0, float(percent))), 2)
    TaskRun.objects.filter(pk=run_id, state=State.RUNNING).update(**fields)


def task_run_finish(*, run_id: uuid.UUID | str, state: str, result: dict | None = None, error: str = "") -> bool:
    """Close a run that is still open (pending or running); return whether it was.

    Conditional (``UPDATE ... WHERE state IN ('pending', 'running')``): a run the reaper already marked
    failed, or a duplicate finish, changes nothing, so a late worker can never flip a reaped run back to
    succeeded. A failed run's score set still being built is marked failed with it: it is never served.
    """
    fields: dict[str, Any] = {"state": state, "active_kind": None, "finished_at": timezone.now(), "error": error}
    if state == State.SUCCEEDED:
        fields.update(stage="done", percent=100.0)
    else:
        fields["stage"] = "failed"
    if result is not None:
        fields["result"] = result
    with transaction.atomic():
        closed = TaskRun.objects.filter(pk=run_id, state__in=TaskRun.ACTIVE_STATES).update(**fields) == 1
        if closed and state == State.FAILED:
            ScoreSet.objects.filter(run_id=run_id, status=ScoreSet.Status.BUILDING).update(
                status=ScoreSet.Status.FAILED
            )
    if not closed:
        log.warning("task run %s was already closed; %s ignored", run_id, state)
    return closed


def task_run_lock_open(*, run_id: uuid.UUID | str) -> None:
    """Inside a transaction that publishes a run's work: lock its row and raise :class:`RunClosed` unless it is
    still open (pending or running). A run the reaper closed meanwhile publishes nothing (a newer run may
    already be doing the same work)."""
    still_open = TaskRun.objects.select_for_update().filter(pk=run_id, state__in=TaskRun.ACTIVE_STATES)
    if still_open.values_list("pk").first() is None:
        raise RunClosed(f"task run {run_id} is closed (reaped or finished); its work is not published")


def task_run_fail(*, run_id: uuid.UUID | str, error: str) -> None:
    task_run_finish(run_id=run_id, state=State.FAILED, error=error)


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

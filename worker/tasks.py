"""Thin tasks: a run id in, one service call, a small dict out.

Progress, device and outcome are written to the ``TaskRun`` row by ``shop.recs.execution``; here are only
Celery's concerns: queues (see ``worker.celery``), retries with backoff and jitter for transient database
or broker errors, and the time limits.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError

from shop.recs import execution, runs, scoring, training

from .celery import app

try:  # redis is the production broker; the embedded demo runs without the client installed
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    _REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
except ImportError:  # pragma: no cover
    _REDIS_ERRORS = ()

TRANSIENT = (
    OperationalError,
    InterfaceError,
    KombuOperationalError,
    ConnectionError,
    runs.RunLocked,
    *_REDIS_ERRORS,
)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


def _execute(task, run_id: str) -> dict:
    req = task.request

    def will_retry(exc: BaseException) -> bool:
        return (
            isinstance(exc, TRANSIENT) and not isinstance(exc, SoftTimeLimitExceeded) and req.retries < task.max_retries
        )

    return execution.task_run_execute(
        run_id=run_id, retries=req.retries, will_retry=will_retry, hostname=req.hostname or ""
    )


@app.task(bind=True, name="worker.tasks.export_training_data", **RETRY)
def export_training_data(self, run_id: str) -> dict:
    return _execute(self, run_id)


@app.task(bind=True, name="worker.tasks.retrain", **RETRY)
def retrain(self, run_id: str) -> dict:
    return _execute(self, run_id)


@app.task(bind=True, name="worker.tasks.batch_score", **RETRY)
def batch_score(self, run_id: str) -> dict:
    return _execute(self, run_id)


# Fan-out batch scoring (shop.recs.scoring, RECS_SCORE_FANOUT): chunks on the gpu queue, results kept for
# the chord, then one finalize that flips the serving pointer.
@app.task(bind=True, name=scoring.CHUNK_TASK, ignore_result=False, **RETRY)
def batch_score_chunk(self, **kwargs) -> dict:
    return {**scoring.batch_score_chunk(**kwargs), "hostname": self.request.hostname or ""}


@app.task(bind=True, name=scoring.FINALIZE_TASK, **RETRY)
def batch_score_finalize(self, results: list, *, run_id: str, score_set_id: int, chunks: int) -> dict:
    # The chord fires once every header task reported success; check each chunk's stored outcome by id too,
    # so a duplicate report (a chunk redelivered after it had finished) can never publish a partial set.
    missing = [i for i in range(chunks) if not app.AsyncResult(scoring.chunk_task_id(run_id, i)).successful()]
    if missing:
        raise self.retry(countdown=2, max_retries=600, exc=RuntimeError(f"chunks not done yet: {missing[:10]}"))
    return scoring.batch_score_finalize(run_id=run_id, score_set_id=score_set_id, chunks=chunks, results=results)


@app.task(name=scoring.FAILED_TASK)
def batch_score_failed(*, run_id: str, score_set_id: int) -> None:
    scoring.batch_score_failed(run_id=run_id, score_set_id=score_set_id, error="see the worker log")


@app.task(bind=True, name="worker.tasks.evaluate", **RETRY)
def evaluate(self, run_id: str) -> dict:
    return _execute(self, run_id)


@app.task(bind=True, name="worker.tasks.benchmark_accelerator", **RETRY)
def benchmark_accelerator(self, run_id: str) -> dict:
    return _execute(self, run_id)


@app.task(name="worker.tasks.retrain_if_due", **RETRY)
def retrain_if_due() -> dict:
    """Beat, every RECS_CHECK_EVERY_S: start a retrain when enough time passed or enough events arrived."""
    return training.retrain_if_due()


@app.task(name="worker.tasks.task_runs_send_pending")
def task_runs_send_pending() -> dict:
    """Beat, every RECS_OUTBOX_EVERY_S: send the tasks of runs started while the broker was down."""
    return {"still_to_send": runs.task_runs_send_pending()}

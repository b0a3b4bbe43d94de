"""Executing a run: count the delivery, take the execution lock, do the work of its kind, record the outcome.

Called by the thin Celery tasks in ``worker/tasks.py`` and inline by ``manage.py retrain --inline``. The work
of each kind lives in its own module (export, training, scoring, evaluation).
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable

from .evaluation import accelerator_benchmark, model_evaluate
from .export import export_run
from .models import TaskRun
from .runs import (
    RunClosed,
    RunLocked,
    State,
    run_lock,
    task_run_begin,
    task_run_fail,
    task_run_finish,
    task_run_start_unless_running,
)
from .scoring import recommendations_batch_score
from .training import model_retrain

Kind = TaskRun.Kind
log = logging.getLogger(__name__)

_BODIES: dict[str, Callable[..., dict]] = {
    Kind.EXPORT: export_run,
    Kind.RETRAIN: model_retrain,
    Kind.BATCH_SCORE: recommendations_batch_score,
    Kind.EVALUATE: model_evaluate,
    Kind.BENCHMARK: accelerator_benchmark,
}


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
    except RunClosed as exc:  # reaped while it worked: what it did is not published, the run stays failed
        log.warning("%s", exc)
        return {"run_id": str(run.id), "skipped": True}
    except BaseException as exc:
        if will_retry(exc):
            TaskRun.objects.filter(pk=run.id).update(error=f"retrying after {exc!r}"[:2000], stage="waiting to retry")
        else:
            task_run_fail(run_id=run.id, error="".join(traceback.format_exception_only(exc)).strip()[:4000])
        raise
    if result.pop("_pending", False):
        # fanned out (batch scoring as a chord): the last step closes the run, not this one
        return {"run_id": str(run.id), "pending": True}
    then = result.pop("_then", None)
    if not task_run_finish(run_id=run.id, state=State.SUCCEEDED, result=result):
        return {"run_id": str(run.id), "skipped": True}  # reaped meanwhile: it stays failed
    if then:
        task_run_start_unless_running(kind=then, trigger=f"after {run.kind} {run.id}")
    return {"run_id": str(run.id), **{k: v for k, v in result.items() if isinstance(v, str | int | float | bool)}}

"""Hole 6: ``worker_max_memory_per_child`` works in the pool the worker runs (prefork, one child): a real
worker replaces its child once a task left it above the limit, and keeps it while it stays below. Under
``--pool solo`` (the pool before) there is no child to replace and the limit did nothing.

Also: the worker's log carries no fbgemm/torchrec INFO chatter (each embedding table used to log its whole
argument list), while their warnings still show.
"""

from __future__ import annotations

import logging
import uuid

import psutil
import pytest
from celery import current_app

from shop.recs import runs
from tests.worker.conftest import build_shop, run_finished, wait_for

PREFORK = ("--pool", "prefork", "--concurrency", "1")
LIMIT_KIB = 450_000  # above an idle child (Django + Celery), below one that has trained a torch model


def _live_children(worker) -> list[psutil.Process]:
    """The pool's children, leaving out one that exited and is not reaped yet (a zombie)."""
    out = []
    for c in psutil.Process(worker.proc.pid).children():
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.NoSuchProcess:
            pass
    return out


def _child(worker) -> psutil.Process:
    children = wait_for(lambda: _live_children(worker), timeout=30, what="the pool's child")
    assert len(children) == 1, children
    return children[0]


def _send_and_wait(worker, kind: str) -> None:
    run = runs.task_run_start(kind=kind, trigger="test")
    done = wait_for(lambda: run_finished(run.id), timeout=180, interval=0.2, what=f"{kind} to finish")
    assert done.state == "succeeded", f"{done.error}\n{worker.log()}"


def _send_light_and_wait(worker) -> None:
    """The outbox drain (beat's task): one query, no pandas or torch, so the child's size is its idle size
    on any machine (an export's pandas and pyarrow can bring a child near the limit)."""
    task_id = str(uuid.uuid4())
    current_app.send_task("worker.tasks.task_runs_send_pending", task_id=task_id)
    wait_for(lambda: f"[{task_id}] succeeded" in worker.log(), timeout=60, what="the outbox drain to finish")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("worker_pool", [PREFORK])
# the helper above waits for the outbox drain's "succeeded" line, which a quiet worker leaves out
@pytest.mark.parametrize(
    "worker_extra_env",
    [{"CELERY_WORKER_MAX_MEMORY_PER_CHILD": str(LIMIT_KIB), "WORKER_LOG_ROUTINE_TASKS": "true"}],
)
def test_a_child_over_the_memory_limit_is_replaced_and_one_below_it_is_kept(celery_worker):
    build_shop(visitors=16, products=40)
    first = _child(celery_worker)
    idle_kib = first.memory_info().rss // 1024
    assert idle_kib < LIMIT_KIB, f"an idle child already uses {idle_kib} KiB"

    _send_light_and_wait(celery_worker)  # a database query: the child stays as small as it was idle
    after_light = _child(celery_worker)
    assert after_light.pid == first.pid, "a child below the limit was replaced"

    _send_and_wait(celery_worker, "retrain")  # torch, torchrec, a model: well above the limit
    replacement = wait_for(
        lambda: [c for c in _live_children(celery_worker) if c.pid != first.pid],
        timeout=30,
        what="a fresh child",
    )[0]
    assert not first.is_running() or first.status() == psutil.STATUS_ZOMBIE  # the old child exited
    assert replacement.memory_info().rss // 1024 < LIMIT_KIB
    log = celery_worker.log()
    assert "[TBE=" not in log and "SplitTableBatchedEmbeddingBagsCodegen Arguments" not in log, log[-3000:]

    # the fresh child works. (The retrain's promotion also queued a batch score, which loads torch: that child
    # may be replaced again in turn, so which child runs this export is not fixed.)
    _send_and_wait(celery_worker, "export")
    assert _child(celery_worker).is_running()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_worker_leaves_out_an_idle_outbox_sweep_but_logs_other_tasks(celery_worker):
    """Beat sends the outbox sweep every 15 s; a sweep that found nothing to send writes no line, while the
    popularity refresh sent after it (the same solo worker runs them in order) logs as every task does."""
    quiet, loud = str(uuid.uuid4()), str(uuid.uuid4())
    current_app.send_task("worker.tasks.task_runs_send_pending", task_id=quiet)
    current_app.send_task("worker.popularity.refresh", task_id=loud)
    wait_for(lambda: f"[{loud}] succeeded" in celery_worker.log(), timeout=60, what="the refresh to finish")
    log = celery_worker.log()
    assert f"[{loud}] received" in log and quiet not in log, log[-3000:]


def test_routine_chatter_filter_keeps_what_matters():
    from shop.ops.log_filters import RoutineTaskChatter

    chatter = RoutineTaskChatter(idle={"t.sweep": "{'n': 0}"}, entries=("sweep-entry",))

    def record(logger: str, level: int, msg: str, args=None, data=None) -> logging.LogRecord:
        rec = logging.LogRecord(logger, level, "/x.py", 1, msg, args, None)
        if data is not None:
            rec.data = data
        return rec

    beat = "Scheduler: Sending due task %s (%s)"
    assert not chatter.filter(record("celery.beat", logging.INFO, beat, ("sweep-entry", "t.sweep")))
    assert chatter.filter(record("celery.beat", logging.INFO, beat, ("retrain-entry", "t.retrain")))
    sweep = {"name": "t.sweep", "id": "1"}
    assert not chatter.filter(record("celery.worker.strategy", logging.INFO, "received", data=sweep))
    assert not chatter.filter(
        record("celery.app.trace", logging.INFO, "ok", data={**sweep, "return_value": "{'n': 0}"})
    )
    assert chatter.filter(record("celery.app.trace", logging.INFO, "ok", data={**sweep, "return_value": "{'n': 2}"}))
    assert chatter.filter(record("celery.app.trace", logging.ERROR, "failed", data=sweep))
    assert chatter.filter(record("celery.worker.strategy", logging.INFO, "received", data={"name": "t.other"}))


def test_library_info_chatter_is_filtered_but_warnings_and_our_own_info_are_kept():
    from shop.ops.log_filters import LibraryChatter

    chatter = LibraryChatter()

    def record(path: str, level: int) -> logging.LogRecord:
        return logging.LogRecord("root", level, path, 1, "message", None, None)

    fbgemm = "/venv/lib/python3.11/site-packages/fbgemm_gpu/split_table_batched_embeddings_ops_training.py"
    assert not chatter.filter(record(fbgemm, logging.INFO))
    assert not chatter.filter(record("/venv/site-packages/torchrec/modules/x.py", logging.DEBUG))
    assert chatter.filter(record(fbgemm, logging.WARNING))
    assert chatter.filter(record("/app/shop/recs/training.py", logging.INFO))

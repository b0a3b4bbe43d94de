"""Batch scoring fanned out across two real Celery workers (real Redis broker and result backend, real
PostgreSQL): chunks split between the workers, one pointer flip at the end, a chunk whose worker is killed
is redelivered and rewrites its rows exactly once."""

from __future__ import annotations

import math
import re

import pytest

from shop.recs import runs, selectors
from shop.recs.models import Recommendation, ScoreSet, ServingPointer, TaskRun
from tests.worker.conftest import (  # noqa: F401 - fixtures
    CeleryWorker,
    batch_score_after_retrain,
    broker_for_this_process,
    build_shop,
    live_db_url,
    recs_dirs,
    run_finished,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHUNK = 6


@pytest.fixture
def two_workers(redis_proc, recs_dirs, live_db_url, tmp_path):  # noqa: F811
    import redis

    broker = f"redis://{redis_proc.host}:{redis_proc.port}/0"
    redis.Redis(host=redis_proc.host, port=redis_proc.port).flushall()
    env = worker_env(
        live_db_url=live_db_url,
        broker=broker,
        # a killed worker's chunk comes back after 20 s (long enough that a worker still importing torch for
        # its first task does not lose that task to the other one)
        visibility_timeout=20,
        CELERY_RESULT_BACKEND=f"redis://{redis_proc.host}:{redis_proc.port}/1",
        RECS_SCORE_FANOUT="true",
        RECS_SCORE_CHUNK=str(CHUNK),
        WORKER_METRICS_PORT="0",
    )
    with broker_for_this_process(broker, visibility_timeout=20):
        workers = []
        for n in (1, 2):
            (tmp_path / f"w{n}").mkdir()
            w = CeleryWorker(
                {**env, "WORKER_HEARTBEAT_FILE": str(tmp_path / f"w{n}" / "hb")}, tmp_path / f"w{n}", name="test"
            )
            w.starts = 10 * n  # node names test11@host and test21@host
            w.start()
            workers.append(w)
        yield workers
        for w in workers:
            w.stop()


def _log(worker: CeleryWorker) -> str:
    return worker.log()


def _done(run_id, workers, timeout=180.0) -> TaskRun:
    try:
        run = wait_for(lambda: run_finished(run_id), timeout=timeout, interval=0.2, what=f"task {run_id}")
    except AssertionError:
        raise AssertionError("\n".join(_log(w) for w in workers)) from None
    assert run.state == "succeeded", f"{run.error}\n" + "\n".join(_log(w) for w in workers)
    return run


def _served_model_batch_score(workers) -> TaskRun:
    """A retrain on the workers, then the batch score that its promotion queues (the operator's promotion
    when the gate refused the model: see ``batch_score_after_retrain``)."""
    retrain = _done(runs.task_run_start(kind="retrain").id, workers)
    return _done(batch_score_after_retrain(retrain.result), workers)


def test_batch_score_chunks_spread_over_two_workers_and_publish_once(two_workers):
    shop = build_shop(visitors=40, products=60)
    batch = _served_model_batch_score(two_workers)

    chunks = math.ceil(len(shop.visitors) / CHUNK)
    assert batch.result["chunks"] == chunks
    names = {"test11@", "test21@"}
    assert sum(batch.result["workers"].values()) == chunks
    assert {h.split("@")[0] + "@" for h in batch.result["workers"]} == names, batch.result["workers"]
    ss = ScoreSet.objects.get(run_id=batch.id)
    assert ss.status == "complete" and ServingPointer.objects.get().score_set_id == ss.pk
    assert ss.visitors == len(shop.visitors) and ss.rows == 50 * len(shop.visitors)
    assert Recommendation.objects.filter(score_set=ss).count() == ss.rows
    for vid in shop.visitors:
        assert len(selectors.recommendations_for_visitor(visitor_id=vid, limit=50)) == 50

    # the worker's own metrics saw the chunk tasks' durations (prometheus-client, default registry)
    for w in two_workers:
        assert "batch_score_chunk" in _log(w)


def test_a_killed_chunk_is_redelivered_and_the_set_is_complete_and_exact(two_workers):
    shop = build_shop(visitors=48, products=60)
    first = _served_model_batch_score(two_workers)
    served = ServingPointer.objects.get().score_set_id
    assert served == first.result["score_set"]

    victim, survivor = two_workers[1], two_workers[0]
    # slow chunks: each pauses after committing its rows, before acknowledging, so a kill lands there
    victim.stop()
    survivor.stop()
    for w in two_workers:
        w.env = {**w.env, "RECS_BATCH_THROTTLE_S": "0.5"}
        w.start()
    run = runs.task_run_start(kind="batch_score", trigger="test")
    pattern = re.compile(rb"batch_score_chunk\[([0-9a-f-]+-chunk-\d+)\] received")
    wait_for(lambda: pattern.search(victim.log_path.read_bytes()), timeout=90, interval=0.01,
             what="the victim to take a chunk")  # fmt: skip
    victim.kill()
    log = victim.log_path.read_bytes()
    in_flight = [m.decode() for m in pattern.findall(log) if f"[{m.decode()}] succeeded".encode() not in log]
    assert in_flight, "the kill landed after the chunk finished"
    # meanwhile the storefront still reads the previous complete set
    assert ServingPointer.objects.get().score_set_id == served

    run = _done(run.id, two_workers)
    ss = ScoreSet.objects.get(run_id=run.id)
    assert ss.status == "complete" and ServingPointer.objects.get().score_set_id == ss.pk
    rows = Recommendation.objects.filter(score_set=ss)
    assert rows.count() == ss.rows == 50 * len(shop.visitors)  # every visitor once, no duplicate rows
    assert rows.values("visitor_id").distinct().count() == len(shop.visitors)
    # the chunk the victim held was handed out again and finished on the survivor
    assert f"batch_score_chunk[{in_flight[-1]}] succeeded" in _log(survivor)

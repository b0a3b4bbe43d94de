"""The services the worker tasks call, run in this process (no worker): export, retrain, batch score,
the "already running" lock, the delivery count and the staff API."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from shop.recs import execution, export, promotion, runs, scoring, selectors, training
from shop.recs.models import ModelVersion, Recommendation, ScoreSet, ServingPointer, TaskRun
from tests.factories import UserFactory
from tests.worker.conftest import batch_score_after_retrain, build_shop, crash_in_chunk

pytestmark = pytest.mark.django_db


def _run_inline(kind: str, **params) -> TaskRun:
    run = runs.task_run_start(kind=kind, params=params, enqueue=False)
    execution.task_run_execute(run_id=run.id)
    run.refresh_from_db()
    return run


def test_export_writes_a_snapshot_the_recommender_reads(recs_dirs):
    from recommender.data import load_parquet

    shop = build_shop(visitors=12, products=20)
    run = _run_inline(TaskRun.Kind.EXPORT)

    assert run.state == "succeeded", run.error
    snap = export.snapshot_latest()
    data = load_parquet(snap / "interactions.parquet", snap / "items.parquet")
    assert len(data.interactions) == shop.events == run.result["events"]
    assert len(data.items) == 20
    assert set(data.interactions.item_id) <= {str(p) for p in shop.products}
    # registered users are named by account, anonymous visitors by their cookie id
    assert any(u.startswith("u") for u in data.interactions.user_id)
    assert {v.hex for v in shop.visitors} & set(data.interactions.user_id)
    assert data.interactions.timestamp.min() > 1_600_000_000
    assert run.device  # where it ran is recorded


def test_export_is_streamed_in_row_groups(recs_dirs):
    import pyarrow.parquet as pq

    shop = build_shop(visitors=10, products=20)
    result = export.training_data_export(chunk_size=100)

    meta = pq.ParquetFile(f"{result['path']}/interactions.parquet").metadata
    assert meta.num_rows == shop.events
    assert meta.num_row_groups == -(-shop.events // 100)


def test_retrain_then_batch_score_serves_every_visitor(recs_dirs, django_capture_on_commit_callbacks):
    shop = build_shop(visitors=20, products=60)
    with django_capture_on_commit_callbacks(execute=False):
        retrain = _run_inline(TaskRun.Kind.RETRAIN)

    assert retrain.state == "succeeded", retrain.error
    # the promotion queued a batch score (the operator's, when the gate refuses a first model of so small a shop)
    batch_id = batch_score_after_retrain(retrain.result)
    version = ModelVersion.objects.get(is_active=True)
    assert version.version == retrain.result["version"]
    assert version.metrics["auc"] is not None and version.training_seconds > 0
    # stage 1 is saved with the ranker, so a rollback to this version restores both
    from django.conf import settings

    from recommender.registry import Registry

    stage1 = Registry(settings.MODEL_DIR).load(version.version).vocabularies["stage1"]
    assert stage1["format"] == 1 and len(stage1["item_ids"]) == 60
    batch = TaskRun.objects.get(kind=TaskRun.Kind.BATCH_SCORE)
    assert str(batch.id) == batch_id
    execution.task_run_execute(run_id=batch.id)
    batch.refresh_from_db()

    assert batch.state == "succeeded", batch.error
    ss = ServingPointer.objects.get().score_set
    assert ss.status == "complete" and ss.model_version == version
    for vid in shop.visitors:
        recs = selectors.recommendations_for_visitor(visitor_id=vid, limit=50)
        assert len(recs) == 50 and len(set(recs)) == 50


def test_batch_score_rerun_after_a_crash_resumes_without_duplicates(recs_dirs, settings, monkeypatch):
    build_shop(visitors=30, products=60)
    settings.RECS_SCORE_CHUNK = 7
    retrain = _run_inline(TaskRun.Kind.RETRAIN, export=True)
    # served whatever the gate says of so small a shop: this test is about resuming a batch score
    promotion.model_version_promote(version=retrain.result["version"], by="test")
    TaskRun.objects.filter(kind="batch_score").delete()  # the one queued by the promotion: not needed here
    crash_in_chunk(monkeypatch, 3, MemoryError("simulated crash in the third chunk"))
    run = runs.task_run_start(kind="batch_score", enqueue=False)
    with pytest.raises(MemoryError):
        scoring.recommendations_batch_score(run_id=run.id)
    ss = ScoreSet.objects.get(run=run)
    assert ss.status == "building" and ss.visitors == 14  # two chunks committed
    assert ServingPointer.objects.filter(score_set=ss).count() == 0  # never served half-built

    result = scoring.recommendations_batch_score(run_id=run.id)  # the redelivered task
    ss.refresh_from_db()
    assert result["resumed"] is True
    assert ss.status == "complete" and ss.visitors == 30
    assert Recommendation.objects.filter(score_set=ss).count() == ss.rows == 30 * 50
    assert ServingPointer.objects.get().score_set == ss


def test_second_request_while_one_is_queued_is_already_running():
    first = runs.task_run_start(kind="retrain", enqueue=False)
    with pytest.raises(runs.AlreadyRunning) as e:
        runs.task_run_start(kind="retrain", enqueue=False)
    assert e.value.run == first
    # another kind is not blocked
    runs.task_run_start(kind="batch_score", enqueue=False)
    # once finished, a new one may start
    runs.task_run_fail(run_id=first.id, error="x")
    runs.task_run_start(kind="retrain", enqueue=False)


@pytest.mark.django_db(transaction=True)
def test_execution_lock_refuses_a_second_concurrent_execution(recs_dirs):
    """Another process executing an export (its own database session holds the lock): this one must not."""
    import threading

    from django.db import connection

    run = runs.task_run_start(kind="export", enqueue=False)
    held, release = threading.Event(), threading.Event()

    def other_process():
        try:
            with runs.run_lock("export") as got:
                assert got
                held.set()
                release.wait(30)
        finally:
            connection.close()

    t = threading.Thread(target=other_process)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(runs.RunLocked):
            execution.task_run_execute(run_id=run.id)
    finally:
        release.set()
        t.join()
    run.refresh_from_db()
    assert run.state == "failed"  # inline there is no retry; the Celery task retries RunLocked with backoff


def test_a_task_that_keeps_killing_its_worker_is_marked_failed(settings):
    settings.RECS_MAX_DELIVERIES = 3
    run = runs.task_run_start(kind="batch_score", enqueue=False)
    for _ in range(3):  # three deliveries whose worker died (no finish, no retry)
        assert runs.task_run_begin(run_id=run.id) is not None
    assert runs.task_run_begin(run_id=run.id) is None
    run.refresh_from_db()
    assert run.state == "failed" and "died 3 times" in run.error
    # a retry on purpose is not a lost delivery
    run2 = runs.task_run_start(kind="batch_score", enqueue=False)
    for retries in range(5):
        assert runs.task_run_begin(run_id=run2.id, retries=retries) is not None


def test_duplicate_delivery_of_a_finished_run_does_nothing():
    run = runs.task_run_start(kind="export", enqueue=False)
    runs.task_run_fail(run_id=run.id, error="boom")
    assert execution.task_run_execute(run_id=run.id) == {"run_id": str(run.id), "skipped": True}


def test_logged_in_visitor_on_a_new_device_gets_their_accounts_list(recs_dirs, django_capture_on_commit_callbacks):
    from shop.events.models import Visitor

    shop = build_shop(visitors=10, products=60)
    with django_capture_on_commit_callbacks(execute=False):
        _run_inline(TaskRun.Kind.RETRAIN)
    execution.task_run_execute(run_id=TaskRun.objects.get(kind="batch_score").id)
    scored = Visitor.objects.filter(pk__in=shop.visitors, user__isnull=False).first()
    new_device = Visitor.objects.create(id=uuid.uuid4(), user=scored.user)

    assert selectors.recommendations_for_visitor(visitor_id=new_device.pk, limit=5) == (
        selectors.recommendations_for_visitor(visitor_id=scored.pk, limit=5)
    )
    assert selectors.recommendations_for_visitor(visitor_id=uuid.uuid4(), limit=5) == []


# ------------------------------------------------------------------------------------------------- API


def test_api_starts_a_retrain_and_reports_progress(client, django_capture_on_commit_callbacks):
    client.force_login(UserFactory(is_staff=True))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = client.post(reverse("api:recs:retrain"))
    assert r.status_code == 202
    task_id = r.json()["task_id"]
    assert len(callbacks) == 1  # the task is sent once the row is committed

    again = client.post(reverse("api:recs:retrain"))
    assert again.status_code == 409
    assert again.json() == {"detail": "already running", "task_id": task_id}

    status = client.get(reverse("api:recs:task", kwargs={"run_id": task_id}))
    assert status.status_code == 200
    assert status.json()["state"] == "pending" and status.json()["kind"] == "retrain"
    assert client.get(reverse("api:recs:task", kwargs={"run_id": uuid.uuid4()})).status_code == 404


def test_api_is_staff_only(client):
    assert client.post(reverse("api:recs:batch-score")).status_code in (401, 403)
    client.force_login(UserFactory())
    assert client.post(reverse("api:recs:batch-score")).status_code == 403
    assert TaskRun.objects.count() == 0


def test_beat_retrains_after_enough_new_events_or_enough_time(recs_dirs, settings):
    import datetime as dt

    from django.utils import timezone

    from tests.factories import EventFactory

    assert training.retrain_due() == (False, "no events yet")
    build_shop(visitors=4, products=10)
    assert training.retrain_due()[0] is True  # never trained
    export.training_data_export()
    assert training.retrain_due() == (False, "no new events since the latest snapshot")

    settings.RECS_RETRAIN_AFTER_EVENTS = 3
    settings.RECS_RETRAIN_EVERY_MINUTES = 60
    last = runs.task_run_start(kind="retrain", enqueue=False)
    TaskRun.objects.filter(pk=last.pk).update(state="succeeded", active_kind=None, finished_at=timezone.now())
    EventFactory.create_batch(2)
    assert training.retrain_due()[0] is False  # 2 new events, retrained a moment ago
    EventFactory()
    assert training.retrain_due() == (True, "3 new events")
    settings.RECS_RETRAIN_AFTER_EVENTS = 100
    TaskRun.objects.filter(pk=last.pk).update(finished_at=timezone.now() - dt.timedelta(minutes=61))
    assert training.retrain_due()[0] is True  # old enough

    first = training.retrain_if_due()  # (queued on commit; this test's transaction never commits)
    assert first["started"] is True
    second = training.retrain_if_due()
    assert second["started"] is False and "already" in second["reason"]

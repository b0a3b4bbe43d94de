"""Hole 6: the registry and the database never disagree after a database error; failed score sets are marked
failed, pruned and never served; a reaped run can never flip back to succeeded.

The database errors are real PostgreSQL errors (a division by zero, a unique-constraint violation) raised
between the two steps, inside the transaction that would have recorded the switch.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DataError, IntegrityError, connection
from django.utils import timezone

from recommender.registry import Registry
from shop.recs import engine, execution, promotion, runs, scoring, selectors, training
from shop.recs.models import ModelVersion, Recommendation, ScoreSet, ServingPointer, TaskRun
from tests.model_artifacts import register_tiny
from tests.worker.conftest import build_shop, crash_in_chunk

pytestmark = pytest.mark.django_db(transaction=True)


def _database_error(*args, **kwargs):
    with connection.cursor() as cur:
        cur.execute("SELECT 1 / 0")  # a real error from PostgreSQL, inside the switch's transaction


def _two_versions(settings, tmp_path) -> tuple[Registry, list[str]]:
    """Two verified versions in a throwaway registry, both recorded, the second one active everywhere."""
    settings.MODEL_DIR = tmp_path / "models"
    registry = Registry(settings.MODEL_DIR)
    ids = [register_tiny(registry, seed=i, metrics={"auc": 0.7}) for i in range(2)]
    registry.promote(ids[0])
    registry.promote(ids[1])
    rows = [ModelVersion.objects.create(version=v) for v in ids]
    training.model_version_activate(version=rows[1])
    assert registry.active() == ids[1]
    return registry, ids


def _active_row() -> str | None:
    return ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()


def test_a_database_error_during_a_promotion_moves_neither_side(settings, tmp_path, monkeypatch):
    registry, (v1, v2) = _two_versions(settings, tmp_path)
    promotion.model_version_rollback(by="test")
    assert registry.active() == v1 == _active_row()

    monkeypatch.setattr(promotion, "_batch_score_after", _database_error)
    with pytest.raises(DataError):
        promotion.model_version_promote(version=v2, by="test")
    assert _active_row() == v1
    assert registry.active() == v1, "the registry moved although the database refused the switch"


def test_a_database_error_during_a_rollback_moves_neither_side(settings, tmp_path, monkeypatch):
    registry, (v1, v2) = _two_versions(settings, tmp_path)
    monkeypatch.setattr(promotion, "_batch_score_after", _database_error)
    with pytest.raises(DataError):
        promotion.model_version_rollback(by="test")
    assert _active_row() == v2
    assert registry.active() == v2, "the registry rolled back although the database refused the switch"
    monkeypatch.undo()
    assert promotion.model_version_rollback(by="test").active == v1  # the history is intact
    assert registry.active() == v1 == _active_row()


def test_a_pointer_flip_lost_after_the_commit_is_repaired_before_the_next_switch(settings, tmp_path):
    registry, (v1, v2) = _two_versions(settings, tmp_path)
    promotion.model_version_rollback(by="test")
    # the process died between the database's commit and the pointer flip: the database says v2, the disk v1
    ModelVersion.objects.filter(version=v1).update(is_active=False, status="retired")
    ModelVersion.objects.filter(version=v2).update(is_active=True, status="active")
    assert registry.active() == v1

    assert training.registry_sync() == v2 and registry.active() == v2
    switch = promotion.model_version_rollback(by="test")  # walks back from what the database serves
    assert (switch.active, switch.previous) == (v1, v2)
    assert registry.active() == v1 == _active_row()


def test_the_registry_reads_a_decision_and_a_rollback_target_without_moving(tmp_path):
    import torch

    registry = Registry(tmp_path / "models")
    ids = [
        registry.register(weights={"model": {"w": torch.ones(2)}}, vocabularies={}, config={}, metrics={"auc": a})
        for a in (0.7, 0.8)
    ]
    registry.promote(ids[0])
    assert registry.decide(ids[1]).passed and registry.active() == ids[0]
    registry.promote(ids[1])
    assert registry.rollback_target() == ids[0] and registry.active() == ids[1]


def test_a_database_error_while_recording_a_retrained_version_leaves_the_registry_alone(recs_dirs, settings):
    build_shop(visitors=16, products=40)
    # the version the registry will write next is already recorded: a real unique-constraint violation
    # when the retrain records it, after the gate passed (the first model always passes)
    ModelVersion.objects.create(version="v0001", status="rejected")
    run = runs.task_run_start(kind=TaskRun.Kind.RETRAIN, enqueue=False)
    with pytest.raises(IntegrityError):
        execution.task_run_execute(run_id=run.id)
    registry = Registry(settings.MODEL_DIR)
    assert [v.version for v in registry.list_versions()] == ["v0001"]  # trained and registered on disk
    assert registry.active() is None, "the registry promoted a version the database never recorded"
    assert _active_row() is None
    run.refresh_from_db()
    assert run.state == "failed" and "IntegrityError" in run.error


# ------------------------------------------------------------------------------------------ score sets


@pytest.fixture
def scored_shop(recs_dirs, settings):
    """A trained, active model (no batch score yet) over a small shop, scored in chunks of 7 visitors."""
    shop = build_shop(visitors=30, products=60)
    settings.RECS_SCORE_CHUNK = 7
    run = runs.task_run_start(kind=TaskRun.Kind.RETRAIN, params={"export": True}, enqueue=False)
    execution.task_run_execute(run_id=run.id)
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    # whatever the gate said of so small a shop, a merchant may serve the version: these tests are about scoring
    promotion.model_version_promote(version=run.result["version"], by="test")
    TaskRun.objects.filter(kind="batch_score").delete()  # the promotion's follow-up: the tests run their own
    return shop


def test_a_failed_batch_score_marks_its_set_failed_never_serves_it_and_the_next_run_prunes_it(scored_shop, monkeypatch):
    first = runs.task_run_start(kind="batch_score", enqueue=False)
    execution.task_run_execute(run_id=first.id)
    served = ServingPointer.objects.get().score_set
    visitor = scored_shop.visitors[0]
    before = selectors.recommendations_for_visitor(visitor_id=visitor, limit=50)
    assert before

    crash_in_chunk(monkeypatch, 3, ValueError("simulated bug in the third chunk"))
    failing = runs.task_run_start(kind="batch_score", enqueue=False)
    with pytest.raises(ValueError):
        execution.task_run_execute(run_id=failing.id)  # no retry for a bug: the run fails
    failed_set = ScoreSet.objects.get(run=failing)
    assert failed_set.status == "failed", "a failed run's half-built set stayed 'building'"
    assert failed_set.visitors == 14 and Recommendation.objects.filter(score_set=failed_set).exists()  # 2 chunks
    assert ServingPointer.objects.get().score_set == served
    # even a pointer moved onto it by hand is never read
    ServingPointer.objects.filter(id=1).update(score_set=failed_set)
    assert selectors.recommendations_for_visitor(visitor_id=visitor, limit=50) == []
    ServingPointer.objects.filter(id=1).update(score_set=served)

    monkeypatch.undo()
    for _ in range(2):
        execution.task_run_execute(run_id=runs.task_run_start(kind="batch_score", enqueue=False).id)
    assert not ScoreSet.objects.filter(pk=failed_set.pk).exists(), "the failed set was never pruned"
    assert not Recommendation.objects.filter(score_set_id=failed_set.pk).exists()
    # the serving set and the one before it stay (a quick rollback); older complete sets go
    assert ScoreSet.objects.filter(status="complete").count() == 2
    assert not ScoreSet.objects.filter(pk=served.pk).exists()
    assert selectors.recommendations_for_visitor(visitor_id=visitor, limit=50)


def test_a_set_left_building_by_a_dead_run_is_failed_and_pruned(scored_shop):
    dead = runs.task_run_start(kind="batch_score", enqueue=False)
    orphan = ScoreSet.objects.create(run=dead, model_version=ModelVersion.objects.get(is_active=True))
    TaskRun.objects.filter(pk=dead.pk).update(state="failed", active_kind=None)  # e.g. before this fix
    assert scoring.score_sets_prune() == 1
    assert not ScoreSet.objects.filter(pk=orphan.pk).exists()


# --------------------------------------------------------------------------------------------- reaping


def test_a_reaped_run_stays_failed_when_its_worker_finishes_late():
    run = runs.task_run_start(kind="export", enqueue=False)
    runs.task_run_begin(run_id=run.id)
    runs.task_run_fail(run_id=run.id, error="abandoned: no progress for too long")  # what the reaper does
    assert runs.task_run_finish(run_id=run.id, state="succeeded", result={"late": True}) is False
    run.refresh_from_db()
    assert run.state == "failed" and run.result != {"late": True} and "abandoned" in run.error


def test_a_batch_score_reaped_mid_run_publishes_nothing_and_stays_failed(scored_shop, settings, monkeypatch):
    """The reaper runs while the batch score is still scoring (its worker looked dead): the late worker
    must neither flip the run back to succeeded nor put its set in front of shoppers."""
    settings.RECS_STALE_RUN_S = 60
    real = engine.load_ranker
    state = {"new": None}

    def loader_that_stalls(**kw):
        ranker = real(**kw)
        stale = timezone.now() - dt.timedelta(seconds=600)
        TaskRun.objects.filter(pk=slow.pk).update(heartbeat_at=stale)
        state["new"] = runs.task_run_start(kind="batch_score", enqueue=False)  # reaps the silent one
        return ranker

    monkeypatch.setattr(engine, "load_ranker", loader_that_stalls)
    slow = runs.task_run_start(kind="batch_score", enqueue=False)
    outcome = execution.task_run_execute(run_id=slow.id)

    slow.refresh_from_db()
    assert outcome["skipped"] is True
    assert slow.state == "failed" and "abandoned" in slow.error, "a reaped run flipped back"
    assert ScoreSet.objects.get(run=slow).status == "failed"
    assert ServingPointer.objects.filter(score_set__run=slow).count() == 0
    assert state["new"] is not None and TaskRun.objects.get(pk=state["new"].pk).state == "pending"

"""Retraining: export what is new, train, register the version, apply the champion/challenger gate, promote.

Also beat's question "retrain now?" (:func:`retrain_due`) and its answer (:func:`retrain_if_due`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from shop.events.models import Event

from .export import snapshot_latest, snapshot_manifest, training_data_export
from .models import ModelVersion, TaskRun
from .runs import (
    AlreadyRunning,
    task_run_lock_open,
    task_run_progress,
    task_run_start,
    task_run_start_unless_running,
)

Kind = TaskRun.Kind
State = TaskRun.State
log = logging.getLogger(__name__)


def model_retrain(*, run_id: uuid.UUID | str) -> dict:
    """Export if events arrived since the latest snapshot, train on it, register the version, apply the
    champion/challenger gate, and on promotion queue a batch score (sent once this commits)."""
    from . import engine

    run = TaskRun.objects.get(pk=run_id)
    registry_sync()  # the gate's champion is the database's active version, whatever a crash left on disk
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
    decision = engine.gate_decide(
        model_dir=Path(settings.MODEL_DIR), version=trained.version, tolerance=settings.RECS_GATE_TOLERANCE
    )
    if decision.passed:
        engine.registry_verify(model_dir=Path(settings.MODEL_DIR), version=trained.version)
    with transaction.atomic():
        task_run_lock_open(run_id=run_id)  # reaped meanwhile: a newer run decides, this one records nothing
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
            model_version_activate(version=mv)  # the registry's pointer follows once this commits
            # queued when this transaction commits, so it sees the new version; a batch score already running
            # notices at its end that the champion changed and starts another
            batch_run = task_run_start_unless_running(kind=Kind.BATCH_SCORE, trigger=f"promotion {mv.version}")
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
    """Make ``version`` the one active row (the partial unique constraint allows only one).

    The database is the source of truth for the serving model; the registry's pointer (which the gate reads
    for the champion and a rollback walks back through) follows once this transaction commits, so a database
    error before the commit leaves both where they were. A flip lost to a crash right after the commit is
    repaired by the next :func:`registry_sync` (before every retrain, promotion and rollback).
    """
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
        is_active=False, status=ModelVersion.Status.RETIRED
    )
    version.is_active = True
    version.status = ModelVersion.Status.ACTIVE
    version.save(update_fields=["is_active", "status"])
    transaction.on_commit(registry_sync, robust=True)
    return version


def registry_sync() -> str | None:
    """Point the registry at the database's active version; return that version (None before the first).

    A version whose artifact no longer verifies is left as it is on disk (logged): serving refuses to load it
    anyway and falls back, and a merchant's promotion or rollback moves both sides again.
    """
    from . import engine

    active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    if active is None:
        return None
    try:
        if engine.registry_follow(model_dir=Path(settings.MODEL_DIR), version=active):
            log.info("registry pointer moved to the active version %s", active)
    except engine.RegistryRefused as e:
        log.warning("registry pointer cannot follow the active version %s: %s", active, e)
    return active


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

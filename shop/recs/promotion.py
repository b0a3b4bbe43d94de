"""A merchant's hand on the serving model: promote a version, or roll back to the previous one.

The database (``ModelVersion.is_active``) is the source of truth; the registry's pointer (``MODEL_DIR``)
follows once the switch commits (:func:`shop.recs.training.model_version_activate`), so a database error
leaves both where they were. The artifact is verified first, so a missing or corrupt version is refused
before anything changes. A switch queues a batch score, as a promotion by the gate does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from . import engine
from .models import ModelVersion, TaskRun
from .runs import task_run_start_unless_running
from .training import model_version_activate, registry_sync

log = logging.getLogger(__name__)


class UnknownVersion(LookupError):
    pass


class CannotSwitch(RuntimeError):
    """The registry refused: the artifact is missing or fails verification, or nothing to roll back to."""


@dataclass(frozen=True)
class Switch:
    active: str
    previous: str | None
    batch_score_task: str | None


def _batch_score_after(version: str) -> str | None:
    # None: a batch score is already running; it notices at its end that the champion changed
    run = task_run_start_unless_running(kind=TaskRun.Kind.BATCH_SCORE, trigger=f"promotion {version}")
    return str(run.id) if run else None


@transaction.atomic
def model_version_promote(*, version: str, by: str) -> Switch:
    """Make ``version`` the serving model (idempotent: promoting the active one changes nothing)."""
    row = ModelVersion.objects.select_for_update().filter(version=version).first()
    if row is None:
        raise UnknownVersion(f'no model version "{version}"')
    previous = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    if previous == version:
        transaction.on_commit(registry_sync, robust=True)  # repairs a pointer a crash left behind
        return Switch(active=version, previous=previous, batch_score_task=None)
    try:
        engine.registry_verify(model_dir=Path(settings.MODEL_DIR), version=version)
    except engine.RegistryRefused as e:
        raise CannotSwitch(f"{version} cannot be promoted: {e}") from e
    model_version_activate(version=row)
    log.info("model version %s promoted by %s (was %s)", version, by, previous)
    return Switch(active=version, previous=previous, batch_score_task=_batch_score_after(version))


@transaction.atomic
def model_version_rollback(*, by: str) -> Switch:
    """Go back to the version that was active before the current one (skipping any that no longer verify)."""
    # the active row's lock serialises switches; the registry's history is read once it names this version
    previous = ModelVersion.objects.select_for_update().filter(is_active=True).values_list("version", flat=True).first()
    registry_sync()
    try:
        version = engine.registry_rollback_target(model_dir=Path(settings.MODEL_DIR))
    except engine.RegistryRefused as e:
        raise CannotSwitch(str(e)) from e
    row = ModelVersion.objects.select_for_update().filter(version=version).first()
    if row is None:
        raise CannotSwitch(f"the registry's previous version {version} is not a recorded model version")
    model_version_activate(version=row)
    log.info("model version rolled back to %s by %s (was %s)", version, by, previous)
    return Switch(active=version, previous=previous, batch_score_task=_batch_score_after(version))

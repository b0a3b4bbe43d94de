"""A merchant's hand on the serving model: promote a version, or roll back to the previous one.

The registry's pointer (``MODEL_DIR``) and the ``ModelVersion.is_active`` row move together, in one
transaction on the database side; the registry verifies the artifact first, so a missing or corrupt
version is refused before anything changes. A switch queues a batch score, as a promotion by the gate does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from . import engine
from .models import ModelVersion, TaskRun
from .runs import AlreadyRunning, task_run_start
from .training import model_version_activate

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
    try:
        return str(task_run_start(kind=TaskRun.Kind.BATCH_SCORE, trigger=f"promotion {version}").id)
    except AlreadyRunning:
        return None  # the running batch score notices at its end that the champion changed


@transaction.atomic
def model_version_promote(*, version: str, by: str) -> Switch:
    """Make ``version`` the serving model (idempotent: promoting the active one changes nothing)."""
    row = ModelVersion.objects.select_for_update().filter(version=version).first()
    if row is None:
        raise UnknownVersion(f'no model version "{version}"')
    previous = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    if previous == version:
        return Switch(active=version, previous=previous, batch_score_task=None)
    try:
        engine.registry_promote(model_dir=Path(settings.MODEL_DIR), version=version)
    except engine.RegistryRefused as e:
        raise CannotSwitch(f"{version} cannot be promoted: {e}") from e
    model_version_activate(version=row)
    log.info("model version %s promoted by %s (was %s)", version, by, previous)
    return Switch(active=version, previous=previous, batch_score_task=_batch_score_after(version))


@transaction.atomic
def model_version_rollback(*, by: str) -> Switch:
    """Go back to the version that was active before the current one (skipping any that no longer verify)."""
    previous = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    try:
        version = engine.registry_rollback(model_dir=Path(settings.MODEL_DIR))
    except engine.RegistryRefused as e:
        raise CannotSwitch(str(e)) from e
    row = ModelVersion.objects.select_for_update().filter(version=version).first()
    if row is None:
        # the registry moved but the shop never recorded this version: put the pointer back
        engine.registry_promote(model_dir=Path(settings.MODEL_DIR), version=previous) if previous else None
        raise CannotSwitch(f"the registry's previous version {version} is not a recorded model version")
    model_version_activate(version=row)
    log.info("model version rolled back to %s by %s (was %s)", version, by, previous)
    return Switch(active=version, previous=previous, batch_score_task=_batch_score_after(version))

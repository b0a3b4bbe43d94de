"""Writes: create, start and stop experiments."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Arm, Experiment, Ranking, new_salt

DEFAULT_EXPERIMENT_KEY = "rails-ranking"
DEFAULT_ARMS: tuple[tuple[str, int, bool], ...] = (
    (Ranking.POPULARITY, 1, True),
    (Ranking.HEURISTIC, 1, False),
    (Ranking.DLRM, 1, False),
)


def experiment_validate_arms(*, arms: Sequence[tuple[str, int, bool]]) -> None:
    keys = [k for k, _, _ in arms]
    if len(arms) < 2:
        raise ValidationError({"arms": "An experiment needs at least two arms."})
    if len(set(keys)) != len(keys):
        raise ValidationError({"arms": "Arm keys must be distinct."})
    if sum(1 for _, _, c in arms if c) != 1:
        raise ValidationError({"arms": "Exactly one arm must be the control."})
    if sum(w for _, w, _ in arms) <= 0:
        raise ValidationError({"arms": "At least one arm needs a positive weight."})


@transaction.atomic
def experiment_create(
    *, key: str, name: str, arms: Sequence[tuple[str, int, bool]] = DEFAULT_ARMS, description: str = ""
) -> Experiment:
    experiment_validate_arms(arms=arms)
    experiment = Experiment.objects.create(key=key, name=name, description=description)
    Arm.objects.bulk_create(
        [Arm(experiment=experiment, key=k, weight=w, is_control=c) for k, w, c in arms],
    )
    return experiment


@transaction.atomic
def experiment_start(*, experiment: Experiment, resalt: bool = False) -> Experiment:
    """Run this experiment, stopping any other. A never-started one gets a fresh salt (so do resalted ones)."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    arms = [(a.key, a.weight, a.is_control) for a in experiment.arms.all()]
    experiment_validate_arms(arms=arms)
    now = timezone.now()
    for other in (
        Experiment.objects.select_for_update().filter(status=Experiment.Status.RUNNING).exclude(pk=experiment.pk)
    ):
        experiment_stop(experiment=other, at=now)
    if resalt or experiment.started_at is None:
        experiment.salt = new_salt()
    if experiment.started_at is None or resalt:
        experiment.started_at = now
    experiment.status = Experiment.Status.RUNNING
    experiment.stopped_at = None
    experiment.save(update_fields=["salt", "status", "started_at", "stopped_at"])
    return experiment


def experiment_stop(*, experiment: Experiment, at=None) -> Experiment:
    experiment.status = Experiment.Status.STOPPED
    experiment.stopped_at = at or timezone.now()
    experiment.save(update_fields=["status", "stopped_at"])
    return experiment


@transaction.atomic
def experiment_ensure_default() -> Experiment | None:
    """Give a fresh install one running three-arm experiment; leaves an install with any experiment alone."""
    if Experiment.objects.exists():
        return None
    experiment = experiment_create(
        key=DEFAULT_EXPERIMENT_KEY,
        name="Rail ranking: popularity vs heuristic vs DLRM",
        description="Default experiment: equal thirds of visitors per ranking of the recommendation rails.",
    )
    return experiment_start(experiment=experiment)

"""Reads: the running experiment (cached in process memory) and a visitor's arm."""

from __future__ import annotations

import threading
import time
import uuid

from django.conf import settings

from .assignment import ArmSpec, Assignment, ExperimentSpec, assign
from .models import Experiment

__all__ = ["Assignment", "assignment_for", "experiment_spec_get", "running_experiment_get", "running_experiment_forget"]

_lock = threading.Lock()
_cached: tuple[float, ExperimentSpec | None] | None = None  # (monotonic expiry, value)


def experiment_spec_get(*, experiment: Experiment) -> ExperimentSpec:
    arms = tuple(
        ArmSpec(key=a.key, weight=a.weight, is_control=a.is_control)
        for a in experiment.arms.all().order_by("-is_control", "id")
    )
    return ExperimentSpec(key=experiment.key, salt=experiment.salt, arms=arms)


def _running_experiment_load() -> ExperimentSpec | None:
    experiment = (
        Experiment.objects.filter(status=Experiment.Status.RUNNING)
        .prefetch_related("arms")
        .order_by("-started_at")
        .first()
    )
    return None if experiment is None else experiment_spec_get(experiment=experiment)


def running_experiment_get() -> ExperimentSpec | None:
    """The running experiment as plain data; read from the database at most once per TTL per process."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and cached[0] > now:
        return cached[1]
    with _lock:
        cached = _cached
        if cached is not None and cached[0] > now:
            return cached[1]
        value = _running_experiment_load()
        _cached = (time.monotonic() + settings.EXPERIMENTS_CACHE_TTL_S, value)
        return value


def running_experiment_forget() -> None:
    """Drop this process's cached copy (other processes pick changes up within the TTL)."""
    global _cached
    _cached = None


def assignment_for(*, visitor_id: uuid.UUID) -> Assignment:
    """The visitor's experiment and arm; sticky for as long as the experiment's salt and weights hold."""
    return assign(experiment=running_experiment_get(), visitor_id=visitor_id)

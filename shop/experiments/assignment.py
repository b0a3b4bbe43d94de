"""Sticky arm assignment: a pure function of (salt, visitor id, arms and weights).

The visitor id is hashed with the experiment's salt (SHA-256); the first 64 bits give a point u in
[0, 1) that falls into one arm's slice of the cumulative weights. The same visitor always lands in
the same arm while the salt and weights are unchanged (it keeps its id when it logs in), and a new
salt reshuffles everyone independently of the previous experiment.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

_SCALE = float(2**64)


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str | None  # running experiment's key; None when none runs
    arm: str | None
    experiment_id: int | None = None  # its primary key (what the serving counters are attributed to)


NO_ASSIGNMENT = Assignment(experiment=None, arm=None)


@dataclass(frozen=True, slots=True)
class ArmSpec:
    key: str
    weight: int
    is_control: bool = False


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """A running experiment as plain data (what the request path needs, no ORM object)."""

    key: str
    salt: str
    arms: tuple[ArmSpec, ...]
    id: int | None = None  # the Experiment row's primary key

    @property
    def control(self) -> str | None:
        return next((a.key for a in self.arms if a.is_control), None)


def bucket(*, salt: str, visitor_id: uuid.UUID) -> float:
    """The visitor's point in [0, 1) for this salt."""
    digest = hashlib.sha256(f"{salt}:{visitor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def arm_for(*, salt: str, visitor_id: uuid.UUID, arms: Sequence[ArmSpec]) -> str | None:
    """The arm key whose share of the total weight holds the visitor's bucket; None if no arm has weight."""
    total = sum(a.weight for a in arms if a.weight > 0)
    if total <= 0:
        return None
    point = bucket(salt=salt, visitor_id=visitor_id) * total
    cumulative = 0
    chosen = None
    for arm in arms:
        if arm.weight <= 0:
            continue
        cumulative += arm.weight
        chosen = arm.key
        if point < cumulative:
            return arm.key
    return chosen  # float rounding at the very top of the range


def assign(*, experiment: ExperimentSpec | None, visitor_id: uuid.UUID) -> Assignment:
    if experiment is None:
        return NO_ASSIGNMENT
    arm = arm_for(salt=experiment.salt, visitor_id=visitor_id, arms=experiment.arms)
    if arm is None:
        return NO_ASSIGNMENT
    return Assignment(experiment=experiment.key, arm=arm, experiment_id=experiment.id)

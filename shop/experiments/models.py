"""A/B experiments over the ranking of the recommendation rails.

An experiment has named arms with weights; a visitor's arm is a pure function of the experiment's
salt and the visitor id (see ``assignment.py``), so nothing is written per visitor.
"""

from __future__ import annotations

import secrets

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


def new_salt() -> str:
    return secrets.token_hex(8)


class Ranking(models.TextChoices):
    """The rankings the recommendation service can serve; an arm picks one of them."""

    POPULARITY = "popularity", "Popularity (no personalisation)"
    HEURISTIC = "heuristic", "Heuristic (candidate order, no model)"
    DLRM = "dlrm", "DLRM (full pipeline)"


class Experiment(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    key = models.SlugField(max_length=64, unique=True, help_text="Written into reports and the results API.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    salt = models.CharField(
        max_length=64,
        default=new_salt,
        help_text="Hashed with the visitor id to pick an arm. A new salt reshuffles every visitor.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="one_running_experiment"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class Arm(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    key = models.CharField(max_length=32, choices=Ranking.choices, help_text="Stored on events as Event.arm.")
    weight = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(0)], help_text="Relative share of visitors (0 pauses the arm)."
    )
    is_control = models.BooleanField(default=False, help_text="Lifts are measured against this arm.")

    class Meta:
        ordering = ["experiment", "-is_control", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="arm_key_unique_per_experiment"),
            models.UniqueConstraint(
                fields=["experiment"], condition=Q(is_control=True), name="one_control_arm_per_experiment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key}/{self.key}"

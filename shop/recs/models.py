"""Model versions, precomputed recommendations and the runs of the background tasks that make them.

The storefront reads recommendations only through ``ServingPointer``: a batch is written into a new
``ScoreSet`` while the previous complete one keeps serving, and the pointer flips in one transaction.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        REJECTED = "rejected", "Rejected by the gate"
        RETIRED = "retired", "Retired"

    version = models.CharField(max_length=32, unique=True, help_text="Registry id, e.g. v0007.")
    created_at = models.DateTimeField(auto_now_add=True)
    metrics = models.JSONField(default=dict, blank=True)
    gate_reasons = models.JSONField(default=list, blank=True)
    training_seconds = models.FloatField(default=0.0)
    examples = models.PositiveBigIntegerField(default=0)
    snapshot = models.CharField(max_length=200, blank=True, default="")
    device = models.CharField(max_length=120, blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CANDIDATE)
    is_active = models.BooleanField(default=False)
    run = models.ForeignKey("TaskRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"),
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"


class ScoreSet(models.Model):
    """One complete batch of recommendations for one model version (or being built)."""

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"

    run = models.OneToOneField("TaskRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="score_set")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveBigIntegerField(default=0)
    visitors = models.PositiveIntegerField(default=0)
    # Last visitor id whose rows are committed (visitors are scored in id order): a rerun resumes after it.
    cursor = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"score set {self.pk} ({self.status}, {self.rows} rows)"


class Recommendation(models.Model):
    score_set = models.ForeignKey(ScoreSet, on_delete=models.CASCADE, related_name="recommendations")
    visitor = models.ForeignKey("events.Visitor", on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveSmallIntegerField()
    score = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["score_set", "visitor", "rank"], name="rec_unique_rank"),
            models.UniqueConstraint(fields=["score_set", "visitor", "product"], name="rec_unique_product"),
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.product_id} for {self.visitor_id}"


class ServingPointer(models.Model):
    """A single row (pk=1) naming the score set the storefront reads."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    score_set = models.ForeignKey(ScoreSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="serving_pointer_single_row")]

    def __str__(self) -> str:
        return f"serving score set {self.score_set_id}"


class TaskRun(models.Model):
    """One requested background run. Its id is the Celery task id; the shop reads progress here."""

    class Kind(models.TextChoices):
        EXPORT = "export", "Export training data"
        RETRAIN = "retrain", "Retrain"
        BATCH_SCORE = "batch_score", "Batch score"
        EVALUATE = "evaluate", "Evaluate"
        BENCHMARK = "benchmark", "Accelerator benchmark"

    class State(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE_STATES = (State.PENDING, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # Set while the run is pending or running; the unique constraint on it is the "already running" lock.
    active_kind = models.CharField(max_length=16, null=True, blank=True, editable=False)
    stage = models.CharField(max_length=64, blank=True, default="queued")
    percent = models.FloatField(default=0.0)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    device = models.CharField(max_length=120, blank=True, default="")
    hostname = models.CharField(max_length=120, blank=True, default="")
    deliveries = models.PositiveSmallIntegerField(default=0)
    trigger = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "-created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["active_kind"], name="one_active_run_per_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state} {self.stage} {self.percent:.0f}%)"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)


class AcceleratorBenchmark(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    device = models.CharField(max_length=120)
    hostname = models.CharField(max_length=120, blank=True, default="")
    results = models.JSONField(default=dict)
    run = models.ForeignKey(TaskRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"benchmark on {self.device} at {self.created_at:%Y-%m-%d %H:%M}"


class ServingStat(models.Model):
    """Per-minute aggregate of live recommendation requests, one row per process flush and (placement,
    experiment, arm, source, reason, model version). Read summed by minute: the console's serving mix,
    fallback reasons and per-stage latency over time; summed per experiment: what each of its arms served.
    ``latency_hist`` counts requests per bucket of ``LATENCY_BUCKETS_MS`` (upper bounds; the last bucket is
    everything slower).

    ``experiment`` is the experiment that assigned the arm; null when none ran (the arm was the default),
    so such requests count for no experiment even in the minute one started. The serving process writes
    it from its cached copy of the running experiment, which may be a few seconds stale (one deleted
    meanwhile): hence no database constraint, so a flush never fails on it."""

    LATENCY_BUCKETS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 25, 35, 50, 75, 100, 250, 1000)

    minute = models.DateTimeField()
    placement = models.CharField(max_length=64)
    experiment = models.ForeignKey(
        "experiments.Experiment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    arm = models.CharField(max_length=32, blank=True, default="")
    source = models.CharField(max_length=12)  # live | batch | popularity | fallback
    reason = models.CharField(max_length=32, blank=True, default="")
    model_version = models.CharField(max_length=64, blank=True, default="")
    requests = models.PositiveIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0.0)
    latency_ms_max = models.FloatField(default=0.0)
    stage_ms_sum = models.JSONField(default=dict, blank=True)
    latency_hist = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["minute"], name="serving_stat_minute_idx")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.placement} {self.source} {self.reason} x{self.requests}"

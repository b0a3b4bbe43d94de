"""Measuring models: offline metrics of a version, and the accelerator benchmark of this node."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings

from .export import snapshot_latest
from .models import AcceleratorBenchmark, ModelVersion, TaskRun
from .runs import device_name, task_run_progress


def model_evaluate(*, run_id: uuid.UUID | str) -> dict:
    """Offline metrics of a version (params ``version``, default the active one) on the latest snapshot."""
    from . import engine

    run = TaskRun.objects.get(pk=run_id)
    version = (
        run.params.get("version")
        or ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    )
    if not version:
        raise RuntimeError("no model version to evaluate")
    snap = snapshot_latest()
    if snap is None:
        raise RuntimeError("no snapshot: export first")
    task_run_progress(run_id=run_id, stage=f"evaluating {version}", percent=5)
    metrics = engine.evaluate(snapshot=snap, model_dir=Path(settings.MODEL_DIR), version=version)
    ModelVersion.objects.filter(version=version).update(metrics={**metrics, "evaluated_on": snap.name})
    return {"version": version, "snapshot": snap.name, "metrics": metrics}


def accelerator_benchmark(*, run_id: uuid.UUID | str) -> dict:
    """Run the recommender's benchmark on this node's devices and store the figures."""
    from . import engine

    run = TaskRun.objects.get(pk=run_id)
    task_run_progress(run_id=run_id, stage="benchmarking", percent=5)
    results = engine.benchmark(model_dir=Path(settings.MODEL_DIR), options=run.params)
    bench = AcceleratorBenchmark.objects.create(
        device=run.device or device_name(), hostname=run.hostname, results=results, run_id=run_id
    )
    return {"benchmark": bench.pk, "device": bench.device}

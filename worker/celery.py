"""The Celery app, configured from Django settings (every ``CELERY_*`` name).

Queues: ``default`` for light work (export, schedule checks), ``gpu`` for training, batch scoring,
evaluation and benchmarks. A CPU-only box consumes both; a GPU node runs
``celery -A worker worker -Q gpu --pool prefork --concurrency 1``: CUDA is initialised in the child that
computes, never in the parent that forks (tasks import torch lazily, inside the service they call), and
``worker_max_memory_per_child`` (``CELERY_WORKER_MAX_MEMORY_PER_CHILD``, KiB) works: a child whose resident
memory exceeds it after a task is replaced by a fresh one. (Under ``--pool solo`` there is no child and the
limit does nothing.)

Results are not stored by Celery: each task's state, stage and percent live in a ``TaskRun`` row
(``shop.recs``), keyed by the task id, which the shop and the API read.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger
from kombu import Queue

from shop.ops.log_filters import LibraryChatter, RoutineTaskChatter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")

GPU_TASKS = (
    "worker.tasks.retrain",
    "worker.tasks.batch_score",
    "worker.tasks.batch_score_chunk",  # fan-out: every worker consuming gpu takes chunks
    "worker.tasks.evaluate",
    "worker.tasks.benchmark_accelerator",
)

app.conf.update(
    include=["worker.tasks", "worker.popularity"],
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    task_routes={name: {"queue": "gpu"} for name in GPU_TASKS},
    # Long tasks: acknowledge after the work, so a worker killed mid-task gives the message back
    # (redelivered, then resumed or refused by the delivery count); take one message at a time.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    enable_utc=True,
)


@app.on_after_configure.connect
def _filesystem_broker_folders(sender, **kwargs) -> None:
    """kombu's filesystem transport (the embedded demo's broker) expects its folders to exist.

    Run once the configuration is read (lazily), so importing this module never loads Django settings.
    """
    if not str(sender.conf.broker_url or "").startswith("filesystem://"):
        return
    from pathlib import Path

    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        folder = (sender.conf.broker_transport_options or {}).get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


# The outbox sweep (beat, every RECS_OUTBOX_EVERY_S) and what it returns when no run waited to be sent.
ROUTINE_IDLE = {"worker.tasks.task_runs_send_pending": "{'still_to_send': 0}"}


@after_setup_logger.connect
def _quiet_library_chatter(logger: logging.Logger, **kwargs) -> None:
    from django.conf import settings  # read once the worker or beat starts, not when this module is imported

    for handler in logger.handlers:
        if not any(isinstance(f, LibraryChatter) for f in handler.filters):
            handler.addFilter(LibraryChatter())
        if settings.WORKER_LOG_ROUTINE_TASKS:
            continue
        if not any(isinstance(f, RoutineTaskChatter) for f in handler.filters):
            entries = tuple(name for name, e in settings.CELERY_BEAT_SCHEDULE.items() if e["task"] in ROUTINE_IDLE)
            handler.addFilter(RoutineTaskChatter(idle=ROUTINE_IDLE, entries=entries))

"""The shop's own Prometheus metrics (prometheus-client), request latency per endpoint included
(``django_http_requests_latency_seconds_by_view_method``, recorded by ``shop.ops.middleware``).

Web processes run under gunicorn in multi-process mode (``PROMETHEUS_MULTIPROC_DIR``, see
``shop.ops.gunicorn_conf``): every process writes its samples to that folder and ``/metrics`` adds them
up, so no gunicorn worker's counts are lost whichever one answers the scrape. Celery workers serve their
own on ``WORKER_METRICS_PORT`` (``shop.ops.worker``).

Call sites use the small helpers below, never the metric objects' label spelling directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import Counter, Histogram

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # each process writes its samples there from the first metric on: the folder must exist before that
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# Seconds: from a fraction of a millisecond (one stage of a live request) to an hour (a retrain).
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

EVENTS_INGESTED = Counter(
    "shop_events_ingested",
    "Interaction events stored (a replay with a known idempotency key is not counted).",
)
TASK_DURATION = Histogram(
    "shop_task_duration_seconds",
    "Wall time of each Celery task run, by task name and outcome.",
    ["task", "outcome"],
    buckets=_SLOW,
)
RECS_STAGE_LATENCY = Histogram(
    "shop_recs_stage_latency_seconds",
    "Latency of each stage of a live recommendation request (e.g. history, retrieve, rank, rules).",
    ["stage"],
    buckets=_FAST,
)
RECS_SERVED = Counter(
    "shop_recs_served",
    "Recommendation rails served, by where the list came from (live, batch, popular).",
    ["source"],
)
# Request metrics keep django-prometheus' names, so its dashboards read them; the latency buckets resolve the
# pages' and the live API's targets (15 and 50 ms), where its defaults start at 10 ms.
REQUEST_LATENCY = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Seconds from the request reaching Django to its response, by view and method (all middleware included).",
    ["view", "method"],
    buckets=(0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RESPONSES_BY_STATUS = Counter(
    "django_http_responses_total_by_status",
    "Responses by HTTP status code.",
    ["status"],
)
EXCEPTIONS_BY_TYPE = Counter(
    "django_http_exceptions_total_by_type",
    "Exceptions a view raised, by class name (each then answered 4xx/5xx by Django).",
    ["type"],
)
RECS_FALLBACKS = Counter(
    "shop_recs_fallbacks",
    "Requests that could not get the personalised list they asked for, by reason.",
    ["reason"],
)


def events_ingested(count: int) -> None:
    if count > 0:
        EVENTS_INGESTED.inc(count)


def task_finished(*, task: str, outcome: str, seconds: float) -> None:
    TASK_DURATION.labels(task=task, outcome=outcome).observe(max(0.0, seconds))


def recs_stages(timings: Mapping[str, float]) -> None:
    """Record one request's per-stage seconds, e.g. ``{"retrieve": 0.004, "rank": 0.011, "rules": 0.0003}``."""
    for stage, seconds in timings.items():
        RECS_STAGE_LATENCY.labels(stage=str(stage)).observe(max(0.0, float(seconds)))


def recs_served(source: str) -> None:
    RECS_SERVED.labels(source=str(source)).inc()


def recs_fallback(reason: str) -> None:
    RECS_FALLBACKS.labels(reason=str(reason)).inc()

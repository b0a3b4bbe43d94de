"""Beat's popularity refresh: applies the interaction log's new events to the products' decayed scores
(``shop.catalog.popularity``). Idempotent: the service keeps its own watermark."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

from shop.catalog.popularity import popularity_refresh

from .celery import app

REFRESH_TASK = "worker.popularity.refresh"


@app.task(
    name=REFRESH_TASK,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
    soft_time_limit=240,
    time_limit=300,
)
def refresh() -> dict:
    # A first run over a long log stops at the soft limit with every finished batch committed;
    # the next beat tick carries on from the watermark.
    result = popularity_refresh(max_batches=200)
    return {"events": result.events, "products": result.products, "last_event_id": result.last_event_id}

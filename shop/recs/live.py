"""The one recommendation service behind every personalised placement (rails and the API).

Per request: the visitor's experiment arm (``shop.experiments``), then the sources in order

1. **live**: the serving model (:mod:`.serving`) re-ranks candidates for this visitor from the snapshot
   history merged with the visitor's events since the snapshot, read from the database (the newest
   RECS_FRESH_EVENTS, through the (visitor, occurred_at) index, under a statement timeout);
2. **batch**: the visitor's list from the serving score set (``dlrm`` arm only: that list is the model's);
3. **popularity**: the shop's popular list.

Arms: ``popularity`` serves the popular list (source ``popularity``); ``heuristic`` runs the pipeline's
stage 1 without the model; ``dlrm`` (and no running experiment) the full pipeline. When a source cannot
serve, the next one does and the response says why (``reason``): no model loaded, the artifact missing,
the scorer raising, the latency budget (RECS_LATENCY_BUDGET_MS) spent, the database slow. Every request is
counted with its source and reason (:mod:`.stats`). Items in the cart or bought since the snapshot, and
the product on the page, are never recommended.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from shop.catalog.rails import RailContext, popular_ids, trending_ids
from shop.events.models import Event, EventType
from shop.experiments.selectors import assignment_for
from shop.orders.models import CartItem

from . import keys
from .models import ServingPointer
from .selectors import recommendations_for_visitor
from .serving import ServingModel, serving_model, serving_start, serving_status
from .stats import serving_record

#: placement -> what it is; ``product.recommended`` seeds stage 1 with the product on the page.
PLACEMENTS = {
    "home.recommended": "Recommended for you",
    "product.recommended": "You may also like",
    "cart.recommended": "Complete your order",
    "home.trending": "Trending now",
}
TRENDING = "home.trending"
ARMS = ("popularity", "heuristic", "dlrm")
DEFAULT_ARM = "dlrm"  # no running experiment: the full pipeline

LIVE, BATCH, POPULARITY, FALLBACK = "live", "batch", "popularity", "fallback"


@dataclass(frozen=True)
class Served:
    """One recommendation answer: product ids best first, their scores (None when the source has none),
    who ranked them and how long each stage took (milliseconds)."""

    placement: str
    product_ids: list[int]
    scores: list[float | None]
    arm: str | None
    experiment: str | None
    model_version: str | None
    source: str  # live | batch | popularity | fallback
    reason: str  # why an earlier source did not serve ("" when the intended one did)
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Unserved(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


def _executor() -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
    """Scoring threads of this process; at most four requests per thread scoring or queued (beyond
    that a request does not queue behind others: it falls back at once, reason ``busy``)."""
    global _pool, _slots
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                n = max(1, settings.RECS_SERVING_THREADS)
                _slots = threading.BoundedSemaphore(4 * n)
                _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="recs-score")
    return _pool, _slots


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def cart_product_ids(*, visitor_id: uuid.UUID) -> list[int]:
    return list(CartItem.objects.filter(cart__visitor_id=visitor_id).values_list("product_id", flat=True))


def _fresh_events(*, model: ServingModel, visitor_id: uuid.UUID, user_id: int | None):
    """This shopper's newest events since the snapshot as plain recommender data (bounded; one indexed
    query under a statement timeout on PostgreSQL). Raises :class:`_Unserved` when the database is slow."""
    from recommender.data import Interactions

    qs = Event.objects.filter(id__gt=model.max_event_id)
    qs = qs.filter(user_id=user_id) if user_id is not None else qs.filter(visitor_id=visitor_id)
    qs = qs.order_by("-occurred_at").values_list("product_id", "type", keys.epoch_seconds("occurred_at"), "device")
    limit = settings.RECS_FRESH_EVENTS
    try:
        if connection.vendor == "postgresql" and settings.RECS_DB_TIMEOUT_MS > 0:
            nested = connection.in_atomic_block
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SET LOCAL statement_timeout = %s", [int(settings.RECS_DB_TIMEOUT_MS)])
                rows = list(qs[:limit])
                if nested:  # SET LOCAL lasts until the outer transaction ends: give it its timeout back
                    cur.execute("SET LOCAL statement_timeout = DEFAULT")
        else:
            rows = list(qs[:limit])
    except DatabaseError as exc:
        raise _Unserved("db_timeout" if "timeout" in str(exc).lower() else "db_error") from exc
    rows.reverse()  # oldest first
    n = len(rows)
    user = keys.user_key(visitor_id=visitor_id, user_id=user_id)
    return Interactions(
        user_id=np.full(n, user, dtype=object),
        item_id=np.array([str(r[0]) for r in rows], dtype=object),
        event_type=np.array([r[1] for r in rows], dtype=object),
        timestamp=np.array([r[2] for r in rows], dtype=np.int64),
        placement=None,
        position=None,
        device=np.array([r[3] or "" for r in rows], dtype=object),
    ), rows


def _live(
    *,
    model: ServingModel,
    arm: str,
    visitor_id: uuid.UUID,
    user_id: int | None,
    k: int,
    exclude: set[int],
    product_id: int | None,
    device: str,
    t_start: int,
    timings: dict[str, float],
) -> tuple[list[int], list[float | None]]:
    t0 = time.perf_counter_ns()
    fresh, rows = _fresh_events(model=model, visitor_id=visitor_id, user_id=user_id)
    timings["db"] = timings.get("db", 0.0) + _ms(time.perf_counter_ns() - t0)
    exclude = exclude | {pid for pid, kind, _, _ in rows if kind == EventType.PURCHASE}
    pipe = model.pipeline
    user = keys.user_key(visitor_id=visitor_id, user_id=user_id)
    if not len(fresh) and pipe.user_index.get_indexer([user])[0] < 0 and product_id is None:
        raise _Unserved("no_activity")  # nothing personal to rank on: a popular list says as much
    budget_ns = settings.RECS_LATENCY_BUDGET_MS * 1e6 - (time.perf_counter_ns() - t_start)
    if budget_ns <= 0:
        raise _Unserved("over_budget")
    pool, slots = _executor()
    if not slots.acquire(blocking=False):
        raise _Unserved("busy")

    def run():
        try:
            return pipe.recommend(
                user,
                now=int(time.time()) + 1,  # events of this very second count (the pipeline takes those before now)
                k=k,
                n_candidates=settings.RECS_LIVE_CANDIDATES,
                exclude_item_ids=[str(i) for i in exclude],
                session_item_ids=[str(product_id)] if product_id is not None else (),
                device_name=device,
                fresh_events=fresh,
                use_model=arm == "dlrm",
            )
        finally:
            slots.release()

    future = pool.submit(run)
    try:
        rec = future.result(timeout=budget_ns / 1e9)
    except FutureTimeout:
        future.cancel()
        raise _Unserved("over_budget") from None
    except Exception as exc:
        raise _Unserved("scorer_error") from exc
    t = rec.timings
    timings.update(retrieve=_ms(t.retrieve_ns), features=_ms(t.features_ns), rank=_ms(t.rank_ns), rules=_ms(t.rules_ns))
    ids = [int(i) for i in rec.item_ids]
    scores = [None if np.isnan(s) else round(float(s), 6) for s in rec.scores]
    return ids, scores


def batch_model_version() -> str | None:
    """The model version of the serving score set (None when there is none)."""
    return ServingPointer.objects.filter(id=1).values_list("score_set__model_version__version", flat=True).first()


def _without(ids: Iterable[int], exclude: set[int], k: int) -> list[int]:
    out = [i for i in ids if i not in exclude]
    return out[:k]


def recommendations_serve(
    *,
    visitor_id: uuid.UUID,
    user_id: int | None = None,
    placement: str,
    k: int,
    exclude_ids: Sequence[int] = (),
    product_id: int | None = None,
    device: str = "",
    cart_ids: Iterable[int] | None = None,
    arm_override: str | None = None,
) -> Served:
    """The list for one visitor and placement (see the module docstring). Never raises for a serving
    fault: the next source answers and ``reason`` says why. ``cart_ids``: the cart when the caller has
    read it already (else it is read here). ``arm_override``: what another arm would show this visitor (a
    staff preview: served, but not counted in the serving figures)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}")
    serving_start()  # the loader thread, once per process; never waits for the model
    t_start = time.perf_counter_ns()
    timings: dict[str, float] = {}
    assignment = assignment_for(visitor_id=visitor_id)
    arm = assignment.arm if assignment.arm in ARMS else DEFAULT_ARM
    if arm_override is not None:
        if arm_override not in ARMS:
            raise ValueError(f"unknown arm {arm_override!r}")
        arm = arm_override
    t = time.perf_counter_ns()
    timings["assign"] = _ms(t - t_start)
    cart = cart_product_ids(visitor_id=visitor_id) if cart_ids is None else cart_ids
    exclude = set(exclude_ids) | set(cart)
    if product_id is not None:
        exclude.add(product_id)
    timings["db"] = _ms(time.perf_counter_ns() - t)
    model = serving_model()
    version = None
    ids: list[int] = []
    scores: list[float | None] = []
    source, reason = POPULARITY, ""
    if placement == TRENDING:
        t = time.perf_counter_ns()
        ids = _without(trending_ids(RailContext()), exclude, k)
        timings["popularity"] = _ms(time.perf_counter_ns() - t)
    elif arm == "popularity":
        pass  # the control arm: the popular list below
    else:
        try:
            if model is None:
                status = serving_status()
                raise _Unserved("model_unavailable" if "unavailable" in status.error else "model_loading")
            ids, scores = _live(
                model=model,
                arm=arm,
                visitor_id=visitor_id,
                user_id=user_id,
                k=k,
                exclude=exclude,
                product_id=product_id,
                device=device,
                t_start=t_start,
                timings=timings,
            )
            source, version = LIVE, model.version if arm == "dlrm" else None
        except _Unserved as e:
            reason = e.reason
        if source != LIVE and arm == "dlrm":
            t = time.perf_counter_ns()
            try:
                batch = recommendations_for_visitor(visitor_id=visitor_id, limit=k + len(exclude))
            except DatabaseError:
                batch, reason = [], reason or "db_error"
            timings["batch"] = _ms(time.perf_counter_ns() - t)
            ids = _without(batch, exclude, k)
            if ids:
                source, scores = BATCH, [None] * len(ids)
                version = batch_model_version()
        if source not in (LIVE, BATCH):
            source = FALLBACK
    if source in (POPULARITY, FALLBACK) and placement != TRENDING:
        t = time.perf_counter_ns()
        ids = _without(popular_ids(RailContext()), exclude, k)
        scores = [None] * len(ids)
        timings["popularity"] = _ms(time.perf_counter_ns() - t)
    if not scores or len(scores) != len(ids):
        scores = [None] * len(ids)
    timings["total"] = _ms(time.perf_counter_ns() - t_start)
    served = Served(
        placement=placement,
        product_ids=ids,
        scores=scores,
        arm=arm,
        experiment=assignment.experiment,
        model_version=version,
        source=source,
        reason=reason,
        timings_ms=timings,
    )
    if arm_override is None:
        serving_record(
            placement=placement, arm=arm, source=source, reason=reason, model_version=version, timings_ms=timings
        )
    return served

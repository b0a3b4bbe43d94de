"""Time-decayed popularity per product, kept up to date off the request path.

Each event of interest adds ``weight * 2 ** ((occurred_at - EPOCH) / half_life)`` to its product's
score. Dividing every score by the same ``2 ** ((now - EPOCH) / half_life)`` gives the decayed score
now, so *ordering* by the stored sum is ordering by today's decayed score: nothing has to be
re-decayed as time passes, and a refresh touches only the products with new events. The sum is kept
as its base-2 logarithm (added with log-sum-exp), so it never overflows however far ``occurred_at``
lies from ``EPOCH``.

Two scores with the same machinery: ``popularity`` (7-day half-life: the "popular" sort and rails)
and ``trending`` (1-day half-life: what is taking off right now).

:func:`popularity_refresh` reads the interaction log after a watermark (the last event id applied),
in id order, in batches, and commits the watermark with the scores, so a refresh that stops half way
loses nothing. Events received in the last ``COMMIT_LAG`` are left for the next refresh: a row
inserted by a transaction that has not committed yet is invisible, and its id may be lower than one
already visible.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from shop.events.models import Event, EventType

from .models import PopularityState, Product

EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
POPULARITY_HALF_LIFE = dt.timedelta(days=7)
TRENDING_HALF_LIFE = dt.timedelta(days=1)
# What counts, and how much. "popular" keeps the shop's meaning (intent: adds to cart and sales, never
# mere views); "trending" also counts views, so a product taking off shows up before it sells.
POPULARITY_WEIGHTS: dict[str, float] = {EventType.ADD_TO_CART: 1.0, EventType.PURCHASE: 2.0}
TRENDING_WEIGHTS: dict[str, float] = {EventType.VIEW: 1.0, EventType.ADD_TO_CART: 2.0, EventType.PURCHASE: 4.0}
SCORED_TYPES = frozenset(POPULARITY_WEIGHTS) | frozenset(TRENDING_WEIGHTS)
COMMIT_LAG = dt.timedelta(seconds=120)
BATCH = 20_000


def _log2_sum(a: float | None, b: float) -> float:
    """log2(2**a + 2**b) without overflow; ``a`` None means an empty sum."""
    if a is None:
        return b
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + math.log2(1.0 + 2.0 ** (lo - hi))


def log2_contribution(*, weight: float, occurred_at: dt.datetime, half_life: dt.timedelta) -> float:
    return math.log2(weight) + (occurred_at - EPOCH) / half_life


def decayed(log2_score: float | None, *, now: dt.datetime, half_life: dt.timedelta) -> float:
    """The score's value at ``now`` (weighted events, each halved every ``half_life``)."""
    if log2_score is None:
        return 0.0
    exponent = log2_score - (now - EPOCH) / half_life
    return 2.0**exponent if exponent > -1000 else 0.0


@dataclass(frozen=True, slots=True)
class RefreshResult:
    events: int
    products: int
    last_event_id: int


def popularity_refresh(
    *,
    now: dt.datetime | None = None,
    batch: int = BATCH,
    max_batches: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RefreshResult:
    """Apply the events logged since the last refresh to ``Product.popularity`` and ``.trending``.

    Idempotent and safe to run concurrently (the state row is locked per batch); reads only the new
    events (by primary key) and writes only the products they name. ``progress`` is called with the
    events applied by each batch.
    """
    now = now or timezone.now()
    cutoff = now - COMMIT_LAG
    total_events = products_touched = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            state, _ = PopularityState.objects.select_for_update().get_or_create(pk=1)
            after = state.last_event_id
            # Stop before the first event received too recently: it and everything after it wait for the
            # next refresh (an older, uncommitted row may still appear before it). Found in the database
            # by the primary key, in id order: the rows of the last COMMIT_LAG are never read into Python
            # (reading them, up to ``batch`` rows on each refresh only to drop them, was most of its cost).
            recent = (
                Event.objects.filter(id__gt=after, received_at__gt=cutoff)
                .order_by("id")
                .values_list("id", flat=True)
                .first()
            )
            window = Event.objects.filter(id__gt=after)
            if recent is not None:
                window = window.filter(id__lt=recent)
            # the batch: the next ``batch`` events of the window by id (the watermark moves past all of
            # them); only those that score are read
            upto = window.order_by("id").values_list("id", flat=True)[batch - 1 : batch].first()
            full = upto is not None
            if upto is None:
                upto = window.aggregate(last=Max("id"))["last"]
            if upto is None:
                state.refreshed_at = now
                state.save(update_fields=["refreshed_at"])
                break
            span = window.filter(id__lte=upto)
            events = span.count()
            touched = _apply(
                span.filter(type__in=SCORED_TYPES, product__isnull=False)
                .order_by("id")
                .values_list("product_id", "type", "occurred_at")
            )
            state.last_event_id = upto
            state.events_applied += events
            state.refreshed_at = now
            state.save(update_fields=["last_event_id", "events_applied", "refreshed_at"])
        total_events += events
        products_touched += touched
        batches += 1
        if progress is not None:
            progress(events)
        if not full:
            break
    state = PopularityState.objects.filter(pk=1).first()
    return RefreshResult(
        events=total_events, products=products_touched, last_event_id=state.last_event_id if state else 0
    )


def _apply(rows: Iterable[tuple[int, str, dt.datetime]]) -> int:
    """Add the (product id, type, occurred at) rows' contributions to their products' scores; returns
    how many products changed."""
    pop: dict[int, float] = {}
    trend: dict[int, float] = {}
    now = timezone.now()
    for product_id, type_, occurred_at in rows:
        when = min(occurred_at, now)  # a clock ahead of ours gets no extra weight
        if type_ in POPULARITY_WEIGHTS:
            pop[product_id] = _log2_sum(
                pop.get(product_id),
                log2_contribution(weight=POPULARITY_WEIGHTS[type_], occurred_at=when, half_life=POPULARITY_HALF_LIFE),
            )
        if type_ in TRENDING_WEIGHTS:
            trend[product_id] = _log2_sum(
                trend.get(product_id),
                log2_contribution(weight=TRENDING_WEIGHTS[type_], occurred_at=when, half_life=TRENDING_HALF_LIFE),
            )
    ids = set(pop) | set(trend)
    if not ids:
        return 0
    products = list(Product.objects.filter(pk__in=list(ids)).only("pk", "popularity", "trending"))
    for p in products:
        if p.pk in pop:
            p.popularity = _log2_sum(p.popularity, pop[p.pk])
        if p.pk in trend:
            p.trending = _log2_sum(p.trending, trend[p.pk])
    Product.objects.bulk_update(products, ["popularity", "trending"], batch_size=1000)
    return len(products)


def popularity_rebuild(*, now: dt.datetime | None = None) -> RefreshResult:
    """Recompute every product's scores from the whole log in one SQL statement (PostgreSQL): the same
    sums as :func:`popularity_refresh`, for a first run over a long log (millions of events) where
    reading the log into Python batch by batch would take most of an hour. Takes the refresh's state
    lock, so it never runs beside a refresh; later refreshes continue from its watermark.

    Each sum is taken relative to ``now`` (every exponent <= 0: no overflow however far ``now`` lies from
    ``EPOCH``), then shifted back to ``EPOCH``; an event more than ~1,000 half-lives old adds nothing.
    """
    if connection.vendor != "postgresql":
        return popularity_refresh(now=now)
    clamp = timezone.now()  # a clock ahead of ours gets no extra weight (as in _apply)
    now = now or clamp
    cutoff = now - COMMIT_LAG
    q = connection.ops.quote_name
    ev, pr = Event._meta, Product._meta

    def weighted(weights: dict[str, float], half_life: dt.timedelta) -> str:
        case = " ".join(f"WHEN %s THEN {float(w)!r}" for w in weights.values())
        return (
            f"sum(CASE e.{q(ev.get_field('type').column)} {case} END * "
            f"power(2.0, extract(epoch FROM (least(e.{q(ev.get_field('occurred_at').column)}, %s) - %s)) / "
            f"{half_life.total_seconds()!r})) FILTER (WHERE e.{q(ev.get_field('type').column)} IN "
            f"({', '.join(['%s'] * len(weights))}))"
        )

    def log2_score(weights: dict[str, float], half_life: dt.timedelta) -> tuple[str, list]:
        shift = (now - EPOCH) / half_life
        sql = f"CASE WHEN {{s}} > 0 THEN ln({{s}}) / ln(2.0) + {shift!r} END"
        inner = weighted(weights, half_life)
        params = [*weights, clamp, now, *weights]
        return sql.format(s=inner), params + params

    pop_sql, pop_params = log2_score(POPULARITY_WEIGHTS, POPULARITY_HALF_LIFE)
    trend_sql, trend_params = log2_score(TRENDING_WEIGHTS, TRENDING_HALF_LIFE)
    e_table, p_table = q(ev.db_table), q(pr.db_table)
    e_id, e_product, e_received = (q(ev.get_field(n).column) for n in ("id", "product", "received_at"))
    p_id, p_pop, p_trend = (q(pr.get_field(n).column) for n in ("id", "popularity", "trending"))
    with transaction.atomic():
        state, _ = PopularityState.objects.select_for_update().get_or_create(pk=1)
        with connection.cursor() as cur:
            # the watermark: everything before the first event received too recently (as a refresh stops)
            cur.execute(f"SELECT min({e_id}) FROM {e_table} WHERE {e_received} > %s", [cutoff])  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
            first_recent = cur.fetchone()[0]
            if first_recent is None:
                cur.execute(f"SELECT coalesce(max({e_id}), 0) FROM {e_table}")  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
                upto = cur.fetchone()[0]
            else:
                upto = first_recent - 1
            cur.execute(f"SELECT count(*) FROM {e_table} WHERE {e_id} <= %s", [upto])  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
            events = cur.fetchone()[0]
            cur.execute(
                f"UPDATE {p_table} SET {p_pop} = NULL, {p_trend} = NULL WHERE {p_pop} IS NOT NULL OR {p_trend} IS NOT NULL"  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
            )
            cur.execute(
                f"UPDATE {p_table} AS p SET {p_pop} = s.pop, {p_trend} = s.trend FROM ("  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
                f"SELECT e.{e_product} AS product_id, {pop_sql} AS pop, {trend_sql} AS trend "
                f"FROM {e_table} AS e WHERE e.{e_id} <= %s AND e.{e_product} IS NOT NULL "
                f"GROUP BY e.{e_product}) AS s WHERE p.{p_id} = s.product_id",
                [*pop_params, *trend_params, upto],
            )
            products = cur.rowcount
        state.last_event_id = upto
        state.events_applied = events
        state.refreshed_at = now
        state.save(update_fields=["last_event_id", "events_applied", "refreshed_at"])
    return RefreshResult(events=events, products=products, last_event_id=upto)

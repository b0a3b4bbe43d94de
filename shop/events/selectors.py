"""Reads for the interaction log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, F, FloatField, Func, Max, Q, Value, Window
from django.db.models.functions import Floor, Lag

from shop.catalog.models import Product

from .models import Event, EventType


def event_product_ids_known(*, product_ids: Iterable[int]) -> set[int]:
    """Which of ``product_ids`` exist (one query for a whole batch).

    Inactive products count: a card rendered a moment before a merchant hid the product was
    still seen, and its impression is still worth keeping.
    """
    ids = set(product_ids)
    if not ids:
        return set()
    return set(Product.objects.filter(pk__in=ids).values_list("pk", flat=True))


# ------------------------------------------------------------------------------------ console figures

# A visitor's session ends after this long without an event (the usual web-analytics definition).
SESSION_GAP = dt.timedelta(minutes=30)


class EpochSeconds(Func):
    """Seconds since 1970 of a datetime column, on PostgreSQL and SQLite alike."""

    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(julianday(%(expressions)s) - 2440587.5) * 86400.0", **extra)


@dataclass(frozen=True, slots=True)
class TimeBuckets:
    """``count`` equal buckets of ``width_s`` seconds ending at ``end``."""

    start: dt.datetime
    end: dt.datetime
    count: int

    @property
    def width_s(self) -> float:
        return (self.end - self.start).total_seconds() / self.count

    def index_expression(self, field: str):
        """SQL: which bucket (0..count-1) a row's ``field`` falls in."""
        return Floor((EpochSeconds(field) - Value(self.start.timestamp())) / Value(self.width_s))

    def index_of(self, when: dt.datetime) -> int:
        return min(self.count - 1, max(0, int((when - self.start).total_seconds() // self.width_s)))

    def starts(self) -> list[dt.datetime]:
        return [self.start + dt.timedelta(seconds=i * self.width_s) for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class TrafficBucket:
    start: dt.datetime
    visitors: int
    sessions: int
    events: int
    impressions: int
    clicks: int
    purchasers: int

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def conversion_rate(self) -> float | None:
        return self.purchasers / self.visitors if self.visitors else None


@dataclass(frozen=True, slots=True)
class Traffic:
    """Interaction-log figures for a window: totals and the same per bucket (for sparklines).

    ``visitors``: distinct visitors with any event; ``sessions``: visits with an event in the window (a
    visit ends after ``SESSION_GAP`` without one); ``ctr``: clicks / impressions; ``conversion_rate``:
    visitors with a purchase / visitors.
    """

    start: dt.datetime
    end: dt.datetime
    visitors: int
    sessions: int
    events: int
    impressions: int
    clicks: int
    purchasers: int
    buckets: list[TrafficBucket]

    @property
    def events_per_minute(self) -> float:
        return self.events / ((self.end - self.start).total_seconds() / 60)

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def conversion_rate(self) -> float | None:
        return self.purchasers / self.visitors if self.visitors else None


def _traffic_counts():
    return {
        "visitors": Count("visitor_id", distinct=True),
        "events": Count("id"),
        "impressions": Count("id", filter=Q(type=EventType.IMPRESSION)),
        "clicks": Count("id", filter=Q(type=EventType.CLICK)),
        "purchasers": Count("visitor_id", distinct=True, filter=Q(type=EventType.PURCHASE)),
    }


def event_session_starts(*, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """When each visit with an event in [start, end) began (or its first event in the window)."""
    previous = Window(Lag("occurred_at"), partition_by=[F("visitor_id")], order_by=F("occurred_at").asc())
    return list(
        Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
        .annotate(previous=previous)
        .filter(Q(previous__isnull=True) | Q(occurred_at__gt=F("previous") + SESSION_GAP))
        .values_list("occurred_at", flat=True)
    )


def event_traffic(*, start: dt.datetime, end: dt.datetime, buckets: int) -> Traffic:
    """Totals and per-bucket figures of the interaction log in [start, end): three queries."""
    if end <= start or buckets < 1:
        raise ValueError("need start < end and at least one bucket")
    grid = TimeBuckets(start=start, end=end, count=buckets)
    window = Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    totals = window.aggregate(**_traffic_counts())
    rows = {
        int(r["bucket"]): r
        for r in window.annotate(bucket=grid.index_expression("occurred_at"))
        .values("bucket")
        .annotate(**_traffic_counts())
        .order_by("bucket")
    }
    session_starts = event_session_starts(start=start, end=end)
    per_bucket = [0] * buckets
    for when in session_starts:
        per_bucket[grid.index_of(when)] += 1
    empty = dict.fromkeys(("visitors", "events", "impressions", "clicks", "purchasers"), 0)
    series = []
    for i, bucket_start in enumerate(grid.starts()):
        r = rows.get(i, empty)
        series.append(
            TrafficBucket(
                start=bucket_start,
                sessions=per_bucket[i],
                **{k: int(r[k]) for k in empty},
            )
        )
    return Traffic(
        start=start, end=end, sessions=len(session_starts), buckets=series, **{k: int(totals[k]) for k in empty}
    )


@dataclass(frozen=True, slots=True)
class VisitorActivity:
    when: dt.datetime
    type: str
    product_id: int
    product_name: str
    placement: str
    position: int | None
    arm: str | None
    model_version: str | None


def visitor_recent_events(*, visitor_id, limit: int = 50) -> list[VisitorActivity]:
    """A visitor's latest events, newest first (the console's inspector)."""
    rows = (
        Event.objects.filter(visitor_id=visitor_id)
        .order_by("-occurred_at", "-id")
        .values_list(
            "occurred_at", "type", "product_id", "product__name", "placement", "position", "arm", "model_version"
        )[:limit]
    )
    return [VisitorActivity(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class ActiveVisitor:
    visitor_id: str
    username: str | None
    events: int
    last_seen: dt.datetime


def visitor_list_recent(*, since: dt.datetime, limit: int = 50) -> list[ActiveVisitor]:
    """Visitors with events since ``since``, most recently seen first (pick one in the inspector)."""
    rows = (
        Event.objects.filter(occurred_at__gte=since)
        .values("visitor_id", "visitor__user__username")
        .annotate(events=Count("id"), last_seen=Max("occurred_at"))
        .order_by("-last_seen")[:limit]
    )
    return [
        ActiveVisitor(
            visitor_id=str(r["visitor_id"]),
            username=r["visitor__user__username"],
            events=r["events"],
            last_seen=r["last_seen"],
        )
        for r in rows
    ]

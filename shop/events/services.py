"""Writing the interaction log. Every write is idempotent: a replayed key is stored once."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from shop.ops import metrics
from shop.recs.attribution import attribution_for

from .models import Event, EventSource, EventType, Visitor


@dataclass(frozen=True, slots=True)
class EventIn:
    """One event to record (already validated: product exists, type is known)."""

    type: str
    product_id: int
    idempotency_key: str
    placement: str = ""
    position: int | None = None
    page_view_id: uuid.UUID | None = None
    quantity: int = 1
    order_id: int | None = None
    occurred_at: datetime | None = None
    arm: str | None = None
    model_version: str | None = None
    device: str = ""
    source: str = EventSource.WEB
    extra: dict = field(default_factory=dict)


# A client's clock may be wrong, and a client may lie: an event is never dated more than this far
# from when it arrived (one event dated 2100 would otherwise move the ranker's "now").
OCCURRED_AT_MAX_PAST = timedelta(hours=24)
OCCURRED_AT_MAX_FUTURE = timedelta(minutes=5)


def occurred_at_clamp(value: datetime | None, *, received_at: datetime) -> datetime:
    """``value`` moved into [received_at - 24 h, received_at + 5 min]; None means ``received_at``."""
    if value is None:
        return received_at
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return min(max(value, received_at - OCCURRED_AT_MAX_PAST), received_at + OCCURRED_AT_MAX_FUTURE)


def visitor_get_or_create(*, visitor_id: uuid.UUID, user: AbstractBaseUser | None = None) -> Visitor:
    """The visitor row for a cookie id, created on first use; attached to ``user`` when known."""
    visitor, _ = Visitor.objects.get_or_create(id=visitor_id)
    if user is not None and user.is_authenticated and visitor.user_id is None:
        visitor_attach_user(visitor=visitor, user=user)
    return visitor


@transaction.atomic
def visitor_attach_user(*, visitor: Visitor, user: AbstractBaseUser) -> Visitor:
    """On log in: the anonymous visitor's history becomes the user's history."""
    Visitor.objects.filter(pk=visitor.pk).update(user=user)
    Event.objects.filter(visitor=visitor, user__isnull=True).update(user=user)
    visitor.user = user
    return visitor


def _visitor_ensure(*, visitor_id: uuid.UUID, user_id: int | None) -> int | None:
    """Create the visitor row if new (one INSERT .. ON CONFLICT DO NOTHING); returns its user id.

    A logged-in user is attached on first sight; otherwise the user a browser logged in as
    before keeps being credited.
    """
    Visitor.objects.bulk_create([Visitor(id=visitor_id, user_id=user_id)], ignore_conflicts=True)
    if user_id is not None:
        return user_id
    return Visitor.objects.filter(pk=visitor_id).values_list("user_id", flat=True).first()


_EVENT_INSERT_FIELDS = [
    f for f in Event._meta.concrete_fields if not f.primary_key
]  # every column but the id, in model order


def _events_insert_returning_keys(rows: Sequence[Event]) -> set[str]:
    """INSERT .. ON CONFLICT (idempotency_key, visitor) DO NOTHING RETURNING idempotency_key (portable path).

    One round trip per chunk that both stores the new rows and says which were new; the ORM's
    ``bulk_create(ignore_conflicts=True)`` cannot report that.
    """
    if not rows:
        return set()
    ops = connection.ops
    table = ops.quote_name(Event._meta.db_table)
    columns = ", ".join(ops.quote_name(f.column) for f in _EVENT_INSERT_FIELDS)
    key_column = ops.quote_name(Event._meta.get_field("idempotency_key").column)
    visitor_column = ops.quote_name(Event._meta.get_field("visitor").column)
    row_sql = "(" + ", ".join(["%s"] * len(_EVENT_INSERT_FIELDS)) + ")"
    new_keys: set[str] = set()
    chunk = max(1, 60_000 // len(_EVENT_INSERT_FIELDS))  # stay far below parameter limits
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params: list = []
            for row in part:
                for f in _EVENT_INSERT_FIELDS:
                    params.append(f.get_db_prep_save(f.pre_save(row, add=True), connection))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(part))} "  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
                f"ON CONFLICT ({key_column}, {visitor_column}) DO NOTHING RETURNING {key_column}",
                params,
            )
            new_keys.update(r[0] for r in cursor.fetchall())
    return new_keys


def _events_record_portable(
    *, visitor_id: uuid.UUID, auth_user_id: int | None, events: Sequence[EventIn], now: datetime
) -> int:
    """SQLite (the demo's embedded database): visitor upsert, its user, then the insert, in one transaction."""
    with transaction.atomic():
        user_id = _visitor_ensure(visitor_id=visitor_id, user_id=auth_user_id)
        rows = [
            Event(
                idempotency_key=e.idempotency_key,
                visitor_id=visitor_id,
                user_id=user_id,
                product_id=e.product_id,
                type=e.type,
                placement=e.placement,
                position=e.position,
                page_view_id=e.page_view_id,
                quantity=e.quantity,
                order_id=e.order_id,
                occurred_at=occurred_at_clamp(e.occurred_at, received_at=now),
                arm=e.arm,
                model_version=e.model_version,
                device=e.device,
                source=e.source,
                received_at=now,
            )
            for e in events
        ]
        return len(_events_insert_returning_keys(rows))


def _record_type(f) -> str:
    # varchar(n) -> varchar: an explicit cast to varchar(n) would silently truncate an over-long
    # value, while the column's own assignment cast refuses it as the portable path does.
    return re.sub(r"\(.*\)", "", f.db_type(connection))


# The events travel as one JSON document (a fixed statement whatever the batch size; encoding a page's
# view and impressions costs a few microseconds, where binding one array per column cost about a
# millisecond of client CPU); the visitor, its user and received_at are the same for the whole batch
# and travel once.
_PER_EVENT = (
    "idempotency_key",
    "product",
    "type",
    "placement",
    "position",
    "page_view_id",
    "quantity",
    "order",
    "arm",
    "model_version",
    "source",
    "device",
    "occurred_at",
)


@lru_cache(maxsize=1)
def _per_event_columns() -> tuple[str, ...]:
    return tuple(Event._meta.get_field(name).column for name in _PER_EVENT)


def impression_key(*, page_view_id: uuid.UUID | str | None, placement: str, position: int | None) -> str:
    """The idempotency key of a card's impression in one page view: the server's (a rail it served) and the
    beacon's (a card seen) are the same, so a card seen in a served rail is stored once, with the arm."""
    return f"imp:{page_view_id or 'none'}:{placement}:{'' if position is None else position}"[:100]


def clicks_attributed(*, visitor_id: uuid.UUID, events: Sequence[EventIn]) -> list[EventIn]:
    """``events`` with each click on a served rail's card given the arm and model version of the impression
    the server recorded for that card (same visitor, page view, placement and position; one indexed query
    for the batch). What the client says about arms is never read: a click on a card the server did not
    serve with an arm (a grid, a search result, trending) keeps none."""
    wanted: dict[str, list[int]] = {}  # a card clicked twice in one page view: both clicks get its arm
    for i, e in enumerate(events):
        if e.type == EventType.CLICK and e.page_view_id is not None and e.position is not None:
            key = impression_key(page_view_id=e.page_view_id, placement=e.placement, position=e.position)
            wanted.setdefault(key, []).append(i)
    if not wanted:
        return list(events)
    served = Event.objects.filter(
        visitor_id=visitor_id, idempotency_key__in=list(wanted), type=EventType.IMPRESSION, arm__isnull=False
    ).values_list("idempotency_key", "arm", "model_version")
    out = list(events)
    for key, arm, model_version in served:
        for i in wanted[key]:
            out[i] = replace(out[i], arm=arm, model_version=model_version)
    return out


@lru_cache(maxsize=1)
def _events_record_pg_sql() -> str:
    q = connection.ops.quote_name
    ev, vi = Event._meta, Visitor._meta
    per_event = [ev.get_field(name) for name in _PER_EVENT]
    cols = [f.column for f in per_event]
    record = ", ".join(f"{q(f.column)} {_record_type(f)}" for f in per_event)
    visitor_cols = ", ".join(
        q(vi.get_field(n).column) for n in ("id", "user", "external_id", "attributes", "created_at")
    )
    v_id, v_user = q(vi.get_field("id").column), q(vi.get_field("user").column)
    key = q(ev.get_field("idempotency_key").column)
    visitor = q(ev.get_field("visitor").column)
    user_type = ev.get_field("user").db_type(connection)
    insert_cols = ", ".join(
        q(c)
        for c in [
            *cols,
            ev.get_field("visitor").column,
            ev.get_field("user").column,
            ev.get_field("received_at").column,
        ]
    )
    return (
        # The visitor row first (a data-modifying CTE; the events' foreign key is checked at the end
        # of the statement, when it exists). A visitor seen before keeps crediting the user it was
        # attached to; a new one is created with the signed-in user, if any.
        f"WITH new_visitor AS (INSERT INTO {q(vi.db_table)} ({visitor_cols}) VALUES (%s, %s, NULL, '{{}}', %s) "  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
        f"ON CONFLICT ({v_id}) DO NOTHING) "
        f"INSERT INTO {q(ev.db_table)} ({insert_cols}) "
        f"SELECT {', '.join('e.' + q(c) for c in cols)}, %s, "
        f"COALESCE(%s::{user_type}, (SELECT {v_user} FROM {q(vi.db_table)} WHERE {v_id} = %s)), %s "
        f"FROM json_to_recordset(%s::json) AS e({record}) "
        f"ON CONFLICT ({key}, {visitor}) DO NOTHING RETURNING {key}"
    )


def _events_record_pg(
    *, visitor_id: uuid.UUID, auth_user_id: int | None, events: Sequence[EventIn], now: datetime
) -> int:
    """PostgreSQL: the visitor upsert and every event in ONE statement (atomic by itself)."""
    names = _per_event_columns()
    rows = [
        dict(
            zip(
                names,
                (
                    e.idempotency_key,
                    e.product_id,
                    str(e.type),  # a TextChoices member is stored by its value
                    e.placement,
                    e.position,
                    None if e.page_view_id is None else str(e.page_view_id),
                    e.quantity,
                    e.order_id,
                    e.arm,
                    e.model_version,
                    str(e.source),
                    e.device,
                    occurred_at_clamp(e.occurred_at, received_at=now).isoformat(),
                ),
                strict=True,
            )
        )
        for e in events
    ]
    params = [visitor_id, auth_user_id, now, visitor_id, auth_user_id, visitor_id, now, json.dumps(rows)]
    with connection.cursor() as cursor:
        cursor.execute(_events_record_pg_sql(), params)
        return len({r[0] for r in cursor.fetchall()})


def events_record(*, visitor_id: uuid.UUID, user: AbstractBaseUser | None, events: Sequence[EventIn]) -> int:
    """Store ``events`` for one visitor, all or nothing; returns how many were new.

    Replays (same visitor and idempotency key, also within one batch) are ignored by the unique
    constraint, so a retried beacon or API post never double-counts. ``occurred_at`` is clamped to
    [now - 24 h, now + 5 min] (``occurred_at_clamp``). On PostgreSQL one statement whatever the
    batch size (visitor upsert + ``INSERT .. SELECT FROM unnest(arrays)``); elsewhere three queries.
    """
    if not events:
        return 0
    auth_user_id = user.pk if user is not None and user.is_authenticated else None
    now = timezone.now()
    record = _events_record_pg if connection.vendor == "postgresql" else _events_record_portable
    stored = record(visitor_id=visitor_id, auth_user_id=auth_user_id, events=events, now=now)
    metrics.events_ingested(stored)
    return stored


def web_event_in(
    *,
    visitor_id: uuid.UUID,
    type: EventType | str,
    product_id: int,
    idempotency_key: str,
    placement: str = "",
    position: int | None = None,
    page_view_id: uuid.UUID | None = None,
    quantity: int = 1,
    order_id: int | None = None,
    occurred_at: datetime | None = None,
    device: str = "",
) -> EventIn:
    """A server-side event (view, add to cart, remove, purchase) with the visitor's experiment arm and
    the model version serving it, ready for :func:`events_record` (alone or with other events of the
    same visitor, in one statement)."""
    arm, model_version = attribution_for(visitor_id=visitor_id)
    return EventIn(
        type=str(type),
        product_id=product_id,
        idempotency_key=idempotency_key,
        placement=placement,
        position=position,
        page_view_id=page_view_id,
        quantity=quantity,
        order_id=order_id,
        occurred_at=occurred_at,
        device=device,
        source=EventSource.WEB,
        arm=arm,
        model_version=model_version,
    )


def event_record(
    *,
    visitor_id: uuid.UUID,
    user: AbstractBaseUser | None,
    type: EventType | str,
    product_id: int,
    idempotency_key: str,
    placement: str = "",
    position: int | None = None,
    page_view_id: uuid.UUID | None = None,
    quantity: int = 1,
    order_id: int | None = None,
    device: str = "",
) -> bool:
    """Record one server-side event (view, add to cart, remove, purchase), with the visitor's experiment
    arm and the model version serving it. True if new."""
    event = web_event_in(
        visitor_id=visitor_id,
        type=type,
        product_id=product_id,
        idempotency_key=idempotency_key,
        placement=placement,
        position=position,
        page_view_id=page_view_id,
        quantity=quantity,
        order_id=order_id,
        device=device,
    )
    return events_record(visitor_id=visitor_id, user=user, events=[event]) == 1

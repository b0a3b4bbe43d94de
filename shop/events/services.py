"""Writing the interaction log. Every write is idempotent: a replayed key is stored once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

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
    """INSERT .. ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key.

    One round trip per chunk that both stores the new rows and says which were new; the ORM's
    ``bulk_create(ignore_conflicts=True)`` cannot report that.
    """
    if not rows:
        return set()
    ops = connection.ops
    table = ops.quote_name(Event._meta.db_table)
    columns = ", ".join(ops.quote_name(f.column) for f in _EVENT_INSERT_FIELDS)
    key_column = ops.quote_name(Event._meta.get_field("idempotency_key").column)
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
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(part))} "
                f"ON CONFLICT ({key_column}) DO NOTHING RETURNING {key_column}",
                params,
            )
            new_keys.update(r[0] for r in cursor.fetchall())
    return new_keys


def events_record(*, visitor_id: uuid.UUID, user: AbstractBaseUser | None, events: Sequence[EventIn]) -> int:
    """Store ``events`` for one visitor in one transaction; returns how many were new.

    Replays (same idempotency key) are ignored by the unique constraint, so a retried beacon or
    API post never double-counts. Three queries whatever the batch size (visitor upsert, its
    user, one insert per ~3,000 events).
    """
    if not events:
        return 0
    auth_user_id = user.pk if user is not None and user.is_authenticated else None
    now = timezone.now()
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
                occurred_at=e.occurred_at or now,
                arm=e.arm,
                model_version=e.model_version,
                device=e.device,
                source=e.source,
                received_at=now,
            )
            for e in events
        ]
        new_keys = _events_insert_returning_keys(rows)
    return len(new_keys)


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
    """Record one server-side event (view, add to cart, remove, purchase). True if new."""
    return (
        events_record(
            visitor_id=visitor_id,
            user=user,
            events=[
                EventIn(
                    type=str(type),
                    product_id=product_id,
                    idempotency_key=idempotency_key,
                    placement=placement,
                    position=position,
                    page_view_id=page_view_id,
                    quantity=quantity,
                    order_id=order_id,
                    device=device,
                    source=EventSource.WEB,
                )
            ],
        )
        == 1
    )

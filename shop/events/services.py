"""Writing the interaction log. Every write is idempotent: a replayed key is stored once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
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


def events_record(*, visitor_id: uuid.UUID, user: AbstractBaseUser | None, events: Sequence[EventIn]) -> int:
    """Store ``events`` for one visitor in one transaction; returns how many were new.

    Replays (same idempotency key) are ignored by the unique constraint, so a retried beacon or
    API post never double-counts.
    """
    if not events:
        return 0
    user_id = user.pk if user is not None and user.is_authenticated else None
    now = timezone.now()
    with transaction.atomic():
        visitor = visitor_get_or_create(visitor_id=visitor_id, user=user if user_id else None)
        rows = [
            Event(
                idempotency_key=e.idempotency_key,
                visitor_id=visitor.pk,
                user_id=user_id or visitor.user_id,
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
            )
            for e in events
        ]
        keys = [r.idempotency_key for r in rows]
        before = set(Event.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
        Event.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return len(set(keys) - before)


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

"""How shop rows are named in the recommender's plain data (one definition, used by export and scoring).

A shopper is their user account when they have one (``u<user id>``: every device they log in on shares
the history), else their visitor cookie (the uuid's 32 hex digits). Items are product ids as strings.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Case, CharField, Value, When
from django.db.models.functions import Cast, Concat, Replace


def user_key(*, visitor_id: uuid.UUID | str, user_id: int | None) -> str:
    if user_id is not None:
        return f"u{user_id}"
    return visitor_id.hex if isinstance(visitor_id, uuid.UUID) else uuid.UUID(str(visitor_id)).hex


def event_user_key() -> models.Expression:
    """SQL for :func:`user_key` of an Event row (same string, computed by the database)."""
    return Case(
        When(user__isnull=False, then=Concat(Value("u"), Cast("user_id", CharField()))),
        default=Replace(Cast("visitor_id", CharField()), Value("-"), Value("")),
        output_field=CharField(),
    )


class EpochSeconds(models.Func):
    """A timestamp column as whole seconds since 1970 (int), computed by the database."""

    output_field = models.BigIntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="CAST(FLOOR(EXTRACT(EPOCH FROM %(expressions)s)) AS BIGINT)", **extra
        )

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)", **extra
        )


def epoch_seconds(field: str) -> EpochSeconds:
    return EpochSeconds(field)

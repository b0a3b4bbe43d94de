from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Visitor(models.Model):
    """A browser (cookie ``vid``) or an imported customer; attached to a user on log in."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="visitors"
    )
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return str(self.id)


class EventType(models.TextChoices):
    IMPRESSION = "impression", "Impression"
    VIEW = "view", "Product view"
    CLICK = "click", "Click"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    REMOVE_FROM_CART = "remove_from_cart", "Remove from cart"
    PURCHASE = "purchase", "Purchase"


# What a browser or API client may report itself; views, carts and orders are logged by the
# server-side services that perform them.
CLIENT_EVENT_TYPES = (EventType.IMPRESSION, EventType.CLICK)
CLIENT_EVENT_CHOICES = [(t.value, t.label) for t in CLIENT_EVENT_TYPES]
# Idempotency keys the server writes (views, cart changes, purchases, imports): a client key with
# one of these prefixes could pre-claim and so suppress a server event; it is refused.
SERVER_KEY_PREFIXES = ("view:", "add:", "rm:", "buy:", "tafeng:")


class EventSource(models.TextChoices):
    WEB = "web", "Storefront (server)"
    BEACON = "beacon", "Browser beacon"
    API = "api", "API"
    IMPORT = "import", "Imported log"


# What the live re-rank reads of a visitor's newest events (``shop.recs.live``), carried in the
# (visitor, occurred_at) and (user, occurred_at) indexes.
RECENT_COLUMNS = ["id", "product", "type", "device"]


class Event(models.Model):
    """One interaction. ``idempotency_key`` is unique per visitor: a replayed post is stored once,
    and one visitor's keys never collide with (or pre-claim) another's."""

    idempotency_key = models.CharField(max_length=100)
    # The log is append-only and hot: every page writes its view and impressions. Its references are
    # kept by the writers (the visitor row is upserted in the same statement, product ids are checked
    # before any write) and deletes cascade through the ORM, so the database checks no foreign key per
    # row for the visitor or the product: each check was a lookup and a row lock on the visitor and on
    # the (often popular, shared) product row, about 40% of PostgreSQL's CPU for a product page's write.
    # No single-column indexes: the composite ones below serve those lookups.
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
    )
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False
    )
    type = models.CharField(max_length=20, choices=EventType.choices)
    placement = models.CharField(max_length=64, blank=True, default="")
    position = models.PositiveSmallIntegerField(null=True, blank=True)
    page_view_id = models.UUIDField(null=True, blank=True)
    quantity = models.PositiveIntegerField(default=1)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="events", db_index=False
    )
    # Filled once the A/B experiment and the model registry exist.
    arm = models.CharField(max_length=32, null=True, blank=True)
    model_version = models.CharField(max_length=64, null=True, blank=True)
    source = models.CharField(max_length=10, choices=EventSource.choices, default=EventSource.WEB)
    device = models.CharField(max_length=16, blank=True, default="")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["occurred_at"], name="event_time_idx"),
            # A visitor's or user's newest events (the console's visitor history, the batch score), covering
            # the same columns as the live re-rank's read below (an index-only scan on PostgreSQL; SQLite
            # builds the same keys without the rest).
            models.Index(fields=["visitor", "occurred_at"], name="event_visitor_recent_idx", include=RECENT_COLUMNS),
            models.Index(
                fields=["user", "occurred_at"],
                name="event_user_recent_idx",
                include=RECENT_COLUMNS,
                condition=models.Q(user__isnull=False),  # most events are a guest's
            ),
            # The same keys without impressions (most of the log: a page records a few dozen beside its one
            # view): the live re-rank reads a visitor's newest interests, and impressions are exposure, not
            # interest. Small (an impression adds no entry here), and its walk is as long as what it returns.
            models.Index(
                fields=["visitor", "occurred_at"],
                name="event_visitor_interest_idx",
                include=RECENT_COLUMNS,
                condition=~models.Q(type="impression"),
            ),
            models.Index(
                fields=["user", "occurred_at"],
                name="event_user_interest_idx",
                include=RECENT_COLUMNS,
                condition=models.Q(user__isnull=False) & ~models.Q(type="impression"),
            ),
            models.Index(fields=["product", "type"], name="event_product_type_idx"),  # also the product lookups
            models.Index(fields=["order"], name="event_order_idx", condition=models.Q(order__isnull=False)),
            models.Index(fields=["type", "occurred_at"], name="event_type_time_idx"),
        ]
        constraints = [
            # key first: the admin looks events up by key alone
            models.UniqueConstraint(fields=["idempotency_key", "visitor"], name="event_visitor_key_unique"),
            models.CheckConstraint(condition=models.Q(type__in=[c.value for c in EventType]), name="event_type_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.product_id} by {self.visitor_id}"

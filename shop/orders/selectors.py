"""Reading carts and orders."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, Prefetch, Q, Sum

from shop.catalog.models import Product
from shop.events.selectors import TimeBuckets

from .models import Cart, CartItem, Order, OrderLine, OrderStatus


@dataclass(frozen=True, slots=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def unit_price(self) -> Decimal:
        return self.product.price

    @property
    def line_total(self) -> Decimal:
        return self.product.price * self.quantity

    @property
    def problem(self) -> str:
        """Why this line cannot be bought as it is ("" when it can)."""
        if not self.product.is_active:
            return "No longer available"
        if self.product.stock <= 0:
            return "Out of stock"
        if self.quantity > self.product.stock:
            return f"Only {self.product.stock} left in stock"
        return ""


@dataclass(frozen=True, slots=True)
class CartSummary:
    lines: list[CartLine] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.line_total for line in self.lines), Decimal("0"))

    @property
    def is_empty(self) -> bool:
        return not self.lines

    @property
    def has_problems(self) -> bool:
        return any(line.problem for line in self.lines)

    @property
    def product_ids(self) -> frozenset[int]:
        return frozenset(line.product.pk for line in self.lines)


@lru_cache(maxsize=2)
def _cart_lines_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    item, cart = CartItem._meta, Cart._meta
    return (
        f"SELECT i.{q(item.get_field('product').column)}, i.{q(item.get_field('quantity').column)} "  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
        f"FROM {q(item.db_table)} i "
        f"JOIN {q(cart.db_table)} c ON c.{q(cart.pk.column)} = i.{q(item.get_field('cart').column)} "
        f"WHERE c.{q(cart.get_field('visitor').column)} = %s"
    )


def cart_lines_brief(*, visitor_id: uuid.UUID) -> tuple[tuple[int, int], ...]:
    """(product id, quantity) of each line of the visitor's cart; one query.

    Every storefront page asks (the header's cart badge; the personalised rails leave the cart out),
    so this is a fixed SQL string rather than an ORM query, whose compilation cost more than the query.
    """
    param = Cart._meta.get_field("visitor").get_db_prep_value(visitor_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_cart_lines_sql(connection.vendor), [param])
        return tuple((int(pid), int(qty)) for pid, qty in cursor.fetchall())


# The cart read once per page render, by page view: the header's badge and every personalised rail
# of the page share one query.
_page_carts: OrderedDict[uuid.UUID, tuple[tuple[int, int], ...]] = OrderedDict()
_page_carts_lock = threading.Lock()
PAGE_CARTS_HELD = 512


def page_cart(
    *,
    visitor_id: uuid.UUID,
    page_view_id: uuid.UUID,
    read: Callable[[], tuple[tuple[int, int], ...]] | None = None,
) -> tuple[tuple[int, int], ...]:
    """The visitor's cart lines for this page render (read at the first ask; ``read`` may wrap the query)."""
    with _page_carts_lock:
        held = _page_carts.get(page_view_id)
    if held is not None:
        return held
    lines = read() if read is not None else cart_lines_brief(visitor_id=visitor_id)
    with _page_carts_lock:
        _page_carts[page_view_id] = lines
        while len(_page_carts) > PAGE_CARTS_HELD:
            _page_carts.popitem(last=False)
    return lines


def cart_summary_get(*, visitor_id: uuid.UUID) -> CartSummary:
    """The visitor's cart lines with their products (one query); empty when there is no cart."""
    items = (
        CartItem.objects.filter(cart__visitor_id=visitor_id)
        .select_related("product", "product__brand", "product__category")
        .order_by("added_at", "id")
    )
    return CartSummary(lines=[CartLine(product=i.product, quantity=i.quantity) for i in items])


def _orders_with_lines():
    return Order.objects.prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("product").order_by("id"))
    )


def order_get_for_viewer(*, number: str, visitor_id: uuid.UUID | None, user: AbstractBaseUser | None) -> Order | None:
    """The order ``number`` if it belongs to this user, or this browser placed it as a guest; else None.

    An order placed while signed in is its user's alone: another account later signed in on the
    same browser (or given the same visitor row) never sees it.
    """
    who = Q(visitor_id=visitor_id, user__isnull=True) if visitor_id is not None else Q(pk__in=[])
    if user is not None and user.is_authenticated:
        who |= Q(user_id=user.pk)
    return _orders_with_lines().filter(who, number=number).first()


def order_list_for_user(*, user: AbstractBaseUser) -> list[Order]:
    """The user's orders, newest first (guest orders of a browser join at log in: ``order_claim_for_user``)."""
    return list(_orders_with_lines().filter(user_id=user.pk).order_by("-placed_at"))


@dataclass(frozen=True, slots=True)
class Revenue:
    """Orders placed in a window (cancelled ones left out): totals and per bucket."""

    orders: int
    revenue: Decimal
    buckets: list[tuple[int, Decimal]]  # (orders, revenue) per bucket of ``event_traffic``'s grid


def order_revenue(*, start, end, buckets: int) -> Revenue:
    grid = TimeBuckets(start=start, end=end, count=buckets)
    placed = Order.objects.filter(placed_at__gte=start, placed_at__lt=end).exclude(status=OrderStatus.CANCELLED)
    series = [(0, Decimal("0"))] * buckets
    for r in (
        placed.annotate(bucket=grid.index_expression("placed_at"))
        .values("bucket")
        .annotate(orders=Count("id"), revenue=Sum("total"))
        .order_by("bucket")
    ):
        series[min(buckets - 1, max(0, int(r["bucket"])))] = (r["orders"], r["revenue"] or Decimal("0"))
    return Revenue(orders=sum(o for o, _ in series), revenue=sum((v for _, v in series), Decimal("0")), buckets=series)

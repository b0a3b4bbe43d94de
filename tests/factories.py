"""factory_boy factories shared by every test module (import from here; don't redefine).

Defaults make valid, unique rows with no arguments: ``ProductFactory()`` builds its category
and brand too; ``EventFactory()`` a visitor and a product; ``OrderLineFactory()`` an order.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.text import slugify

from shop.catalog.models import Brand, Category, Product
from shop.events.models import Event, EventSource, EventType, Visitor
from shop.orders.models import Order, OrderLine


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.LazyAttributeSequence(lambda o, n: f"{slugify(o.name)}-{n}")
    parent = None
    depth = factory.LazyAttribute(lambda o: o.parent.depth + 1 if o.parent is not None else 0)


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Brand

    name = factory.Sequence(lambda n: f"Brand {n}")
    slug = factory.LazyAttributeSequence(lambda o, n: f"{slugify(o.name)}-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"TEST-{n:06d}")
    name = factory.Sequence(lambda n: f"Test product {n}")
    slug = factory.LazyAttribute(lambda o: slugify(o.name))
    description = "A product made for tests."
    category = factory.SubFactory(CategoryFactory)
    brand = factory.SubFactory(BrandFactory)
    price = Decimal("9.99")
    stock = 10
    is_active = True
    image_seed = factory.Sequence(lambda n: n)
    created_at = factory.LazyFunction(timezone.now)


class UserFactory(factory.django.DjangoModelFactory):
    """A user whose password is ``password`` (``UserFactory(password="x")`` to choose one)."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):  # noqa: N805 - factory_boy passes the object
        obj.set_password(extracted or "password")
        if create:
            obj.save(update_fields=["password"])


class VisitorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Visitor

    id = factory.LazyFunction(uuid.uuid4)
    user = None
    attributes = factory.LazyFunction(dict)


class OrderFactory(factory.django.DjangoModelFactory):
    """An order with no lines and total 0; add ``OrderLineFactory(order=...)`` rows as needed."""

    class Meta:
        model = Order

    number = factory.Sequence(lambda n: f"T{n:08d}")
    visitor = factory.SubFactory(VisitorFactory)
    user = factory.LazyAttribute(lambda o: o.visitor.user)
    email = factory.LazyAttribute(lambda o: o.user.email if o.user else "shopper@example.com")
    full_name = "Test Shopper"
    address = "1 Test Street\nTestville"
    total = Decimal("0")
    placed_at = factory.LazyFunction(timezone.now)


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 1
    unit_price = factory.LazyAttribute(lambda o: o.product.price)


class EventFactory(factory.django.DjangoModelFactory):
    """A product view by a fresh visitor, now; pass ``type=``, ``placement=``... to vary it."""

    class Meta:
        model = Event

    idempotency_key = factory.Sequence(lambda n: f"test:{n}")
    visitor = factory.SubFactory(VisitorFactory)
    user = factory.LazyAttribute(lambda o: o.visitor.user)
    product = factory.SubFactory(ProductFactory)
    type = EventType.VIEW
    placement = ""
    position = None
    page_view_id = None
    quantity = 1
    order = None
    source = EventSource.WEB
    occurred_at = factory.LazyFunction(timezone.now)


__all__ = [
    "BrandFactory",
    "CategoryFactory",
    "EventFactory",
    "OrderFactory",
    "OrderLineFactory",
    "ProductFactory",
    "UserFactory",
    "VisitorFactory",
]


def with_rails_after_load(client, response) -> str:
    """A page's HTML with each rail its script fetches after load (``data-rail-src``) put in its place, as
    ``rails.js`` does in a browser (a rail that comes back empty leaves nothing)."""
    import re

    html = response.content.decode()

    def fetch(m: re.Match) -> str:
        from html import unescape

        got = client.get(unescape(m.group(1)), HTTP_ACCEPT="text/html")
        assert got.status_code in (200, 204), (m.group(1), got.status_code, got.content[:300])
        return got.content.decode() if got.status_code == 200 else ""

    return re.sub(r'<section class="rail rail-later"[^>]*data-rail-src="([^"]+)"[^>]*></section>', fetch, html)

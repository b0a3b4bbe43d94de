"""Merchant admin: every changelist and change page opens with data; the event log is read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from shop.api import admin_tools
from shop.orders.models import Cart, CartItem
from tests.factories import (
    BrandFactory,
    CategoryFactory,
    EventFactory,
    OrderLineFactory,
    ProductFactory,
    VisitorFactory,
)

pytestmark = pytest.mark.django_db


def _user(**fields):
    # no password: force_login needs none, and hashing one costs a second per test on 2 cores
    return get_user_model().objects.create(username=fields.pop("username", "merchant"), **fields)


@pytest.fixture
def merchant(client):
    client.force_login(_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def data():
    root = CategoryFactory(name="Food")
    child = CategoryFactory(name="Dairy", parent=root)
    product = ProductFactory(name="Gouda", sku="SKU-GOUDA", category=child, brand=BrandFactory(name="Acme"))
    visitor = VisitorFactory()
    event = EventFactory(
        visitor=visitor,
        product=product,
        type="impression",
        placement="home.new_arrivals",
        position=2,
        idempotency_key="imp:abc:home.new_arrivals:2",
    )
    line = OrderLineFactory(product=product, quantity=2, unit_price=Decimal("3.50"), order__email="ada@example.com")
    cart = Cart.objects.create(visitor=visitor)
    CartItem.objects.create(cart=cart, product=product, quantity=1)
    return {
        "category": child,
        "brand": product.brand,
        "product": product,
        "visitor": visitor,
        "event": event,
        "order": line.order,
        "cart": cart,
    }


PAGES = [
    ("catalog", "category", "category"),
    ("catalog", "brand", "brand"),
    ("catalog", "product", "product"),
    ("events", "event", "event"),
    ("events", "visitor", "visitor"),
    ("orders", "order", "order"),
    ("orders", "cart", "cart"),
]


@pytest.mark.parametrize(("app", "model", "key"), PAGES)
def test_changelist_and_change_page_open(merchant, data, app, model, key):
    obj = data[key]

    listing = merchant.get(f"/admin/{app}/{model}/")
    change = merchant.get(f"/admin/{app}/{model}/{obj.pk}/change/")

    assert listing.status_code == 200
    assert change.status_code == 200
    assert str(obj.pk) in listing.content.decode() or str(obj) in listing.content.decode()


def test_product_list_shows_merchant_columns_and_searches_by_sku(merchant, data):
    page = merchant.get("/admin/catalog/product/", {"q": "SKU-GOUDA"}).content.decode()

    for text in ("Gouda", "SKU-GOUDA", "Dairy", "Acme"):
        assert text in page
    assert "1 product" in page
    assert "0 products" in merchant.get("/admin/catalog/product/", {"q": "SKU-NOPE"}).content.decode()


def test_price_and_stock_are_editable_from_the_list(merchant, data):
    product = data["product"]

    resp = merchant.post(
        "/admin/catalog/product/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(product.pk),
            "form-0-price": "12.34",
            "form-0-stock": "7",
            "_save": "Save",
        },
    )

    assert resp.status_code == 302
    product.refresh_from_db()
    assert (product.price, product.stock) == (Decimal("12.34"), 7)


def test_product_add_page_opens(merchant):
    assert merchant.get("/admin/catalog/product/add/").status_code == 200


def test_event_admin_is_read_only(merchant, data):
    event = data["event"]

    listing = merchant.get("/admin/events/event/").content.decode()
    change = merchant.get(f"/admin/events/event/{event.pk}/change/").content.decode()

    assert "/admin/events/event/add/" not in listing
    assert merchant.get("/admin/events/event/add/").status_code == 403
    assert merchant.get(f"/admin/events/event/{event.pk}/delete/").status_code == 403
    assert 'name="_save"' not in change
    assert "home.new_arrivals" in change
    before = event.placement
    merchant.post(f"/admin/events/event/{event.pk}/change/", {"placement": "hacked"})
    event.refresh_from_db()
    assert event.placement == before


def test_event_search_filters_and_date_hierarchy(merchant, data):
    event = data["event"]
    EventFactory(type="view")  # another visitor's event

    by_key = merchant.get("/admin/events/event/", {"q": "imp:abc:home.new_arrivals:2"}).content.decode()
    by_visitor = merchant.get("/admin/events/event/", {"q": str(event.visitor_id)}).content.decode()
    nonsense = merchant.get("/admin/events/event/", {"q": "not a uuid"})
    by_type = merchant.get("/admin/events/event/", {"type__exact": "view"}).content.decode()
    by_placement = merchant.get("/admin/events/event/", {"placement": "home.new_arrivals"}).content.decode()
    by_year = merchant.get("/admin/events/event/", {"occurred_at__year": event.occurred_at.year})

    assert str(event.visitor_id) in by_key and "1 result" in by_key
    assert "1 result" in by_visitor
    assert nonsense.status_code == 200
    assert str(event.visitor_id) not in by_type
    assert str(event.visitor_id) in by_placement
    assert "home.new_arrivals" in merchant.get("/admin/events/event/").content.decode()  # a filter choice
    assert by_year.status_code == 200


def test_event_arm_filter_offers_and_applies_the_arms_seen(merchant, data):
    treated = EventFactory(arm="dlrm")

    listing = merchant.get("/admin/events/event/").content.decode()
    only_dlrm = merchant.get("/admin/events/event/", {"arm": "dlrm"}).content.decode()

    assert "?arm=dlrm" in listing
    assert str(treated.visitor_id) in only_dlrm
    assert str(data["event"].visitor_id) not in only_dlrm


def test_visitor_admin_cannot_add(merchant, data):
    assert "/admin/events/visitor/add/" not in merchant.get("/admin/events/visitor/").content.decode()
    assert merchant.get("/admin/events/visitor/add/").status_code == 403


def test_order_page_lists_its_lines_and_search_by_number_and_email(merchant, data):
    order = data["order"]

    change = merchant.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    by_number = merchant.get("/admin/orders/order/", {"q": order.number}).content.decode()
    by_email = merchant.get("/admin/orders/order/", {"q": "ada@example.com"}).content.decode()
    by_status = merchant.get("/admin/orders/order/", {"status__exact": "placed"})

    assert "Gouda" in change and "7.00" in change  # line: 2 x 3.50
    assert order.number in by_number and "1 result" in by_number
    assert order.number in by_email
    assert by_status.status_code == 200
    assert merchant.get("/admin/orders/order/", {"placed_at__year": order.placed_at.year}).status_code == 200


def test_big_event_table_is_counted_from_statistics(merchant, data, monkeypatch):
    EventFactory.create_batch(4)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_event")
    monkeypatch.setattr(admin_tools, "ESTIMATE_ABOVE", 1)

    page = merchant.get("/admin/events/event/")

    assert page.status_code == 200
    assert "5 events" in page.content.decode()


def test_non_staff_is_sent_to_log_in(client, data):
    client.force_login(_user(username="shopper"))

    resp = client.get("/admin/events/event/")

    assert resp.status_code == 302
    assert "/admin/login/" in resp["Location"]

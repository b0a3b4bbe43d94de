"""Cart and checkout over the API, as the shopper simulator uses it: a cookie jar, no CSRF token."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import Client

from shop.events.middleware import visitor_cookie_value, visitor_id_from_cookie
from shop.events.models import Event
from shop.orders.models import Order
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shopper():
    """A cookie-jar client, CSRF-checked like a real browser: it sends the token from the shop's cookie, as
    every request carrying the shop's cookies must (``shop.api.authentication``)."""
    c = Client(enforce_csrf_checks=True)
    c.get("/accounts/login/")  # the visitor and CSRF cookies, as a first page with a form gives them
    c.defaults["HTTP_X_CSRFTOKEN"] = c.cookies["csrftoken"].value
    return c


def add(client, product_id, quantity=1, **extra):
    return client.post("/api/cart/items", {"product_id": product_id, "quantity": quantity, **extra}, "application/json")


def events(type_):
    return list(Event.objects.filter(type=type_).order_by("id"))


def test_new_client_starts_with_an_empty_cart():
    resp = Client(enforce_csrf_checks=True).get("/api/cart")

    assert resp.status_code == 200
    assert resp.json() == {"lines": [], "count": 0, "subtotal": "0.00"}
    assert "vid" in resp.cookies


def test_add_shows_in_the_cart_and_logs_one_event(shopper):
    product = ProductFactory(price=Decimal("2.50"), stock=10)

    resp = add(shopper, product.pk, 2, nonce="n1", placement="home.new_arrivals", position=3)

    assert resp.status_code == 201, resp.content
    cart = resp.json()
    assert cart["count"] == 2
    assert cart["subtotal"] == "5.00"
    assert cart["lines"][0]["product"]["id"] == product.pk
    assert cart["lines"][0]["quantity"] == 2
    assert shopper.get("/api/cart").json() == cart
    [event] = events("add_to_cart")
    assert event.idempotency_key == "add:n1"
    assert (event.quantity, event.placement, event.position) == (2, "home.new_arrivals", 3)
    assert event.visitor_id == visitor_id_from_cookie(shopper.cookies["vid"].value)


def test_replayed_nonce_changes_nothing(shopper):
    product = ProductFactory(stock=10)

    first = add(shopper, product.pk, 1, nonce="same")
    second = add(shopper, product.pk, 1, nonce="same")

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["count"] == 1
    assert len(events("add_to_cart")) == 1


def test_two_clients_have_separate_carts(shopper):
    product = ProductFactory()
    add(shopper, product.pk)

    assert Client().get("/api/cart").json()["count"] == 0


@pytest.mark.parametrize(
    ("quantity", "stock", "active", "field"),
    [
        (0, 10, True, "quantity"),
        (100, 500, True, "quantity"),
        (5, 3, True, "quantity"),
        (1, 0, True, "product_id"),
        (1, 5, False, "product_id"),
    ],
)
def test_refused_add_names_the_field(shopper, quantity, stock, active, field):
    product = ProductFactory(stock=stock, is_active=active)

    resp = add(shopper, product.pk, quantity)

    assert resp.status_code == 400
    assert list(resp.json()) == [field]
    assert shopper.get("/api/cart").json()["count"] == 0
    assert events("add_to_cart") == []


def test_unknown_product_is_400(shopper):
    resp = add(shopper, 999999)

    assert resp.status_code == 400
    assert list(resp.json()) == ["product_id"]


def test_update_quantity_up_and_down_logs_the_difference(shopper):
    product = ProductFactory(stock=10)
    add(shopper, product.pk, 1)
    url = f"/api/cart/items/{product.pk}"

    up = shopper.patch(url, {"quantity": 4}, "application/json")
    down = shopper.patch(url, {"quantity": 3}, "application/json")

    assert up.status_code == 200
    assert down.json()["count"] == 3
    assert [e.quantity for e in events("add_to_cart")] == [1, 3]
    assert [e.quantity for e in events("remove_from_cart")] == [1]


def test_update_over_stock_is_400_and_missing_line_is_404(shopper):
    product = ProductFactory(stock=2)
    other = ProductFactory()
    add(shopper, product.pk, 1)

    over = shopper.patch(f"/api/cart/items/{product.pk}", {"quantity": 5}, "application/json")
    missing = shopper.patch(f"/api/cart/items/{other.pk}", {"quantity": 1}, "application/json")

    assert over.status_code == 400 and list(over.json()) == ["quantity"]
    assert missing.status_code == 404
    assert "not in your cart" in missing.json()["detail"]


def test_setting_quantity_zero_on_a_line_not_in_the_cart_is_404_unless_it_repeats_the_removal(shopper):
    """PATCH says 404 for a product not in the cart; quantity 0 said 200 instead (a fuzzer's finding: a line
    deleted, then PATCHed to 0, still "there"). A retry of the request that removed it (same nonce) stays 200."""
    product, never = ProductFactory(), ProductFactory()
    add(shopper, product.pk, 2)
    url = f"/api/cart/items/{product.pk}"

    first = shopper.patch(url, {"quantity": 0, "nonce": "rm-1"}, "application/json")
    retry = shopper.patch(url, {"quantity": 0, "nonce": "rm-1"}, "application/json")
    again = shopper.patch(url, {"quantity": 0}, "application/json")
    not_there = shopper.patch(f"/api/cart/items/{never.pk}", {"quantity": 0}, "application/json")

    assert first.status_code == 200 and first.json()["lines"] == []
    assert retry.status_code == 200 and retry.json()["lines"] == []
    assert again.status_code == 404 and "not in your cart" in again.json()["detail"]
    assert not_there.status_code == 404
    assert [(e.product_id, e.quantity) for e in events("remove_from_cart")] == [(product.pk, 2)]
    # DELETE stays idempotent: removing what is not in the cart changes nothing
    assert shopper.delete(url).status_code == 200


def test_delete_removes_the_line(shopper):
    keep, drop = ProductFactory(), ProductFactory()
    add(shopper, keep.pk)
    add(shopper, drop.pk, 2)

    resp = shopper.delete(f"/api/cart/items/{drop.pk}")

    assert resp.status_code == 200
    assert [line["product"]["id"] for line in resp.json()["lines"]] == [keep.pk]
    [event] = events("remove_from_cart")
    assert (event.product_id, event.quantity) == (drop.pk, 2)
    # deleting again changes nothing and logs nothing
    assert shopper.delete(f"/api/cart/items/{drop.pk}").status_code == 200
    assert len(events("remove_from_cart")) == 1


def test_checkout_places_the_order(shopper):
    a = ProductFactory(price=Decimal("3.00"), stock=5)
    b = ProductFactory(price=Decimal("1.25"), stock=5)
    add(shopper, a.pk, 2)
    add(shopper, b.pk, 1)

    resp = shopper.post(
        "/api/checkout",
        {"full_name": "Ada Shopper", "email": "ada@example.com", "address": "1 Main St"},
        "application/json",
    )

    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["total"] == "7.25"
    assert sorted((line["product_id"], line["quantity"]) for line in body["lines"]) == sorted([(a.pk, 2), (b.pk, 1)])
    order = Order.objects.get(number=body["number"])
    assert order.email == "ada@example.com"
    assert order.visitor_id == visitor_id_from_cookie(shopper.cookies["vid"].value)
    assert shopper.get("/api/cart").json()["count"] == 0
    assert {e.idempotency_key for e in events("purchase")} == {
        f"buy:{order.number}:{a.pk}",
        f"buy:{order.number}:{b.pk}",
    }
    a.refresh_from_db()
    assert a.stock == 3
    assert shopper.get(body["url"]).status_code == 200


def test_checkout_of_an_empty_cart_is_400(shopper):
    resp = shopper.post(
        "/api/checkout", {"full_name": "A", "email": "a@example.com", "address": "x"}, "application/json"
    )

    assert resp.status_code == 400
    assert resp.json() == {"cart": ["Your cart is empty."]}
    assert Order.objects.count() == 0


def test_checkout_with_a_bad_email_is_400_naming_it(shopper):
    add(shopper, ProductFactory().pk)

    resp = shopper.post("/api/checkout", {"full_name": "A", "email": "nope", "address": "x"}, "application/json")

    assert resp.status_code == 400
    assert list(resp.json()) == ["email"]
    assert Order.objects.count() == 0


def test_checkout_fails_whole_when_stock_ran_out(shopper):
    product = ProductFactory(stock=2)
    add(shopper, product.pk, 2)
    product.stock = 1
    product.save()

    resp = shopper.post(
        "/api/checkout", {"full_name": "A", "email": "a@example.com", "address": "x"}, "application/json"
    )

    assert resp.status_code == 400
    assert "Only 1" in resp.json()["cart"][0]
    assert Order.objects.count() == 0
    assert events("purchase") == []


def test_signed_in_session_needs_a_csrf_token():
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory())

    resp = add(client, ProductFactory().pk)

    assert resp.status_code == 403


def test_signed_in_user_owns_the_order():
    user = UserFactory()
    client = Client()  # the test client skips CSRF checks: as a browser sending its token would
    client.force_login(user)
    add(client, ProductFactory().pk)

    resp = client.post(
        "/api/checkout", {"full_name": "U", "email": "u@example.com", "address": "x"}, "application/json"
    )

    assert Order.objects.get(number=resp.json()["number"]).user == user
    assert {e.user_id for e in Event.objects.all()} == {user.pk}


def test_cart_is_throttled(shopper, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"events": "9/min", "cart": "2/min"},
    }
    shopper.cookies["vid"] = visitor_cookie_value(uuid.UUID("0b7c5f5e-3f55-4c1c-a1a8-2f5d0c7b9e11"))

    codes = [shopper.get("/api/cart").status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    assert "throttled" in shopper.get("/api/cart").json()["detail"]

"""S6 (mass assignment) and S2 (session cookies): clients cannot set prices, staff flags or whose
cart or order it is, and a session is a new one after logging in."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from shop.events.middleware import visitor_cookie_value
from shop.orders.models import CartItem, Order
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def _json(client: Client, method: str, url: str, body: dict):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def test_price_total_and_owner_fields_in_cart_and_checkout_are_ignored():
    product = ProductFactory(price=Decimal("9.99"), stock=5)
    victim = UserFactory()
    shopper = Client()
    resp = _json(
        shopper,
        "post",
        "/api/cart/items",
        {"product_id": product.pk, "quantity": 1, "price": "0.01", "unit_price": "0.01", "cart_id": 1},
    )
    assert resp.status_code == 201
    assert resp.json()["subtotal"] == "9.99"
    resp = _json(
        shopper,
        "post",
        "/api/checkout",
        {
            "full_name": "A B",
            "email": "a@b.co",
            "address": "1 Road",
            "total": "0.01",
            "user": victim.pk,
            "user_id": victim.pk,
            "visitor_id": str(uuid.uuid4()),
            "status": "shipped",
        },
    )
    assert resp.status_code == 201, resp.content
    order = Order.objects.get()
    assert (order.total, order.user_id, order.status) == (Decimal("9.99"), None, "placed")


def test_another_visitors_cart_cannot_be_read_or_changed():
    product = ProductFactory(stock=5)
    alice = Client()
    _json(alice, "post", "/api/cart/items", {"product_id": product.pk, "quantity": 2})
    mallory = Client()
    # a guessed or copied (unsigned) visitor id is not believed
    alice_vid = CartItem.objects.get().cart.visitor_id
    mallory.cookies["vid"] = str(alice_vid)
    assert mallory.get("/api/cart").json()["count"] == 0
    _json(mallory, "patch", f"/api/cart/items/{product.pk}", {"quantity": 0})
    assert CartItem.objects.get().quantity == 2
    # a forged signature neither
    mallory.cookies["vid"] = visitor_cookie_value(alice_vid)[:-2] + "xx"
    assert mallory.get("/api/cart").json()["count"] == 0


def test_sign_up_cannot_make_a_staff_account(client):
    client.post(
        "/accounts/signup/",
        {
            "username": "eve",
            "email": "eve@example.com",
            "password1": "long-eve-passphrase-42",
            "password2": "long-eve-passphrase-42",
            "is_staff": "on",
            "is_superuser": "on",
        },
    )
    eve = get_user_model().objects.get(username="eve")
    assert not eve.is_staff and not eve.is_superuser


def test_the_session_key_rotates_at_login(client):
    UserFactory(username="ada", password="pw-ada-123")
    client.get("/cart/")
    client.post("/cart/add/", {"product_id": ProductFactory().pk, "quantity": 1, "nonce": "n"})
    before = client.cookies["sessionid"].value if "sessionid" in client.cookies else None
    client.post("/accounts/login/", {"username": "ada", "password": "pw-ada-123"})
    after = client.cookies["sessionid"].value
    assert after and after != before

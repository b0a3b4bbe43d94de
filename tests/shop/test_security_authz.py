"""S4: two shoppers, each signed in on their own browser: neither can read or change the other's cart,
orders or events, by any route the shop has (pages, the cart and checkout API, the events API, the
recommendations API, the console's visitor history). S7: bursts at ten times a throttle's rate get 429
with ``Retry-After`` for every refused request, on the API and on the log-in form.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from shop.events.middleware import visitor_id_from_cookie
from shop.events.models import Event
from shop.orders.models import Order
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def _shopper(name: str) -> tuple[Client, uuid.UUID]:
    c = Client()
    c.force_login(UserFactory(username=name))
    assert c.get("/cart/").status_code == 200  # the browser gets its visitor
    return c, visitor_id_from_cookie(c.cookies["vid"].value)


def _cart(c: Client) -> dict[int, int]:
    body = c.get("/api/cart").json()
    return {line["product"]["id"]: line["quantity"] for line in body["lines"]}


def test_two_shoppers_cannot_reach_each_others_cart_orders_or_events():
    products = ProductFactory.create_batch(3, stock=20)
    a, a_vid = _shopper("shopper-a")
    b, b_vid = _shopper("shopper-b")
    assert a_vid != b_vid

    # A fills a cart, orders, and has events; then fills the cart again
    assert (
        a.post("/api/cart/items", {"product_id": products[0].pk, "quantity": 2}, "application/json").status_code == 201
    )
    checkout = a.post(
        "/api/checkout", {"full_name": "A", "email": "a@example.com", "address": "1 Road"}, "application/json"
    )
    assert checkout.status_code == 201, checkout.content
    number = checkout.json()["number"]
    assert (
        a.post("/api/cart/items", {"product_id": products[1].pk, "quantity": 1}, "application/json").status_code == 201
    )
    a_events = Event.objects.filter(visitor_id=a_vid).count()
    assert a_events > 0
    a_cart = _cart(a)

    # B sees only B's own (empty) cart, cannot change A's lines, and cannot read A's order
    assert _cart(b) == {}
    assert b.patch(f"/api/cart/items/{products[1].pk}", {"quantity": 9}, "application/json").status_code in (400, 404)
    assert b.delete(f"/api/cart/items/{products[1].pk}").status_code in (200, 204, 400, 404)  # B's own cart
    assert _cart(a) == a_cart
    assert b.get(f"/orders/{number}/").status_code == 404
    assert number not in b.get("/accounts/").content.decode()
    assert Order.objects.filter(number=number, user__username="shopper-a").exists()

    # B cannot write events as A, nor read A's recommendations or history
    event = {
        "type": "click",
        "product_id": products[2].pk,
        "idempotency_key": "b-as-a",
        "placement": "home.popular",
        "position": 0,
    }
    as_a = b.post("/api/events", json.dumps({"visitor_id": str(a_vid), "events": [event]}), "application/json")
    assert as_a.status_code in (400, 403), as_a.content
    assert Event.objects.filter(visitor_id=a_vid).count() == a_events
    recs = b.get("/api/recommendations", {"placement": "home.recommended", "visitor_id": str(a_vid)})
    assert recs.status_code in (400, 403), recs.content
    assert b.get(f"/api/console/visitors/{a_vid}/events").status_code in (401, 403)
    assert b.get("/api/console/visitors").status_code in (401, 403)

    # and the other way round: A's view of the world did not move
    assert _cart(a) == a_cart and b.get("/api/cart").json()["lines"] == []


def test_a_burst_at_ten_times_the_api_throttle_is_refused_with_retry_after(settings):
    rate = 5
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "cart_ip": f"{rate}/min"},
    }
    product = ProductFactory(stock=1000)
    codes, retry = [], []
    for _ in range(rate * 10):
        r = Client().post("/api/cart/items", {"product_id": product.pk, "quantity": 1}, "application/json")
        codes.append(r.status_code)
        if r.status_code == 429:
            retry.append(int(r["Retry-After"]))
            assert "detail" in r.json()
    assert codes[:rate] == [201] * rate
    assert codes[rate:] == [429] * (rate * 9)
    assert len(retry) == rate * 9 and all(0 < s <= 60 for s in retry)


def test_a_burst_at_ten_times_the_login_throttle_is_refused_with_retry_after(settings):
    rate = 5
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": f"{rate}/min"},
    }
    UserFactory(username="burst")
    c = Client()
    codes = []
    for i in range(rate * 10):
        r = c.post("/accounts/login/", {"username": "burst", "password": f"guess-{i}"})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r["Retry-After"]) > 0
    assert codes == [200] * rate + [429] * (rate * 9)

"""S4, stateful: schemathesis walks the API as one shopper (a guest, then a signed-in account) while a
second shopper already has a cart and an order, and checks after every step that the walker never
reaches the other's cart, orders or events, and that staff operations refuse it.

The walk follows OpenAPI links added to the drf-spectacular schema here: a product from the list
goes into the cart, a cart line is changed or removed, the cart is checked out; every other
operation (events, recommendations, the console, the recs and experiments endpoints) can start a
walk too. Each step is a real WSGI request through the middleware, with the walker's cookies and
CSRF token. Sizes: ``STATEFUL_SCENARIOS`` walks (alternately a guest and a signed-in shopper) of at
most ``STATEFUL_STEPS`` steps (CI: 15 x 15); the test prints the calls it made per operation and fails if no walk got as far as a
placed order. The walks are derandomized, so any change to the schema reshuffles them: at 10 steps, adding the
experiments' composition endpoint left no walk that added a listed product to its cart (and another reshuffle
found a real hole first: a line deleted, then set to quantity 0, answered 200 instead of 404).
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant
from schemathesis import GenerationMode

from shop.events.middleware import visitor_id_from_cookie
from shop.events.models import Event
from shop.orders.models import Order
from shop.orders.selectors import cart_summary_get
from tests.factories import ProductFactory, UserFactory
from tests.shop.test_security_fuzz import _keep_test_connection  # noqa: F401 - the fixture

SCENARIOS = int(os.environ.get("STATEFUL_SCENARIOS", "15"))
STEPS = int(os.environ.get("STATEFUL_STEPS", "15"))
APP = get_wsgi_application()
STAFF_PREFIXES = ("/api/console/", "/api/recs/", "/api/experiments/")

CHECKOUT = {"full_name": "Walker", "email": "walker@example.com", "address": "1 Test Street"}
# (path, method, status) -> links. Runtime expressions read the response the link leaves from.
_CART_LINE = "$response.body#/lines/0/product/id"
_CART_LINKS = {
    "ChangeFirstLine": {"operationId": "cart_items_update", "parameters": {"path.product_id": _CART_LINE}},
    "RemoveFirstLine": {"operationId": "cart_items_destroy", "parameters": {"path.product_id": _CART_LINE}},
    "CheckOut": {"operationId": "checkout_create", "requestBody": CHECKOUT},
    "ReadCart": {"operationId": "cart_retrieve"},
}
LINKS = {
    ("/api/products", "get", "200"): {
        "AddListedProduct": {
            "operationId": "cart_items_create",
            "requestBody": {"product_id": "$response.body#/results/0/id", "quantity": 1},
        },
    },
    ("/api/products/{id}", "get", "200"): {
        "AddThisProduct": {"operationId": "cart_items_create", "requestBody": {"product_id": "$response.body#/id"}},
    },
    ("/api/cart/items", "post", "201"): _CART_LINKS,
    ("/api/cart/items", "post", "200"): _CART_LINKS,
    ("/api/cart/items/{product_id}", "patch", "200"): _CART_LINKS,
    ("/api/cart", "get", "200"): _CART_LINKS,
}


def _linked_schema():
    raw = copy.deepcopy(schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP).raw_schema)
    for (path, method, status), links in LINKS.items():
        raw["paths"][path][method]["responses"][status]["links"] = links
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = APP
    schema.location = "/api/schema/?format=json"
    # as in test_security_fuzz: a schema-valid request may meet a state that refuses it (an empty cart
    # at checkout, a product not in the cart): a 400 naming the field, which the schema documents
    accepting = schema.config.checks.positive_data_acceptance
    accepting.expected_statuses = [*accepting.expected_statuses, "400"]
    # valid requests only: the walk is about state and who sees what, and it must get past each step
    # to reach the next; bad input is fuzzed without state in test_security_fuzz and _forms_fuzz
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    # a line an earlier answer showed may be gone by the time a later step uses it (removed, or
    # bought at checkout): a 404 then is right, and the walker's own cart is checked in after_call
    schema.config.checks.ensure_resource_availability.enabled = False
    return schema


schema = _linked_schema()


class _Client(Client):
    """Django's test client puts back the handlers that close the database connection after each of
    its requests; the schemathesis calls that follow would then close the test's transaction."""

    def request(self, **request):
        try:
            return super().request(**request)
        finally:
            signals.request_started.disconnect(close_old_connections)
            signals.request_finished.disconnect(close_old_connections)


def _browser(user=None) -> tuple[Client, dict[str, Any]]:
    """A browser that opened the cart page, and what a schemathesis call sends as that browser: its
    cookies (vid, csrftoken, session; passed as cookies, since the WSGI client drops a Cookie header)
    and the CSRF header."""
    c = _Client()
    if user is not None:
        c.force_login(user)
    assert c.get("/accounts/login/").status_code in (200, 302)  # a page with a form: the CSRF cookie
    assert c.get("/cart/").status_code == 200
    cookies = {k: m.value for k, m in c.cookies.items()}
    return c, {"cookies": cookies, "headers": {"X-CSRFToken": cookies["csrftoken"]}}


@pytest.fixture
def other_shopper(db, _keep_test_connection):  # noqa: F811 - the imported fixture
    """Shopper B, signed in: a placed order, a line in the cart and events, all of which must stay B's."""
    products = ProductFactory.create_batch(6, stock=10_000)
    b, _ = _browser(UserFactory(username="stateful-b"))
    b_vid = visitor_id_from_cookie(b.cookies["vid"].value)
    assert (
        b.post("/api/cart/items", {"product_id": products[0].pk, "quantity": 2}, "application/json").status_code == 201
    )
    placed = b.post(
        "/api/checkout", {"full_name": "B", "email": "b@example.com", "address": "2 Road"}, "application/json"
    )
    assert placed.status_code == 201, placed.content
    assert (
        b.post("/api/cart/items", {"product_id": products[1].pk, "quantity": 3}, "application/json").status_code == 201
    )
    return {
        "client": b,
        "vid": b_vid,
        "order": placed.json()["number"],
        "cart": {products[1].pk: 3},
        "events": Event.objects.filter(visitor_id=b_vid).count(),
        "orders": Order.objects.filter(visitor_id=b_vid).count(),
        "products": [p.pk for p in products],
    }


def _cart_of(vid) -> dict[int, int]:
    return {line.product.pk: line.quantity for line in cart_summary_get(visitor_id=vid).lines}


def _machine(other: dict, calls: Counter, orders: list[str], walks: Counter):
    base = schema.as_state_machine()

    class Walker(base):
        def setup(self):
            # walks alternate between a guest and a signed-in shopper, each on a fresh browser
            caller = "guest" if sum(walks.values()) % 2 == 0 else "shopper"
            walks[caller] += 1
            user = UserFactory() if caller == "shopper" else None
            self.browser, self.identity = _browser(user)
            self.vid = visitor_id_from_cookie(self.browser.cookies["vid"].value)
            self.user = user
            # each walk starts with a line in the cart, so the steps that follow (change, remove, check out)
            # have something to act on; the rest comes from the links
            first = other["products"][2 + sum(walks.values()) % 4]
            r = self.browser.post("/api/cart/items", {"product_id": first, "quantity": 1}, "application/json")
            assert r.status_code == 201, r.content
            self.added: set[int] = {first}
            self.orders: list[str] = []

        def get_call_kwargs(self, case):
            return {"cookies": dict(self.identity["cookies"]), "headers": dict(self.identity["headers"])}

        def after_call(self, response, case):
            super().after_call(response, case)
            path, status = case.operation.path, response.status_code
            calls[f"{case.method.upper()} {path} {status}"] += 1
            assert status < 500, (case.method, path, status, response.text[:300])
            if path.startswith(STAFF_PREFIXES):
                # refused; a repeated query parameter is refused earlier, by name, before anyone is asked
                # who they are: that answer holds nothing but the names the caller sent
                about_own_input = status == 400 and set(response.json()) <= set(case.query or {})
                assert status in (401, 403) or about_own_input, (case.method, path, status, response.text[:300])
            if path == "/api/events" and isinstance(case.body, dict) and "visitor_id" in case.body:
                assert status in (400, 403), (status, response.text[:300])  # a body visitor_id needs staff
            if path == "/api/recommendations" and "visitor_id" in (case.query or {}):
                assert status in (400, 403), (status, response.text[:300])
            text = response.text
            assert other["order"] not in text, f"{case.method} {path} answered with the other shopper's order"
            assert str(other["vid"]) not in text, f"{case.method} {path} answered with the other shopper's visitor"
            if path == "/api/cart/items" and case.method == "POST" and status in (200, 201):
                self.added.add(case.body["product_id"])
            if path.startswith("/api/cart") and status == 200 or path == "/api/cart/items" and status == 201:
                seen = {line["product"]["id"] for line in response.json()["lines"]}
                assert seen <= self.added, f"cart shows lines this shopper never added: {seen - self.added}"
            if path == "/api/checkout" and status == 201:
                self.placed(response.json()["number"])

        def placed(self, number: str) -> None:
            order = Order.objects.get(number=number)
            assert order.visitor_id == self.vid and order.user_id == (self.user.pk if self.user else None)
            orders.append(order.number)
            self.orders.append(order.number)

        @invariant()
        def other_shopper_untouched(self):
            # B's cart, orders and events are where the fixture left them, whatever the walker did
            assert _cart_of(other["vid"]) == other["cart"]
            assert Order.objects.filter(visitor_id=other["vid"]).count() == other["orders"]
            assert Event.objects.filter(visitor_id=other["vid"]).count() == other["events"]

        @invariant()
        def orders_stay_private(self):
            if not hasattr(self, "browser"):
                return
            assert self.browser.get(f"/orders/{other['order']}/").status_code == 404
            for number in self.orders[-1:]:  # the walker's newest order: neither B nor a stranger can open it
                assert other["client"].get(f"/orders/{number}/").status_code == 404
                assert _Client().get(f"/orders/{number}/").status_code == 404
                assert self.browser.get(f"/orders/{number}/").status_code == 200

    return Walker


@pytest.mark.django_db(transaction=False)
def test_a_walk_through_the_api_never_reaches_another_shoppers_data(other_shopper):
    calls: Counter = Counter()
    orders: list[str] = []
    walks: Counter = Counter()
    machine = _machine(other_shopper, calls, orders, walks)
    machine.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(f"\n{dict(walks)} walks, {sum(calls.values())} calls:", json.dumps(dict(sorted(calls.items())), indent=1))
    # the walk did reach the chain it is about: lines added and changed, an order placed
    assert any(k.startswith("POST /api/cart/items 20") for k in calls), calls
    assert any(k.startswith(("PATCH /api/cart/items/{product_id} 200", "DELETE /api/cart/items/{product_id} 200"))
               for k in calls), calls  # fmt: skip
    assert orders, f"no walk placed an order: {dict(calls)}"
    assert walks["guest"] and walks["shopper"], walks

"""Holes 2 and 5: nobody writes server-side events, events for someone else, events from the
future, or claims another visitor's idempotency keys."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from shop.events.middleware import visitor_cookie_value
from shop.events.models import Event, EventSource, EventType
from shop.events.services import EventIn, events_record
from shop.orders.services import cart_add_item
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/events"


def event(product_id: int, *, type: str = "impression", key: str | None = None, **extra) -> dict:
    pv = str(uuid.uuid4())
    return {
        "type": type,
        "product_id": product_id,
        "placement": "home.new_arrivals",
        "position": 0,
        "page_view_id": pv,
        "idempotency_key": key or f"imp:{pv}:home.new_arrivals:0",
        **extra,
    }


def post(client: Client, body: dict, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json", headers=headers)


@pytest.mark.parametrize("kind", ["purchase", "add_to_cart", "remove_from_cart", "view"])
def test_clients_cannot_send_server_side_event_types(client, kind):
    product = ProductFactory()
    resp = post(client, {"events": [event(product.pk), event(product.pk, type=kind)]})
    assert resp.status_code == 400
    assert list(resp.json()["events"]["1"]) == ["type"]
    assert Event.objects.count() == 0


def test_impressions_and_clicks_are_accepted(client):
    product = ProductFactory()
    resp = post(client, {"events": [event(product.pk), event(product.pk, type="click", key="clk:1")]})
    assert resp.status_code == 202, resp.content
    assert sorted(Event.objects.values_list("type", flat=True)) == ["click", "impression"]


def test_body_visitor_id_needs_staff(client):
    product = ProductFactory()
    victim = uuid.uuid4()
    resp = post(client, {"visitor_id": str(victim), "events": [event(product.pk)]})
    assert resp.status_code == 403
    assert "visitor_id" in resp.json()["detail"]
    assert not Event.objects.filter(visitor_id=victim).exists()

    shopper = UserFactory()
    client.force_login(shopper)
    assert post(client, {"visitor_id": str(victim), "events": [event(product.pk)]}).status_code == 403


def test_staff_token_may_write_for_a_visitor():
    product = ProductFactory()
    staff = UserFactory(is_staff=True)
    token = Token.objects.create(user=staff)
    vid = uuid.uuid4()
    resp = post(Client(), {"visitor_id": str(vid), "events": [event(product.pk)]}, authorization=f"Token {token.key}")
    assert resp.status_code == 202, resp.content
    stored = Event.objects.get()
    assert stored.visitor_id == vid and stored.source == EventSource.API


def test_occurred_at_is_clamped_to_the_last_day_and_five_minutes_ahead(client):
    product = ProductFactory()
    before = timezone.now()
    resp = post(
        client,
        {
            "events": [
                event(product.pk, key="imp:future", occurred_at="2100-01-01T00:00:00Z"),
                event(product.pk, key="imp:past", occurred_at="2001-01-01T00:00:00Z"),
                event(product.pk, key="imp:now", occurred_at=(before - timedelta(minutes=3)).isoformat()),
            ]
        },
    )
    after = timezone.now()
    assert resp.status_code == 202
    got = dict(Event.objects.values_list("idempotency_key", "occurred_at"))
    assert before + timedelta(minutes=5) <= got["imp:future"] <= after + timedelta(minutes=5)
    assert before - timedelta(hours=24) <= got["imp:past"] <= after - timedelta(hours=24)
    assert abs(got["imp:now"] - (before - timedelta(minutes=3))) < timedelta(seconds=1)


def test_cross_site_posts_are_refused(client):
    product = ProductFactory()
    body = {"events": [event(product.pk)]}
    assert post(client, body, origin="https://evil.example").status_code == 403
    assert post(client, body, sec_fetch_site="cross-site").status_code == 403
    assert Event.objects.count() == 0
    assert post(client, body, origin="http://testserver", sec_fetch_site="same-origin").status_code == 202


def test_text_plain_is_no_longer_parsed(client):
    product = ProductFactory()
    resp = client.post(URL, data=json.dumps({"events": [event(product.pk)]}), content_type="text/plain")
    assert resp.status_code == 415
    assert Event.objects.count() == 0


def test_fresh_cookies_do_not_escape_the_throttle(settings):
    """A client that drops its cookie on every request is still throttled by its address."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "events_ip": "5/min"},
    }
    product = ProductFactory()
    codes = []
    for _ in range(8):
        fresh = Client()
        fresh.cookies["vid"] = visitor_cookie_value(uuid.uuid4())
        codes.append(post(fresh, {"events": [event(product.pk)]}).status_code)
    assert codes == [202] * 5 + [429] * 3


# ---------- hole 5: idempotency keys are per visitor; server keys are the server's ----------


def test_the_same_client_key_from_two_visitors_is_stored_twice():
    product = ProductFactory()
    for _ in range(2):
        c = Client()
        c.cookies["vid"] = visitor_cookie_value(uuid.uuid4())
        resp = post(c, {"events": [event(product.pk, key="1")]})
        assert resp.json() == {"accepted": 1, "duplicates": 0}
    assert Event.objects.filter(idempotency_key="1").count() == 2


@pytest.mark.parametrize("key", ["add:n1", "rm:n1", "buy:K7QX-93HF-2MPL:1", "view:abc", "tafeng:17"])
def test_server_key_prefixes_are_refused_from_clients(client, key):
    product = ProductFactory()
    resp = post(client, {"events": [event(product.pk, key=key)]})
    assert resp.status_code == 400
    assert list(resp.json()["events"]["0"]) == ["idempotency_key"]


def test_a_pre_claimed_cart_nonce_of_another_visitor_does_not_block_my_add():
    product = ProductFactory()
    mallory, me = uuid.uuid4(), uuid.uuid4()
    events_record(
        visitor_id=mallory,
        user=None,
        events=[EventIn(type=EventType.CLICK, product_id=product.pk, idempotency_key="add:n1")],
    )
    change = cart_add_item(visitor_id=me, user=None, product_id=product.pk, quantity=1, nonce="n1")
    assert change.changed
    assert Event.objects.filter(visitor_id=me, type=EventType.ADD_TO_CART, idempotency_key="add:n1").exists()


def test_replay_of_one_visitors_batch_is_still_stored_once(client):
    product = ProductFactory()
    body = {"events": [event(product.pk, key="k1"), event(product.pk, key="k2")]}
    assert post(client, body).json() == {"accepted": 2, "duplicates": 0}
    assert post(client, body).json() == {"accepted": 0, "duplicates": 2}
    assert Event.objects.count() == 2


def test_idempotency_is_enforced_by_the_database_per_visitor():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Event._meta.db_table)
    unique = [c["columns"] for c in constraints.values() if c["unique"] and "idempotency_key" in c["columns"]]
    assert unique == [["idempotency_key", "visitor_id"]]

"""POST /api/events: the beacon/event batch contract."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from shop.events.middleware import visitor_cookie_value, visitor_id_from_cookie
from shop.events.models import Event, EventSource, Visitor
from tests.factories import EventFactory, ProductFactory, UserFactory, VisitorFactory

pytestmark = pytest.mark.django_db

URL = "/api/events"
# within the day before now: stored as sent (older or future times are clamped)
RECENT = (timezone.now() - timedelta(hours=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def impression(product_id: int, position: int, *, page_view_id: str | None = None, **extra) -> dict:
    page_view_id = page_view_id or str(uuid.uuid4())
    return {
        "type": "impression",
        "product_id": product_id,
        "placement": "home.new_arrivals",
        "position": position,
        "page_view_id": page_view_id,
        "idempotency_key": f"imp:{page_view_id}:home.new_arrivals:{position}",
        "occurred_at": RECENT,
        "device": "desktop",
        **extra,
    }


def post(client, body, *, content_type: str = "application/json"):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=raw, content_type=content_type)


def test_batch_is_stored_with_the_visitor_cookie(client):
    products = ProductFactory.create_batch(3)
    vid = uuid.uuid4()
    client.cookies["vid"] = visitor_cookie_value(vid)
    pv = str(uuid.uuid4())

    resp = post(client, {"events": [impression(p.pk, i, page_view_id=pv) for i, p in enumerate(products)]})

    assert resp.status_code == 202, resp.content
    assert resp.json() == {"accepted": 3, "duplicates": 0}
    rows = list(Event.objects.order_by("position"))
    assert [(e.product_id, e.position, e.placement, e.type) for e in rows] == [
        (p.pk, i, "home.new_arrivals", "impression") for i, p in enumerate(products)
    ]
    assert {e.visitor_id for e in rows} == {vid}
    assert {str(e.page_view_id) for e in rows} == {pv}
    assert rows[0].occurred_at.isoformat() == RECENT.replace("Z", "+00:00")
    assert rows[0].device == "desktop"
    assert rows[0].source == EventSource.BEACON


def test_replay_is_stored_once_and_reported_as_duplicates(client):
    product = ProductFactory()
    body = {"events": [impression(product.pk, 0), impression(product.pk, 1)]}

    first = post(client, body)
    second = post(client, body)

    assert first.json() == {"accepted": 2, "duplicates": 0}
    assert second.status_code == 202
    assert second.json() == {"accepted": 0, "duplicates": 2}
    assert Event.objects.count() == 2


def test_repeated_key_inside_one_batch_counts_as_a_duplicate(client):
    product = ProductFactory()
    event = impression(product.pk, 0)

    resp = post(client, {"events": [event, event]})

    assert resp.json() == {"accepted": 1, "duplicates": 1}
    assert Event.objects.count() == 1


def test_unknown_product_rejects_the_whole_batch_naming_index_and_field(client):
    products = ProductFactory.create_batch(3)
    events = [impression(p.pk, i) for i, p in enumerate(products)]
    events.append(impression(999999, 3))

    resp = post(client, {"events": events})

    assert resp.status_code == 400
    assert resp.json() == {"events": {"3": {"product_id": ["Unknown product 999999."]}}}
    assert Event.objects.count() == 0
    assert Visitor.objects.count() == 0


def test_products_of_a_batch_are_checked_in_one_query(client):
    products = ProductFactory.create_batch(20)
    events = [impression(p.pk, i) for i, p in enumerate(products)]

    with CaptureQueriesContext(connection) as ctx:
        resp = post(client, {"events": events})

    assert resp.status_code == 202
    product_queries = [q["sql"] for q in ctx.captured_queries if '"catalog_product"' in q["sql"]]
    assert len(product_queries) == 1


def test_unknown_type_is_400_naming_index_and_field(client):
    product = ProductFactory()

    resp = post(client, {"events": [impression(product.pk, 0), impression(product.pk, 1, type="hover")]})

    assert resp.status_code == 400
    body = resp.json()
    assert list(body["events"]) == ["1"]
    assert list(body["events"]["1"]) == ["type"]
    assert "hover" in body["events"]["1"]["type"][0]
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("position", -1), ("page_view_id", "not-a-uuid"), ("idempotency_key", "k" * 101), ("occurred_at", "yesterday")],
)
def test_bad_field_is_400_naming_it(client, field, value):
    product = ProductFactory()

    event = {**impression(product.pk, 0), field: value}

    resp = post(client, {"events": [event]})

    assert resp.status_code == 400
    assert list(resp.json()["events"]["0"]) == [field]
    assert Event.objects.count() == 0


def test_missing_events_key_is_400(client):
    resp = post(client, {"evts": []})

    assert resp.status_code == 400
    assert "events" in resp.json()


def test_batch_over_the_limit_is_413_and_writes_nothing(client, settings):
    product = ProductFactory()
    events = [impression(product.pk, i % 100, page_view_id=str(uuid.uuid4())) for i in range(501)]

    resp = post(client, {"events": events})

    assert resp.status_code == 413
    assert "500" in resp.json()["detail"]
    assert "EVENTS_MAX_BATCH" in resp.json()["detail"]
    assert Event.objects.count() == 0


def test_batch_of_exactly_the_limit_is_stored(client):
    product = ProductFactory()
    events = [impression(product.pk, i % 100, page_view_id=str(uuid.uuid4())) for i in range(500)]

    resp = post(client, {"events": events})

    assert resp.status_code == 202
    assert resp.json()["accepted"] == 500


def test_body_over_one_megabyte_is_413_before_parsing(client):
    product = ProductFactory()
    # valid JSON, few events, but padded past the byte limit
    body = json.dumps({"events": [impression(product.pk, 0)], "padding": "x" * 1_000_001})

    resp = post(client, body)

    assert resp.status_code == 413
    assert "1000000 bytes" in resp.json()["detail"]
    assert Event.objects.count() == 0


def test_malformed_json_is_400(client):
    resp = post(client, '{"events": [')

    assert resp.status_code == 400
    assert "JSON parse error" in resp.json()["detail"]


def test_text_plain_body_is_415(client):
    # text/plain is a "simple" content type: another site's page could post it without a preflight
    product = ProductFactory()

    resp = post(client, {"events": [impression(product.pk, 0)]}, content_type="text/plain;charset=UTF-8")

    assert resp.status_code == 415
    assert Event.objects.count() == 0


def test_form_body_is_415(client):
    resp = client.post(URL, data={"events": "x"})

    assert resp.status_code == 415


def test_body_visitor_id_is_used_for_staff_tokens(client):
    product = ProductFactory()
    vid = uuid.uuid4()
    token = Token.objects.create(user=UserFactory(is_staff=True))

    resp = client.post(
        URL,
        data=json.dumps({"visitor_id": str(vid), "events": [impression(product.pk, 0)]}),
        content_type="application/json",
        headers={"authorization": f"Token {token.key}"},
    )

    assert resp.status_code == 202
    event = Event.objects.get()
    assert event.visitor_id == vid
    assert event.source == EventSource.API


def test_cookieless_client_gets_a_visitor_cookie_matching_its_events(client):
    product = ProductFactory()

    resp = post(client, {"events": [impression(product.pk, 0)]})

    assert resp.status_code == 202
    assert Event.objects.get().visitor_id == visitor_id_from_cookie(resp.cookies["vid"].value)


def test_events_need_no_csrf_token_even_when_signed_in(client):
    from django.test import Client

    user = UserFactory()
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    product = ProductFactory()

    resp = post(csrf_client, {"events": [impression(product.pk, 0)]})

    assert resp.status_code == 202
    assert Event.objects.get().user == user


def test_events_of_a_visitor_attached_to_a_user_belong_to_that_user(client):
    user = UserFactory()
    visitor = VisitorFactory(user=user)
    EventFactory(visitor=visitor)  # history already there
    client.cookies["vid"] = visitor_cookie_value(visitor.pk)
    product = ProductFactory()

    post(client, {"events": [impression(product.pk, 0)]})

    assert Event.objects.get(type="impression").user == user


def test_throttling_returns_429_past_the_rate(client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"events": "2/min", "cart": "2/min"},
    }
    product = ProductFactory()
    client.cookies["vid"] = visitor_cookie_value(uuid.uuid4())

    codes = [post(client, {"events": [impression(product.pk, i)]}).status_code for i in range(3)]

    assert codes == [202, 202, 429]
    assert Event.objects.count() == 2
    # another visitor has a bucket of its own
    other = type(client)()
    other.cookies["vid"] = visitor_cookie_value(uuid.uuid4())
    assert post(other, {"events": [impression(product.pk, 9)]}).status_code == 202


FAST_PATH_CASES = [
    impression(1, 0),
    {"type": "click", "product_id": 7, "idempotency_key": "clk:x"},
    {**impression(2, 5), "occurred_at": "2026-01-02T03:04:05.123456+02:00", "device": None},
    {**impression(2, 5), "occurred_at": "2026-01-02T03:04:05", "page_view_id": None, "position": None},
    {**impression(2, 5), "page_view_id": "6F1C2B1E0D7E4B8E9A432F0C5D1B7A10"},
]


@pytest.mark.parametrize("event", FAST_PATH_CASES)
def test_fast_path_matches_drf(event):
    from rest_framework import serializers

    from shop.events.serializers import EventItemSerializer

    fast = EventItemSerializer()._fast_internal_value(event)
    slow = serializers.Serializer.to_internal_value(EventItemSerializer(), event)

    assert fast is not None
    assert fast == dict(slow)


@pytest.mark.parametrize(
    "event",
    [
        {**impression(1, 0), "type": ["impression"]},
        {**impression(1, 0), "product_id": True},
        {**impression(1, 0), "product_id": "1"},
        {**impression(1, 0), "placement": " padded "},
        {**impression(1, 0), "idempotency_key": "ключ"},
        {**impression(1, 0), "idempotency_key": ""},
        {**impression(1, 0), "device": "x" * 17},
        {**impression(1, 0), "type": "purchase"},
        {**impression(1, 0), "idempotency_key": "buy:K7QX-93HF-2MPL:1"},
    ],
)
def test_unusual_events_take_drf_path(event):
    from shop.events.serializers import EventItemSerializer

    assert EventItemSerializer()._fast_internal_value(event) is None

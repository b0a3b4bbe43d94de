"""GET /api/recommendations is throttled per visitor and per address (staff exempt), and says so in its schema."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from shop.events.middleware import visitor_cookie_value
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

API = "/api/recommendations"
PARAMS = {"placement": "home.recommended", "k": 4}


@pytest.fixture(autouse=True)
def _rates(settings):
    settings.RECS_SERVING_LOAD = False  # no model: the popular list answers (the throttle is what is tested)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "recs": "3/min",
            "recs_ip": "5/min",
        },
    }
    ProductFactory.create_batch(6)


def _shopper() -> Client:
    c = Client()
    c.cookies["vid"] = visitor_cookie_value(uuid.uuid4())
    return c


def test_a_burst_from_one_visitor_gets_429_with_retry_after():
    me = _shopper()
    responses = [me.get(API, PARAMS) for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    throttled = responses[3]
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert "detail" in throttled.json()
    assert len(responses[0].json()["items"]) == 4


def test_new_cookies_do_not_escape_the_address_limit():
    codes = [_shopper().get(API, PARAMS).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2


def test_staff_are_not_throttled():
    staff = get_user_model().objects.create_user("staff-throttle", password="pw-throttle-1", is_staff=True)
    c = Client()
    c.force_login(staff)
    assert {c.get(API, {**PARAMS, "visitor_id": str(uuid.uuid4())}).status_code for _ in range(8)} == {200}
    # and a shopper from the same address still has its own allowance
    assert _shopper().get(API, PARAMS).status_code == 200


def test_the_schema_documents_the_429():
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    responses = schema["paths"]["/api/recommendations"]["get"]["responses"]
    assert "429" in responses and "recs" in responses["429"]["description"]

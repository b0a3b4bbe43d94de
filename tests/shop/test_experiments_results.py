"""Results of an experiment from Event and Order rows, through the staff-only API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from shop.events.models import Event, EventType
from shop.experiments.models import Experiment
from shop.orders.models import OrderStatus
from tests.factories import OrderFactory, OrderLineFactory, ProductFactory, UserFactory, VisitorFactory

pytestmark = pytest.mark.django_db

START = timezone.now() - dt.timedelta(days=3)
_seq = iter(range(10**6))


def _event(visitor, product, type_, when, arm=None, version=None, placement=""):
    return Event(
        idempotency_key=f"r:{next(_seq)}",
        visitor=visitor,
        product=product,
        type=type_,
        placement=placement,
        arm=arm,
        model_version=version,
        occurred_at=when,
    )


@pytest.fixture
def experiment():
    exp = Experiment.objects.get(status=Experiment.Status.RUNNING)
    exp.started_at = START
    exp.save(update_fields=["started_at"])
    return exp


@pytest.fixture
def logged(experiment):
    """popularity: 10 visitors, 2 buy (10 + 30); heuristic: 10, 3 buy; dlrm: 10, 5 buy (20 each).
    Each visitor sees 4 rail impressions; dlrm visitors click twice, others once."""
    product = ProductFactory()
    events = []
    day1, day2 = START + dt.timedelta(hours=1), START + dt.timedelta(days=1, hours=1)
    plan = {"popularity": (2, [Decimal(10), Decimal(30)], 1), "heuristic": (3, [Decimal(20)] * 3, 1)}
    plan["dlrm"] = (5, [Decimal(20)] * 5, 2)
    for arm, (buyers, totals, clicks) in plan.items():
        version = "v0002" if arm == "dlrm" else None
        for i in range(10):
            v = VisitorFactory()
            when = day1 if i < 5 else day2
            if arm == "dlrm" and i >= 5:
                version = "v0003"
            for _ in range(4):
                events.append(_event(v, product, EventType.IMPRESSION, when, arm, version, "home"))
            for _ in range(clicks):
                # the browser's beacon sends clicks without an arm
                events.append(_event(v, product, EventType.CLICK, when, None, None, "home"))
            events.append(_event(v, product, EventType.CLICK, when, None, None, "category.grid"))  # not a rail
            if i < buyers:
                events.append(_event(v, product, EventType.ADD_TO_CART, when + dt.timedelta(minutes=1), arm, version))
                OrderFactory(visitor=v, total=totals[i], placed_at=when + dt.timedelta(minutes=2))
    # noise that must not count: a visitor seen only before the start, a crossover, a cancelled order,
    # an order placed before the visitor's first exposure, a visitor with no armed event
    early = VisitorFactory()
    events.append(_event(early, product, EventType.IMPRESSION, START - dt.timedelta(hours=1), "dlrm", "v0001", "home"))
    OrderFactory(visitor=early, total=Decimal(99), placed_at=START - dt.timedelta(minutes=30))
    cross = VisitorFactory()
    events.append(_event(cross, product, EventType.IMPRESSION, day1, "dlrm", "v0002", "home"))
    events.append(_event(cross, product, EventType.IMPRESSION, day1, "popularity", None, "home"))
    cancelled = VisitorFactory()
    events.append(_event(cancelled, product, EventType.IMPRESSION, day1, "popularity", None, "home"))
    OrderFactory(visitor=cancelled, total=Decimal(50), placed_at=day1, status=OrderStatus.CANCELLED)
    before = VisitorFactory()
    OrderFactory(visitor=before, total=Decimal(70), placed_at=day1 - dt.timedelta(minutes=5))
    events.append(_event(before, product, EventType.IMPRESSION, day1, "heuristic", None, "home"))
    unarmed = VisitorFactory()
    events.append(_event(unarmed, product, EventType.VIEW, day1))
    Event.objects.bulk_create(events)


def _metric(data, key):
    return next(m for m in data["metrics"] if m["metric"] == key)


def _comparison(metric, arm):
    return next(c for c in metric["comparisons"] if c["arm"] == arm)


def test_results_api_reports_per_arm_metrics_lifts_and_srm(logged, admin_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):  # ... and one for the serving mix
        response = admin_client.get("/api/experiments/current/results")
    assert response.status_code == 200
    data = response.json()
    exp = data["experiment"]
    assert exp["key"] == "rails-ranking" and exp["control"] == "popularity"
    # 10 per arm, plus the cancelled-order visitor (popularity) and the ordered-before visitor (heuristic)
    assert {a["key"]: a["visitors"] for a in exp["arms"]} == {"popularity": 11, "heuristic": 11, "dlrm": 10}
    assert exp["crossovers"] == 1

    conv = _metric(data, "conversion")
    assert conv["primary"] is True
    values = {a["arm"]: (a["numerator"], a["denominator"]) for a in conv["arms"]}
    assert values == {"popularity": (2, 11), "heuristic": (3, 11), "dlrm": (5, 10)}
    dlrm = _comparison(conv, "dlrm")
    assert dlrm["lift"] == pytest.approx((5 / 10) / (2 / 11) - 1)
    assert dlrm["ci_low"] < dlrm["lift"] < dlrm["ci_high"]
    assert -1.0 <= dlrm["seq_ci_low"] <= dlrm["ci_low"] and dlrm["seq_ci_high"] > dlrm["ci_high"]
    assert 0 < dlrm["p_value"] < 1 and isinstance(dlrm["verdict"], str) and dlrm["verdict"]

    # winsorized at the 99th percentile of the buyers' revenue (10, 30 and eight of 20): the 30 counts as the cap
    cap = 20 + 0.91 * (30 - 20)
    rpv = _metric(data, "revenue_per_visitor")
    revenue = {a["arm"]: a["value"] for a in rpv["arms"]}
    assert revenue == pytest.approx({"popularity": (10 + cap) / 11, "heuristic": 60 / 11, "dlrm": 100 / 10})
    assert rpv["cap"]["value"] == pytest.approx(cap) and rpv["cap"]["percentile"] == 0.99
    assert (rpv["cap"]["visitors_capped"], rpv["cap"]["largest"]) == (1, 30.0)
    assert rpv["cap"]["uncapped"] == pytest.approx({"popularity": 40 / 11, "heuristic": 60 / 11, "dlrm": 100 / 10})
    assert "99th percentile" in rpv["note"] and "popularity 3.64" in rpv["note"]
    assert _metric(data, "conversion")["cap"] is None and _metric(data, "conversion")["note"] == ""
    ctr = {a["arm"]: (a["numerator"], a["denominator"]) for a in _metric(data, "rail_ctr")["arms"]}
    assert ctr == {"popularity": (10, 41), "heuristic": (10, 41), "dlrm": (20, 40)}
    atc = {a["arm"]: a["value"] for a in _metric(data, "add_to_cart")["arms"]}
    assert atc == pytest.approx({"popularity": 2 / 11, "heuristic": 3 / 11, "dlrm": 5 / 10})
    # these orders hold no lines, so none went through a rail
    through = {a["arm"]: (a["numerator"], a["denominator"]) for a in _metric(data, "rail_conversion")["arms"]}
    assert through == {"popularity": (0, 11), "heuristic": (0, 11), "dlrm": (0, 10)}

    assert data["srm"]["mismatch"] is False and data["srm"]["p_value"] > 0.9
    assert data["verdict"]

    days = [d for d in data["by_day"] if d["arm"] == "dlrm"]
    assert [d["visitors"] for d in days] == [5, 5] and [d["cumulative_visitors"] for d in days] == [5, 10]
    assert days[-1]["cumulative_lift"] == pytest.approx(dlrm["lift"])
    versions = {(r["arm"], r["model_version"]): r["visitors"] for r in data["by_model_version"]}
    assert versions[("dlrm", "v0002")] == 5 and versions[("dlrm", "v0003")] == 5
    assert versions[("popularity", "")] == 11


def test_results_by_key_and_unknown_key(logged, admin_client):
    assert admin_client.get("/api/experiments/rails-ranking/results").status_code == 200
    response = admin_client.get("/api/experiments/nope/results")
    assert response.status_code == 404 and response.json() == {"detail": "No such experiment."}


def test_results_are_for_staff_only(client, logged):
    assert client.get("/api/experiments/current/results").status_code in (401, 403)
    shopper = UserFactory()
    client.force_login(shopper)
    assert client.get("/api/experiments/current/results").status_code == 403
    client.logout()
    staff = UserFactory(is_staff=True)
    token = Token.objects.create(user=staff)
    response = client.get("/api/experiments/current/results", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200


def test_srm_flags_a_lopsided_split(experiment, admin_client):
    product = ProductFactory()
    events = []
    for arm, n in (("popularity", 120), ("heuristic", 120), ("dlrm", 60)):
        for _ in range(n):
            events.append(_event(VisitorFactory(), product, EventType.IMPRESSION, START + dt.timedelta(hours=2), arm))
    Event.objects.bulk_create(events)
    data = admin_client.get("/api/experiments/current/results").json()
    assert data["srm"]["mismatch"] is True and data["srm"]["p_value"] < 0.001
    assert data["verdict"].startswith("Do not trust")


def test_no_experiment_running_falls_back_to_the_last_stopped(experiment, admin_client):
    from shop.experiments.services import experiment_stop

    experiment_stop(experiment=experiment)
    data = admin_client.get("/api/experiments/current/results").json()
    assert data["experiment"]["status"] == "stopped" and data["experiment"]["stopped_at"]
    Experiment.objects.all().delete()
    assert admin_client.get("/api/experiments/current/results").status_code == 404


def test_experiment_report_prints_the_lift_table(logged):
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("experiment_report", width=200, stdout=out)
    text = out.getvalue()
    assert "popularity (control)" in text and "heuristic" in text and "dlrm" in text
    assert "(5/10)" in text and "(2/11)" in text  # dlrm and popularity converters / visitors
    assert "+175.0%" in text  # dlrm conversion lift: 0.5 / (2/11) - 1
    assert "SRM:" in text and "Visitors split as configured" in text
    assert "Revenue per visitor: each visitor counts up to 29.10, the 99th percentile" in text
    # 10-11 visitors an arm: every comparison is under the minimum sample, so its p-value is marked and not judged
    assert (
        text.count(" †") >= 5 and "† Too few to judge: under the minimum sample a verdict needs (100 visitors" in text
    )

    out = io.StringIO()
    call_command("experiment_report", "--json", "--key", "rails-ranking", stdout=out)
    assert json.loads(out.getvalue())["experiment"]["key"] == "rails-ranking"

    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No experiment 'nope'"):
        call_command("experiment_report", "--key", "nope")


def test_conversion_through_a_rail_counts_orders_of_products_clicked_on_a_rail_first(experiment, admin_client):
    """A visitor converts through a rail when its order holds a product it clicked on one of the experiment's
    rails before the order; a click elsewhere, on another product, after the order, or a cancelled order does
    not count, and site-wide conversion counts them all."""
    clicked, other, filler = ProductFactory(), ProductFactory(), ProductFactory()
    when = START + dt.timedelta(hours=1)
    events = []

    def visitor(arm, click=None, placement="home.recommended", click_at=when, buys=None, status=OrderStatus.PLACED):
        v = VisitorFactory()
        events.append(_event(v, clicked, EventType.IMPRESSION, when, arm, None, "home.recommended"))
        if click is not None:
            events.append(_event(v, click, EventType.CLICK, click_at, None, None, placement))
        if buys is not None:
            order = OrderFactory(visitor=v, total=Decimal(20), placed_at=when + dt.timedelta(minutes=5), status=status)
            OrderLineFactory(order=order, product=filler)
            OrderLineFactory(order=order, product=buys)
        return v

    visitor("dlrm", click=clicked, buys=clicked)  # counts
    visitor("dlrm", click=clicked, placement="product.recommended", buys=clicked)  # counts: another rail
    visitor("dlrm", click=clicked, placement="category.grid", buys=clicked)  # a grid is not a rail
    visitor("dlrm", buys=clicked)  # bought without a click
    visitor("heuristic", click=clicked, buys=clicked)  # counts
    visitor("heuristic", click=other, buys=clicked)  # clicked another product on the rail
    visitor("heuristic", click=clicked, click_at=when + dt.timedelta(minutes=10), buys=clicked)  # click after the order
    visitor("popularity", click=clicked, buys=clicked, status=OrderStatus.CANCELLED)
    visitor("popularity", click=clicked)  # clicked, never bought
    # a rail placement is one where the experiment's rails rendered
    events.append(
        _event(VisitorFactory(), clicked, EventType.IMPRESSION, when, "popularity", None, "product.recommended")
    )
    Event.objects.bulk_create(events)

    data = admin_client.get("/api/experiments/current/results").json()
    through = {a["arm"]: (a["numerator"], a["denominator"]) for a in _metric(data, "rail_conversion")["arms"]}
    assert through == {"popularity": (0, 3), "heuristic": (1, 3), "dlrm": (2, 4)}
    conv = {a["arm"]: (a["numerator"], a["denominator"]) for a in _metric(data, "conversion")["arms"]}
    assert conv == {"popularity": (0, 3), "heuristic": (3, 3), "dlrm": (4, 4)}
    rail = _metric(data, "rail_conversion")
    assert rail["primary"] is False and rail["kind"] == "proportion"

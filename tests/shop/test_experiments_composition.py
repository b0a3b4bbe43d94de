"""What each arm's rails showed: the visitor's own products, click rates, distinct products, the control's."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from shop.events.models import Event, EventType
from shop.experiments.composition import composition_compute, experiment_composition
from shop.experiments.models import Experiment
from tests.factories import ProductFactory, VisitorFactory
from tests.shop.test_experiments_results import _event

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _t(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_cards_are_split_by_what_the_visitor_engaged_with_before_and_each_click_counts_once():
    cards = [
        ("a", 1, "home.recommended", "dlrm", _t(1)),  # a viewed 1 at t0: own
        ("a", 2, "home.recommended", "dlrm", _t(1)),  # a viewed 2 later: not own yet
        ("a", 2, "home.recommended", "dlrm", _t(5)),  # ... own by now
        ("a", 3, "home.recommended", "dlrm", _t(1)),
        ("a", 3, "home.recommended", "dlrm", _t(2)),  # the click at 3 belongs to this card only
        ("b", 9, "product.recommended", "popularity", _t(1)),
        ("b", 8, "product.recommended", "popularity", _t(1)),
        ("c", 9, "product.recommended", "popularity", _t(1)),
        ("d", 9, "cart.recommended", "heuristic", _t(1)),  # among the control's most shown
        ("d", 7, "cart.recommended", "heuristic", _t(1)),
        ("e", 5, "home.recommended", "other-experiment-arm", _t(1)),  # not this experiment's arm
    ]
    clicks = [
        ("a", 3, "home.recommended", _t(3)),
        ("a", 3, "home.recommended", _t(0.5)),  # before any card of it: no card to count for
        ("a", 1, "product.recommended", _t(2)),  # another placement
        ("a", 2, "home.recommended", _t(6)),
        ("d", 7, "cart.recommended", _t(1)),  # at the card's own instant
    ]
    first = {("a", 1): _t(0), ("a", 2): _t(3), ("d", 9): _t(2)}
    rows = composition_compute(
        arms=["popularity", "heuristic", "dlrm"],
        control="popularity",
        cards=cards,
        clicks=clicks,
        first_engaged=first,
        control_top=1,
    )
    by = {r.arm: r for r in rows}
    assert [r.arm for r in rows] == ["popularity", "heuristic", "dlrm"]
    dlrm = by["dlrm"]
    assert (dlrm.cards, dlrm.products, dlrm.own_cards, dlrm.own_clicks) == (5, 3, 2, 1)
    assert (dlrm.other_cards, dlrm.other_clicks) == (3, 1)
    assert dlrm.own_share == pytest.approx(2 / 5) and dlrm.other_ctr == pytest.approx(1 / 3)
    assert dlrm.other_from_control == 0  # none of 2 and 3 is the control's product 9
    heuristic = by["heuristic"]
    # d engaged with 9 only after its card: not own; 9 is the control's most shown product (2 of 3 cards)
    assert (heuristic.cards, heuristic.own_cards, heuristic.other_clicks, heuristic.other_from_control) == (2, 0, 1, 1)
    assert heuristic.other_control_share == pytest.approx(1 / 2)
    assert heuristic.own_ctr is None  # no own cards: no rate
    popularity = by["popularity"]
    assert (popularity.cards, popularity.products, popularity.other_from_control) == (3, 2, 0)


def test_an_experiment_with_no_cards():
    rows = composition_compute(arms=["popularity", "dlrm"], control="popularity", cards=(), clicks=(), first_engaged={})
    assert [(r.arm, r.cards, r.own_share, r.other_ctr) for r in rows] == [
        ("popularity", 0, None, None),
        ("dlrm", 0, None, None),
    ]


@pytest.mark.django_db
def test_the_report_reads_the_experiments_window_from_the_log():
    experiment = Experiment.objects.get(status=Experiment.Status.RUNNING)
    start = timezone.now() - dt.timedelta(hours=2)
    experiment.started_at = start
    experiment.save(update_fields=["started_at"])
    seen, fresh, popular = ProductFactory(), ProductFactory(), ProductFactory()
    shopper, other, early = VisitorFactory(), VisitorFactory(), VisitorFactory()
    at = start + dt.timedelta(minutes=30)

    def ev(visitor, product, type_, when, arm=None, placement=""):
        return _event(visitor, product, type_, when, arm, None, placement)

    Event.objects.bulk_create(
        [
            ev(shopper, seen, EventType.VIEW, start - dt.timedelta(days=1)),  # before the experiment: still its own
            ev(shopper, seen, EventType.IMPRESSION, at, "dlrm", "home.recommended"),
            ev(shopper, fresh, EventType.IMPRESSION, at, "dlrm", "home.recommended"),
            ev(shopper, popular, EventType.IMPRESSION, at, "dlrm", "home.recommended"),
            ev(shopper, popular, EventType.IMPRESSION, at, "dlrm", "home.trending"),  # trending: left out
            ev(shopper, seen, EventType.CLICK, at + dt.timedelta(seconds=5), None, "home.recommended"),
            ev(other, popular, EventType.IMPRESSION, at, "popularity", "product.recommended"),
            ev(early, fresh, EventType.IMPRESSION, start - dt.timedelta(minutes=1), "heuristic", "home.recommended"),
        ]
    )
    by = {r.arm: r for r in experiment_composition(experiment=experiment)}
    assert (by["dlrm"].cards, by["dlrm"].own_cards, by["dlrm"].own_clicks, by["dlrm"].other_cards) == (3, 1, 1, 2)
    assert by["dlrm"].other_from_control == 1  # the control showed `popular`
    assert by["heuristic"].cards == 0 and by["popularity"].cards == 1

    out = io.StringIO()
    call_command("experiment_report", "--composition", width=200, stdout=out)
    text = out.getvalue()
    assert "What the personalised rails showed" in text
    assert "100.00% (1/1)" in text  # the click on the visitor's own product
    assert "50.00%" in text  # of dlrm's two other cards, one among the control's most shown


@pytest.mark.django_db
def test_the_composition_api_is_for_staff_and_reads_the_log_once_a_minute(client, admin_client):
    from django.core.cache import cache

    from tests.factories import UserFactory

    cache.clear()
    experiment = Experiment.objects.get(status=Experiment.Status.RUNNING)
    experiment.started_at = timezone.now() - dt.timedelta(hours=1)
    experiment.save(update_fields=["started_at"])
    product, visitor = ProductFactory(), VisitorFactory()
    at = timezone.now() - dt.timedelta(minutes=5)
    Event.objects.bulk_create(
        [_event(visitor, product, EventType.IMPRESSION, at, "heuristic", None, "cart.recommended")]
    )

    assert client.get("/api/experiments/current/composition").status_code in (401, 403)
    client.force_login(UserFactory())
    assert client.get("/api/experiments/current/composition").status_code == 403

    data = admin_client.get("/api/experiments/current/composition").json()
    assert (data["experiment"], data["control"], data["control_top"]) == ("rails-ranking", "popularity", 40)
    arms = {a["arm"]: a for a in data["arms"]}
    assert arms["heuristic"]["cards"] == 1 and arms["heuristic"]["own_share"] == 0.0
    assert arms["dlrm"]["cards"] == 0 and arms["dlrm"]["own_share"] is None
    # within the minute the cached figures answer, even after more cards arrive
    Event.objects.bulk_create([_event(visitor, product, EventType.IMPRESSION, at, "dlrm", None, "home.recommended")])
    again = admin_client.get("/api/experiments/current/composition").json()
    assert again["computed_at"] == data["computed_at"] and {a["arm"]: a["cards"] for a in again["arms"]}["dlrm"] == 0
    cache.clear()
    fresh = admin_client.get("/api/experiments/current/composition").json()
    assert {a["arm"]: a["cards"] for a in fresh["arms"]}["dlrm"] == 1

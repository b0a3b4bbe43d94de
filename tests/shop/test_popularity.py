"""Decayed popularity: weights halve every half-life, refreshes read only new events, pages use the score."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shop.catalog.models import PopularityState, Product
from shop.catalog.popularity import (
    COMMIT_LAG,
    POPULARITY_HALF_LIFE,
    decayed,
    popularity_rebuild,
    popularity_refresh,
)
from shop.catalog.rails import RailContext, trending_ids
from shop.catalog.selectors import popular_product_ids, product_list, trending_product_ids
from shop.events.models import Event, EventType
from tests.factories import EventFactory, ProductFactory

pytestmark = pytest.mark.django_db


def refresh(**kwargs):
    # events younger than COMMIT_LAG wait for the next refresh; step past it
    return popularity_refresh(now=timezone.now() + COMMIT_LAG + timedelta(seconds=1), **kwargs)


def test_an_event_loses_half_its_weight_every_half_life():
    now = timezone.now()
    fresh, week_old = ProductFactory(), ProductFactory()
    EventFactory(product=fresh, type=EventType.ADD_TO_CART, occurred_at=now)
    EventFactory(product=week_old, type=EventType.ADD_TO_CART, occurred_at=now - POPULARITY_HALF_LIFE)
    EventFactory(product=week_old, type=EventType.ADD_TO_CART, occurred_at=now - 2 * POPULARITY_HALF_LIFE)

    refresh()

    fresh.refresh_from_db()
    week_old.refresh_from_db()
    assert decayed(fresh.popularity, now=now, half_life=POPULARITY_HALF_LIFE) == pytest.approx(1.0)
    assert decayed(week_old.popularity, now=now, half_life=POPULARITY_HALF_LIFE) == pytest.approx(0.75)
    # a month on, both have faded by the same factor: the ordering holds without rewriting any row
    later = now + timedelta(days=28)
    assert decayed(week_old.popularity, now=later, half_life=POPULARITY_HALF_LIFE) == pytest.approx(0.75 / 16)


def test_recent_interest_beats_a_bigger_but_older_one():
    now = timezone.now()
    old_hit, new_hit = ProductFactory(name="Old hit"), ProductFactory(name="New hit")
    EventFactory.create_batch(6, product=old_hit, type=EventType.PURCHASE, occurred_at=now - timedelta(days=28))
    EventFactory.create_batch(2, product=new_hit, type=EventType.ADD_TO_CART, occurred_at=now)
    EventFactory.create_batch(50, product=old_hit, type=EventType.IMPRESSION)  # exposure is not interest

    refresh()

    # all-time counts would say old hit (6 sales); decayed: 6 x 2 / 16 = 0.75 < 2
    assert popular_product_ids(limit=5) == [new_hit.pk, old_hit.pk]
    assert [p.pk for p in product_list(sort="popular")][:2] == [new_hit.pk, old_hit.pk]


def test_trending_counts_views_with_a_short_half_life():
    now = timezone.now()
    steady, spiking = ProductFactory(), ProductFactory()
    EventFactory.create_batch(4, product=steady, type=EventType.ADD_TO_CART, occurred_at=now - timedelta(days=3))
    EventFactory.create_batch(3, product=spiking, type=EventType.VIEW, occurred_at=now)

    refresh()

    assert popular_product_ids(limit=5) == [steady.pk]
    assert trending_product_ids(limit=5)[0] == spiking.pk


def test_trending_rail_follows_the_decayed_score_and_never_reads_the_log(django_assert_num_queries):
    now = timezone.now()
    faded, rising = ProductFactory(name="Faded"), ProductFactory(name="Rising")
    # two days ago: many views (a 48-hour count would rank it first); now: a few, weighing more
    EventFactory.create_batch(12, product=faded, type=EventType.VIEW, occurred_at=now - timedelta(hours=40))
    EventFactory.create_batch(4, product=rising, type=EventType.VIEW, occurred_at=now)
    refresh()

    with CaptureQueriesContext(connection) as ctx:
        ids = trending_ids(RailContext())
    assert ids[:2] == [rising.pk, faded.pk]  # 4 > 12 / 2 ** (40 / 24) = 3.8
    assert ctx.captured_queries and not any("events_event" in q["sql"] for q in ctx.captured_queries)
    with django_assert_num_queries(0):  # cached for everyone until the next refresh window
        assert trending_ids(RailContext()) == ids


def test_refresh_reads_only_new_events_and_applies_each_once():
    product = ProductFactory()
    EventFactory.create_batch(3, product=product, type=EventType.ADD_TO_CART)

    first = refresh()
    product.refresh_from_db()
    score = product.popularity
    again = refresh()

    assert (first.events, first.products) == (3, 1)
    assert again.events == 0  # nothing new: nothing read, nothing rewritten
    product.refresh_from_db()
    assert product.popularity == score
    EventFactory(product=product, type=EventType.PURCHASE)
    assert refresh().events == 1
    product.refresh_from_db()
    assert product.popularity > score


def test_refresh_in_small_batches_gives_the_same_scores():
    products = ProductFactory.create_batch(3)
    for i, p in enumerate(products):
        EventFactory.create_batch(i + 1, product=p, type=EventType.ADD_TO_CART)
    result = refresh(batch=2)
    assert result.events == 6
    one_go = dict(Product.objects.values_list("pk", "popularity"))

    Product.objects.update(popularity=None, trending=None)
    PopularityState.objects.all().delete()
    refresh(batch=100)
    assert dict(Product.objects.values_list("pk", "popularity")) == pytest.approx(one_go)


def test_events_younger_than_the_commit_lag_wait_for_the_next_refresh():
    product = ProductFactory()
    EventFactory(product=product, type=EventType.ADD_TO_CART)

    assert popularity_refresh(now=timezone.now()).events == 0  # may still sit behind an open transaction
    product.refresh_from_db()
    assert product.popularity is None
    assert refresh().events == 1


def _rows_read_from(table: str):
    """A counter and a context manager factory: within it, the rows each SELECT on ``table`` returned to
    Python are counted."""
    read = {"rows": 0}

    def count(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and f'"{table}"' in sql.split(" FROM ", 1)[-1].split()[0]:
            read["rows"] += max(0, context["cursor"].cursor.rowcount)
        return result

    return read, lambda: connection.execute_wrapper(count)


def test_refresh_never_reads_the_events_inside_the_commit_lag_into_python():
    # Under load the log's last COMMIT_LAG holds far more rows than one refresh applies: a refresh that
    # read them on every run (to drop them) cost a quarter-second of CPU each on a busy shop.
    product = ProductFactory()
    old = EventFactory.create_batch(3, product=product, type=EventType.ADD_TO_CART)
    Event.objects.filter(pk__in=[e.pk for e in old]).update(received_at=timezone.now() - COMMIT_LAG * 2)
    EventFactory.create_batch(200, product=product, type=EventType.IMPRESSION)  # just received
    EventFactory.create_batch(50, product=product, type=EventType.VIEW)

    read, counting = _rows_read_from(Event._meta.db_table)
    with counting():
        result = popularity_refresh(now=timezone.now())
    assert (result.events, result.products) == (3, 1)
    assert read["rows"] <= 3 + 3, read  # the three that score, and three one-row answers (bounds, count)
    assert PopularityState.objects.get().last_event_id == max(e.pk for e in old)

    # the rows that do not score are skipped by the database too: impressions never reach Python
    read["rows"] = 0
    with counting():
        later = refresh()
    assert later.events == 250
    assert read["rows"] <= 50 + 3, read


def test_refresh_command_reports_what_it_applied():
    from io import StringIO

    from django.core.management import call_command

    EventFactory.create_batch(2, type=EventType.ADD_TO_CART, occurred_at=timezone.now() - timedelta(hours=1))
    PopularityState.objects.all().delete()
    out = StringIO()
    # received_at is now: the command leaves them for later, as beat would
    call_command("popularity_refresh", stdout=out, verbosity=0)
    assert "Applied 0 events" in out.getvalue()


def test_beat_runs_the_refresh_task_by_name(settings):
    from worker.popularity import REFRESH_TASK, refresh

    entry = settings.CELERY_BEAT_SCHEDULE["catalog-popularity-refresh"]
    assert entry["task"] == REFRESH_TASK
    product = ProductFactory()
    event = EventFactory(product=product, type=EventType.PURCHASE)
    Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - 2 * COMMIT_LAG)  # committed long ago
    assert refresh.apply().get() == {"events": 1, "products": 1, "last_event_id": event.pk}


def test_rebuild_in_one_statement_gives_the_refresh_scores_and_its_watermark():
    now = timezone.now()
    products = ProductFactory.create_batch(4)
    for i, p in enumerate(products):
        for kind in (EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.IMPRESSION):
            EventFactory.create_batch(i + 1, product=p, type=kind, occurred_at=now - timedelta(days=3 * i, hours=i))
    EventFactory(product=products[0], type=EventType.VIEW, occurred_at=now + timedelta(days=2))  # a clock ahead
    refreshed = refresh()
    expected = {pk: (pop, trend) for pk, pop, trend in Product.objects.values_list("pk", "popularity", "trending")}
    Product.objects.update(popularity=None, trending=None)
    PopularityState.objects.all().delete()

    rebuilt = popularity_rebuild(now=timezone.now() + COMMIT_LAG + timedelta(seconds=1))

    assert (rebuilt.events, rebuilt.last_event_id) == (refreshed.events, refreshed.last_event_id)
    for pk, pop, trend in Product.objects.values_list("pk", "popularity", "trending"):
        assert (pop, trend) == (pytest.approx(expected[pk][0], abs=1e-6), pytest.approx(expected[pk][1], abs=1e-6))
    assert refresh().events == 0  # the next refresh continues after the rebuild's watermark
    EventFactory(product=products[3], type=EventType.PURCHASE)
    assert refresh().events == 1

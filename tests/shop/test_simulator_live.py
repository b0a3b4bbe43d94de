"""The simulator against a live server: what it reports is what the shop recorded, and a seed
reproduces a run."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command

from shop.catalog.cards import cards_forget
from shop.catalog.models import PopularityState, Product
from shop.events.models import Event, EventSource, EventType, Visitor
from shop.experiments.models import Experiment
from shop.experiments.selectors import running_experiment_forget
from shop.orders.models import Cart, Order
from shop.simulator.run import Config, simulate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def shop_site(live_server, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "login": "1000/min",
        },
    }
    call_command("seed_catalog", products=150, seed=42, verbosity=0)
    # Nothing sells out: a product that sells out mid-run leaves the rails when their cached lists
    # expire, and when that happens depends on the machine's speed, not on the seed.
    Product.objects.update(stock=1000)
    # arms come from random visitor ids; with no experiment running every visitor sees the same rails
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    running_experiment_forget()
    return live_server.url


def _stock() -> dict[int, int]:
    return dict(Product.objects.values_list("id", "stock"))


def _wipe_shopping(stock: dict[int, int]) -> None:
    """Back to the catalog as seeded: the first run's purchases sold stock, and a product sold out
    then drops out of every rail (the same seed would then click something else)."""
    Event.objects.all().delete()
    Order.objects.all().delete()
    Cart.objects.all().delete()
    Visitor.objects.all().delete()
    get_user_model().objects.all().delete()
    products = list(Product.objects.all())
    for product in products:
        product.stock = stock[product.id]
        product.popularity = product.trending = None
    Product.objects.bulk_update(products, ["stock", "popularity", "trending"])
    PopularityState.objects.all().delete()
    cards_forget()
    cache.clear()


def test_a_seed_reproduces_the_run_and_the_shop_records_what_the_shoppers_did(shop_site):
    config = Config(url=shop_site, shoppers=10, minutes=0, seed=11, concurrency=1, think_s=0)
    stock = _stock()
    first = simulate(config)
    c = first.counters
    assert first.sessions >= 10 and c.pages > 30 and c.errors == [] and c.http_errors == 0
    assert c.events_refused == 0
    # every impression and click the beacon sent is stored (once: a rail logs its own impressions
    # under the same idempotency keys, so the beacon's copy is a duplicate)
    assert len(set(c.sent_keys)) == c.events_sent > 0
    stored = set(Event.objects.filter(idempotency_key__in=c.sent_keys).values_list("idempotency_key", flat=True))
    assert stored == set(c.sent_keys)
    clicks = Event.objects.filter(type=EventType.CLICK, source=EventSource.BEACON)
    assert clicks.count() == c.clicks > 0
    assert Order.objects.count() == c.orders
    assert Event.objects.filter(type=EventType.ADD_TO_CART).count() == c.add_to_carts
    assert get_user_model().objects.count() == c.signups
    # the personal rails come after load, as a browser's script fetches them: the shoppers saw them too
    assert c.rails_fetched > 0
    assert Event.objects.filter(type=EventType.IMPRESSION, placement="product.recommended").exists()

    _wipe_shopping(stock)
    second = simulate(config)
    assert second.traces == first.traces
    assert (second.counters.pages, second.counters.orders) == (c.pages, c.orders)
    assert second.counters.revenue == pytest.approx(c.revenue)

    _wipe_shopping(stock)
    other = simulate(Config(url=shop_site, shoppers=10, minutes=0, seed=12, concurrency=1, think_s=0))
    assert other.traces != first.traces


def test_concurrent_shoppers_finish_every_session(shop_site):
    config = Config(url=shop_site, shoppers=12, minutes=0, seed=5, concurrency=4, think_s=0)
    summary = simulate(config)
    assert summary.sessions == sum(1 for t in summary.traces.values() for step in t if step == "leave")
    assert summary.counters.errors == [] and summary.counters.events_sent > 0


def test_simulate_command_prints_a_summary(shop_site):
    import io

    out = io.StringIO()
    call_command("simulate", url=shop_site, shoppers=3, minutes=0, seed=1, concurrency=2, think=0, stdout=out)
    text = out.getvalue()
    for label in ("sessions", "pages", "events sent", "orders", "revenue"):
        assert label in text

"""Rails and the recommendations API recommend what a shopper can buy: a product that sells out after its
list was ranked (a cached popular list, a model's snapshot) leaves every rail, and the rail still fills."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from django.db import DatabaseError
from django.db.models.query import QuerySet

from shop.catalog import stock
from shop.catalog.models import Product
from shop.events.models import EventType
from shop.orders.services import cart_add_item, order_create
from tests.factories import EventFactory, ProductFactory
from tests.shop.test_pages import card_ids, scores_refresh

pytestmark = pytest.mark.django_db


def all_card_ids(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'<article class="card" data-product-id="(\d+)"', html)]


@pytest.fixture
def best_seller():
    """The shop's most popular product, one left, ahead of 20 others."""
    hit = ProductFactory(name="Last Jar of Honey", stock=1)
    ProductFactory.create_batch(20, stock=50)
    EventFactory.create_batch(5, product=hit, type=EventType.PURCHASE)
    scores_refresh()
    return hit


def sell_last(product: Product, capture) -> None:
    """Another shopper buys the last one through checkout (its transaction commits)."""
    buyer = uuid.uuid4()
    cart_add_item(visitor_id=buyer, user=None, product_id=product.pk)
    with capture(execute=True):
        order_create(visitor_id=buyer, user=None, full_name="A B", email="a@b.co", address="1 Road")
    product.refresh_from_db()
    assert product.stock == 0


def test_a_product_that_sells_out_leaves_the_rails_its_cached_lists_still_name(
    client, best_seller, django_capture_on_commit_callbacks
):
    html = client.get("/").content.decode()
    assert best_seller.pk in all_card_ids(html)

    sell_last(best_seller, django_capture_on_commit_callbacks)

    html = client.get("/").content.decode()
    assert best_seller.pk not in all_card_ids(html)  # before: shown first, flagged "Sold out"
    assert "Sold out" not in html
    assert len(card_ids(html, "home.popular")) == 8  # the rail still fills


def test_the_recommendations_api_leaves_out_what_sold_out_and_still_answers_k(
    client, best_seller, django_capture_on_commit_callbacks
):
    url = "/api/recommendations?placement=home.recommended&k=5"
    before = client.get(url).json()
    assert before["items"][0]["product_id"] == best_seller.pk  # no model: the popular list

    sell_last(best_seller, django_capture_on_commit_callbacks)

    after = client.get(url).json()
    ids = [item["product_id"] for item in after["items"]]
    assert best_seller.pk not in ids
    assert len(ids) == 5
    assert ids[:4] == [item["product_id"] for item in before["items"][1:]]


def test_a_sell_out_in_another_process_leaves_the_rails_within_the_held_time(client, best_seller, monkeypatch):
    client.get("/")  # this process holds the sold-out set (empty) and the popular list
    Product.objects.filter(pk=best_seller.pk).update(stock=0)  # sold by another process

    later = stock.time.monotonic() + stock.SOLD_OUT_TTL_S + 0.1
    monkeypatch.setattr(stock.time, "monotonic", lambda: later)
    html = client.get("/").content.decode()
    assert best_seller.pk not in all_card_ids(html)


def test_a_failed_read_keeps_the_set_held_before_and_never_breaks_a_page(client, best_seller, monkeypatch, caplog):
    def down(self):
        raise DatabaseError("connection lost")

    stock.sold_out_note([best_seller.pk])  # a checkout here sold it out; the held set is due for a read
    tries = []
    monkeypatch.setattr(QuerySet, "_fetch_all", lambda self: tries.append(1) or down(self))
    with caplog.at_level(logging.WARNING, logger="shop.catalog.stock"):
        assert stock.sold_out_ids() == frozenset({best_seller.pk})  # kept
        assert stock.sold_out_ids() == frozenset({best_seller.pk})  # and not read again at once
        assert len(tries) == 1
        later = stock.time.monotonic() + stock.SOLD_OUT_RETRY_S + 0.1
        monkeypatch.setattr(stock.time, "monotonic", lambda: later)
        assert stock.sold_out_ids() == frozenset({best_seller.pk})  # tried again after SOLD_OUT_RETRY_S
        assert len(tries) == 2
    assert len([r for r in caplog.records if "sold-out products not read" in r.getMessage()]) == 1  # per outage
    monkeypatch.undo()
    Product.objects.filter(pk=best_seller.pk).update(stock=3)  # restocked
    stock.sold_out_forget()
    assert stock.sold_out_ids() == frozenset()
    assert best_seller.pk in all_card_ids(client.get("/").content.decode())


def test_the_sold_out_read_uses_its_partial_index_on_postgresql(django_assert_num_queries):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    ProductFactory.create_batch(30, stock=5)
    ProductFactory.create_batch(3, stock=0)
    with connection.cursor() as cur:
        cur.execute("ANALYZE catalog_product")
        cur.execute("SET LOCAL enable_seqscan = off")
        sql, params = (
            Product.objects.filter(is_active=True, stock=0).values_list("id", flat=True).query.sql_with_params()
        )
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "product_sold_out_idx" in plan
    with django_assert_num_queries(1):
        assert len(stock.sold_out_ids()) == 3

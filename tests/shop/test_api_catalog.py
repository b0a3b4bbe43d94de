"""GET /api/products and /api/categories: what a client browsing the catalog sees."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories import BrandFactory, CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    """food > dairy > cheese, and a separate root: toys."""
    food = CategoryFactory(name="Food", slug="food")
    dairy = CategoryFactory(name="Dairy", slug="dairy", parent=food)
    cheese = CategoryFactory(name="Cheese", slug="cheese", parent=dairy)
    toys = CategoryFactory(name="Toys", slug="toys")
    return {"food": food, "dairy": dairy, "cheese": cheese, "toys": toys}


def names(resp) -> set[str]:
    return {p["name"] for p in resp.json()["results"]}


def test_product_list_is_paginated(client):
    ProductFactory.create_batch(30)

    first = client.get("/api/products", {"page_size": 10, "ordering": "name"})
    last = client.get("/api/products", {"page_size": 10, "ordering": "name", "page": 3})

    assert first.status_code == 200
    body = first.json()
    assert body["count"] == 30
    assert len(body["results"]) == 10
    assert body["next"] and body["previous"] is None
    assert last.json()["next"] is None
    assert not names(first) & names(last)


def test_product_card_fields(client):
    brand = BrandFactory(name="Acme", slug="acme")
    product = ProductFactory(name="Blue Cheese", price=Decimal("4.50"), stock=0, brand=brand)

    item = client.get("/api/products").json()["results"][0]

    assert item["id"] == product.pk
    assert item["name"] == "Blue Cheese"
    assert item["price"] == "4.50"
    assert item["in_stock"] is False
    assert item["brand"] == {"id": brand.pk, "name": "Acme", "slug": "acme"}
    assert item["category"]["slug"] == product.category.slug
    assert item["url"] == product.get_absolute_url()
    assert client.get(item["url"]).status_code == 200
    assert client.get(item["image_url"]).status_code == 200


def test_inactive_products_are_hidden(client):
    ProductFactory(name="Visible")
    hidden = ProductFactory(name="Hidden", is_active=False)

    assert names(client.get("/api/products")) == {"Visible"}
    assert client.get(f"/api/products/{hidden.pk}").status_code == 404


def test_category_filter_includes_descendants(client, tree):
    ProductFactory(name="Gouda", category=tree["cheese"])
    ProductFactory(name="Milk", category=tree["dairy"])
    ProductFactory(name="Bread", category=tree["food"])
    ProductFactory(name="Robot", category=tree["toys"])

    assert names(client.get("/api/products", {"category": "food"})) == {"Gouda", "Milk", "Bread"}
    assert names(client.get("/api/products", {"category": "dairy"})) == {"Gouda", "Milk"}
    assert names(client.get("/api/products", {"category": "cheese"})) == {"Gouda"}


def test_unknown_category_or_brand_is_400_naming_the_parameter(client):
    resp = client.get("/api/products", {"category": "no-such-thing"})
    assert resp.status_code == 400
    assert resp.json() == {"category": ['Unknown category "no-such-thing".']}

    resp = client.get("/api/products", {"brand": "nobody"})
    assert resp.status_code == 400
    assert list(resp.json()) == ["brand"]


def test_brand_price_and_stock_filters(client):
    acme = BrandFactory(slug="acme")
    ProductFactory(name="Cheap Acme", brand=acme, price=Decimal("2.00"), stock=5)
    ProductFactory(name="Dear Acme", brand=acme, price=Decimal("50.00"), stock=0)
    ProductFactory(name="Other", price=Decimal("10.00"), stock=3)

    assert names(client.get("/api/products", {"brand": "acme"})) == {"Cheap Acme", "Dear Acme"}
    assert names(client.get("/api/products", {"min_price": "5", "max_price": "20"})) == {"Other"}
    assert names(client.get("/api/products", {"min_price": "10.00"})) == {"Dear Acme", "Other"}
    assert names(client.get("/api/products", {"in_stock": "true"})) == {"Cheap Acme", "Other"}
    assert names(client.get("/api/products", {"in_stock": "false"})) == {"Dear Acme"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_price": "cheap"}, "min_price"),
        ({"min_price": "-1"}, "min_price"),
        ({"min_price": "20", "max_price": "10"}, "max_price"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"ordering": "random"}, "ordering"),
    ],
)
def test_bad_parameter_is_400_naming_it(client, params, field):
    resp = client.get("/api/products", params)

    assert resp.status_code == 400
    assert list(resp.json()) == [field]


def test_search_matches_every_word(client):
    ProductFactory(name="Organic Green Tea")
    ProductFactory(name="Green Apple")
    ProductFactory(name="Black Tea")

    assert names(client.get("/api/products", {"q": "green tea"})) == {"Organic Green Tea"}
    assert names(client.get("/api/products", {"q": "tea"})) == {"Organic Green Tea", "Black Tea"}
    assert len(names(client.get("/api/products", {"q": "  "}))) == 3


def test_ordering_by_price(client):
    for price in ("5.00", "1.00", "3.00"):
        ProductFactory(price=Decimal(price))

    asc = [p["price"] for p in client.get("/api/products", {"ordering": "price_asc"}).json()["results"]]
    desc = [p["price"] for p in client.get("/api/products", {"ordering": "price_desc"}).json()["results"]]

    assert asc == ["1.00", "3.00", "5.00"]
    assert desc == ["5.00", "3.00", "1.00"]


def test_product_list_queries_do_not_grow_with_the_page(client, django_assert_max_num_queries, tree):
    ProductFactory.create_batch(40, category=tree["cheese"])
    client.get("/api/products", {"category": "food"})  # warm the category tree cache

    with django_assert_max_num_queries(3):
        resp = client.get("/api/products", {"category": "food", "page_size": 40})

    assert len(resp.json()["results"]) == 40


def test_product_detail_has_description_and_breadcrumbs(client, tree):
    product = ProductFactory(name="Gouda", description="Aged six months.", category=tree["cheese"])

    resp = client.get(f"/api/products/{product.pk}")

    assert resp.status_code == 200
    body = resp.json()
    assert body["description"] == "Aged six months."
    assert [c["slug"] for c in body["breadcrumbs"]] == ["food", "dairy", "cheese"]


def test_unknown_product_is_404(client):
    resp = client.get("/api/products/999999")

    assert resp.status_code == 404
    assert "detail" in resp.json()


def test_category_list_is_the_tree(client, tree):
    resp = client.get("/api/categories")

    assert resp.status_code == 200
    rows = {c["slug"]: c for c in resp.json()}
    assert set(rows) == {"food", "dairy", "cheese", "toys"}
    assert rows["food"]["parent"] is None and rows["food"]["depth"] == 0
    assert rows["dairy"]["parent"] == tree["food"].pk and rows["dairy"]["depth"] == 1
    assert rows["cheese"]["parent"] == tree["dairy"].pk and rows["cheese"]["depth"] == 2
    assert set(rows["cheese"]) >= {"id", "name", "slug", "parent", "depth", "url"}
    depths = [c["depth"] for c in resp.json()]
    assert depths == sorted(depths)  # parents come before their children


def test_category_list_children_of_a_parent(client, tree):
    resp = client.get("/api/categories", {"parent": "food"})

    assert [c["slug"] for c in resp.json()] == ["dairy"]
    assert client.get("/api/categories", {"parent": "nope"}).status_code == 400


def test_category_detail(client, tree):
    resp = client.get("/api/categories/dairy")

    assert resp.status_code == 200
    body = resp.json()
    assert body["name"] == "Dairy"
    assert [c["slug"] for c in body["ancestors"]] == ["food"]
    assert [c["slug"] for c in body["children"]] == ["cheese"]
    assert client.get("/api/categories/nope").status_code == 404


def test_category_created_after_the_tree_was_cached_is_found(client, tree):
    client.get("/api/categories")  # caches the tree
    CategoryFactory(name="Lego", slug="lego", parent=tree["toys"])

    assert client.get("/api/categories/lego").status_code == 200
    assert client.get("/api/products", {"category": "lego"}).status_code == 200


def test_category_list_is_serialised_once_per_tree_and_follows_a_rebuilt_tree(client, tree, monkeypatch):
    from django.urls import set_script_prefix
    from rest_framework import serializers as drf

    from shop.catalog.selectors import category_tree_get

    calls = []
    real = drf.ListSerializer.to_representation
    monkeypatch.setattr(drf.ListSerializer, "to_representation", lambda self, data: calls.append(1) or real(self, data))
    first = client.get("/api/categories").json()
    assert client.get("/api/categories").json() == first and len(calls) == 1  # the second from the tree's memo
    assert [c["slug"] for c in client.get("/api/categories", {"parent": "food"}).json()] == ["dairy"]
    assert len(calls) == 2  # each parent its own entry
    # a script prefix (an app served under a path) is part of the key: the nodes' URLs carry it
    set_script_prefix("/shop/")  # what WSGIHandler sets from SCRIPT_NAME (the test client does not)
    try:
        prefixed = client.get("/api/categories").json()
    finally:
        set_script_prefix("/")
    assert len(calls) == 3 and {c["url"] for c in prefixed} == {"/shop" + c["url"] for c in first}
    CategoryFactory(name="Lego", slug="lego", parent=tree["toys"])
    category_tree_get(refresh=True)  # a save does not rebuild the tree: its stamp's expiry or a missed slug does
    assert "lego" in {c["slug"] for c in client.get("/api/categories").json()} and len(calls) == 4

"""Search on PostgreSQL: full-text prefix matching on an index, ranking, and suggestions as you type."""

from __future__ import annotations

import re

import pytest
from django.db import connection

from shop.catalog.models import Product
from shop.catalog.search import prefix_query, product_document
from shop.catalog.selectors import product_search
from tests.factories import BrandFactory, CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


def result_ids(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'data-product-id="(\d+)" data-placement="search.results"', html)]


@pytest.fixture
def catalog():
    snacks = CategoryFactory(name="Snacks", slug="snacks")
    teas = CategoryFactory(name="Herbal Teas", slug="herbal-teas")
    acme = BrandFactory(name="Acme Foods")
    return {
        "bar": ProductFactory(name="Dark Chocolate Bar", category=snacks, brand=acme, description="Rich cocoa."),
        "cookie": ProductFactory(name="Oat Cookies", category=snacks, description="Baked with chocolate chips."),
        "mint": ProductFactory(name="Peppermint Infusion", category=teas, description="Caffeine free."),
        "gone": ProductFactory(name="Chocolate Spread", category=snacks, is_active=False),
    }


def test_words_match_by_prefix_and_all_must_match(client, catalog):
    assert result_ids(client.get("/search/?q=choc").content.decode()) == [catalog["bar"].pk, catalog["cookie"].pk]
    assert result_ids(client.get("/search/?q=choc oat").content.decode()) == [catalog["cookie"].pk]
    assert result_ids(client.get("/search/?q=acme").content.decode()) == [catalog["bar"].pk]  # brand
    assert result_ids(client.get("/search/?q=herbal").content.decode()) == [catalog["mint"].pk]  # category


def test_query_syntax_never_reaches_postgres_unescaped(client, catalog):
    for q in ["choc:*", "!choc", "choc & | (", "'\"", "a_b", "🙂"]:
        response = client.get("/search/", {"q": q})
        assert response.status_code == 200, q
    assert result_ids(client.get("/search/", {"q": "choc)!"}).content.decode()) == [
        catalog["bar"].pk,
        catalog["cookie"].pk,
    ]


def _plan(qs) -> str:
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # a tiny table would otherwise be scanned anyway
        sql, params = qs.query.sql_with_params()
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def test_the_text_filter_is_served_by_the_gin_index(catalog):
    if connection.vendor != "postgresql":
        pytest.skip("full-text index is PostgreSQL only")
    # the filter search applies, on its own: its expression must be the index's, or the index is dead
    qs = Product.objects.alias(document=product_document()).filter(document=prefix_query("chocolate"))
    assert "product_search_ranked_idx" in _plan(qs)
    assert {p.pk for p in qs} == {catalog["bar"].pk, catalog["cookie"].pk, catalog["gone"].pk}


def test_a_search_never_parses_a_product_text_again(catalog):
    """Matching and ranking read the stored document: a candidate the index returns is rechecked, and a
    second word is a filter on each candidate row, both on the stored vector. On an expression index
    each of those parsed the row's name and description again (50,000 products, two common words that
    never meet: 38.6 ms against 3.8)."""
    if connection.vendor != "postgresql":
        pytest.skip("full-text index is PostgreSQL only")
    plan = _plan(product_search(query="chocolate chips"))
    assert "search_ranked" in plan
    assert "to_tsvector" not in plan, plan
    assert [p.pk for p in product_search(query="chocolate chips")] == [catalog["cookie"].pk]


def test_the_stored_ranked_document_follows_every_write(client, catalog):
    """Ranking reads the document PostgreSQL stores (migration 0004); it must be the weighted text of
    the row as it is now, whichever way the row was written."""
    if connection.vendor != "postgresql":
        pytest.skip("the stored document is PostgreSQL only")
    expected = (
        "setweight(to_tsvector('simple', COALESCE(name, '')), 'A') || "
        "setweight(to_tsvector('simple', COALESCE(description, '')), 'D')"
    )
    Product.objects.filter(pk=catalog["mint"].pk).update(description="Chocolate mint, caffeine free.")
    Product.objects.bulk_create(
        [ProductFactory.build(name="Chocolate Chocolate", category=catalog["bar"].category, brand=catalog["bar"].brand)]
    )
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*), count(*) FILTER (WHERE search_ranked = {expected}) FROM catalog_product")
        total, same = cur.fetchone()
    assert total == same == 5
    # name matches first, then the two description matches (the updated one included)
    ids = result_ids(client.get("/search/?q=chocolate").content.decode())
    double = Product.objects.get(name="Chocolate Chocolate").pk
    assert ids[:2] == [double, catalog["bar"].pk]
    assert set(ids[2:]) == {catalog["cookie"].pk, catalog["mint"].pk}


def test_suggestions_offer_categories_then_active_products(client, catalog):
    response = client.get("/search/suggest/", {"q": "sna"})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "sna"
    assert body["suggestions"][0] == {"label": "Snacks", "kind": "category", "url": "/c/snacks/"}

    products = client.get("/search/suggest/", {"q": "choc"}).json()["suggestions"]
    assert [s["label"] for s in products] == ["Dark Chocolate Bar", "Oat Cookies"]  # never the inactive one
    assert products[0]["url"] == catalog["bar"].get_absolute_url()
    assert "private" in response["Cache-Control"]


def test_suggestions_refuse_bad_input_by_field_and_ignore_one_letter(client, catalog):
    too_long = client.get("/search/suggest/", {"q": "x" * 201})
    assert too_long.status_code == 400
    assert "q" in too_long.json()["errors"]
    assert client.get("/search/suggest/", {"q": "c"}).json()["suggestions"] == []
    assert client.get("/search/suggest/").json()["suggestions"] == []
    assert client.post("/search/suggest/", {"q": "choc"}).status_code == 405


def test_search_box_carries_the_suggestion_hooks(client, catalog):
    html = client.get("/").content.decode()
    assert 'list="search-suggestions"' in html and 'data-suggest-url="/search/suggest/"' in html
    assert "js/suggest.js" in html


def test_a_shared_search_list_is_not_rebuilt_per_page(client, monkeypatch):
    """Reading a ranked search's list costs about as much as the rest of its page: a page served from the
    shared list reads none (only a miss or a page past the shared head does)."""
    from shop.catalog import selectors

    ProductFactory.create_batch(3, name="Oolong Tea")
    built = []
    real = selectors.SearchIds._read_head

    def counting(self):
        built.append(self._query)
        return real(self)

    monkeypatch.setattr(selectors.SearchIds, "_read_head", counting)
    first = client.get("/search/?q=oolong")
    again = client.get("/search/?q=Oolong")  # the same words: the same shared list
    assert first.status_code == again.status_code == 200
    assert built == ["oolong"]
    assert again.content.decode().count('data-placement="search.results"') == 3


@pytest.fixture
def ranked_catalog():
    """Products whose words, brands, categories, prices, ages and popularity tie and differ, so every
    sort and every relevance bonus decides some order."""
    import datetime as dt

    from django.utils import timezone

    snacks, teas = CategoryFactory(name="Snacks"), CategoryFactory(name="Green Teas")
    acme, navy = BrandFactory(name="Acme Foods"), BrandFactory(name="Navy 100% Co_op")
    now = timezone.now()
    rows = [
        ("Green Tea", teas, acme, "Loose leaf.", "4.00", 2.0),
        ("Green Tea Bags", teas, None, "Twenty bags of green tea.", "4.00", None),
        ("Tea Green Blend", teas, navy, "Green and black.", "6.50", 1.0),
        ("Chocolate Bar", snacks, acme, "Dark, with green mint.", "2.00", 2.0),
        ("Navy Beans", snacks, navy, "Tinned.", "1.20", None),
        ("Green Navy Mix", snacks, None, "Beans and peas.", "3.00", 0.5),
        ("Oat Cookies", snacks, navy, "100% oats_and honey.", "2.00", 3.0),
        ("Green Tea", snacks, None, "The same name elsewhere.", "4.00", 2.0),
    ]
    out = []
    for i, (name, category, brand, description, price, popularity) in enumerate(rows):
        p = ProductFactory(name=name, category=category, brand=brand, description=description, price=price)
        Product.objects.filter(pk=p.pk).update(popularity=popularity, created_at=now - dt.timedelta(days=i % 3))
        out.append(p)
    ProductFactory(name="Green Tea Retired", category=teas, is_active=False)
    return out


SEARCHES = [
    "green",
    "green tea",
    "tea green",
    "navy",
    "acme",
    "snacks",
    "green navy",
    "100%",
    "co_op",
    "oat",
    "choc)!",
    "gr",
    "-",
    "green -",
    "zzz",
    "Green TEA bags",
    "teas navy",
]


def test_a_search_list_read_by_its_statement_is_the_querysets(ranked_catalog):
    """The fixed statement a search page reads its ids with (one per shape, no ORM) answers what
    ``product_search``'s queryset does: the same products, the same order under every sort, the same
    total, the same page past the head."""
    if connection.vendor != "postgresql":
        pytest.skip("the search statement is PostgreSQL only (SQLite reads the queryset)")
    from shop.catalog.search import search_ids, search_terms_resolved
    from shop.catalog.selectors import SEARCH_SORTS, category_tree_get, search_terms

    names = {node.id: node.name.lower() for node in category_tree_get().nodes.values()}
    compared = 0
    for query in SEARCHES:
        terms = search_terms_resolved(search_terms(query), category_names=names)
        for sort in SEARCH_SORTS:
            orm = product_search(query=query, sort=sort)
            rows = search_ids(terms, sort=sort, offset=0, limit=50, count=True) if terms else []
            assert [r[0] for r in rows] == list(orm.values_list("pk", flat=True)), (query, sort)
            assert (rows[0][1] if rows else 0) == orm.count(), (query, sort)
            if terms:
                page = search_ids(terms, sort=sort, offset=1, limit=2)
                assert [r[0] for r in page] == list(orm.values_list("pk", flat=True)[1:3]), (query, sort)
            compared += len(rows)
    assert compared > 100  # the searches found things to order


def test_a_search_page_builds_no_queryset_and_one_statement_per_shape(client, ranked_catalog, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the search statement is PostgreSQL only (SQLite reads the queryset)")
    from shop.catalog import search, selectors

    def refused(**kwargs):
        raise AssertionError("a search page built the ranked queryset")

    monkeypatch.setattr(selectors, "product_search", refused)
    monkeypatch.setattr(selectors, "LIST_CACHED_IDS", 2)  # so page 2 of 1-per-page reads past the head
    monkeypatch.setattr("shop.catalog.views.PER_PAGE", 1)
    search._ids_sql.cache_clear()
    assert len(result_ids(client.get("/search/?q=green").content.decode())) == 1
    assert len(result_ids(client.get("/search/?q=green&page=3").content.decode())) == 1
    compiled = search._ids_sql.cache_info().misses
    client.get("/search/?q=tea")  # another word of the same shape (text, a category name): the same statement
    assert search._ids_sql.cache_info().misses == compiled

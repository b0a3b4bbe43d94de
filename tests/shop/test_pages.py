"""Storefront pages as a shopper sees them: content, paging, sorting, search, rails, view events."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from shop.catalog.popularity import COMMIT_LAG, popularity_refresh
from shop.catalog.rails import PLACEMENTS, Candidates, Placement, RailContext, RailRequest, no_ids, rails_fill
from shop.catalog.selectors import LIST_CACHED_IDS
from shop.events.middleware import visitor_id_from_cookie
from shop.events.models import Event, EventType
from tests.factories import BrandFactory, CategoryFactory, EventFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    pantry = CategoryFactory(name="Pantry", slug="pantry")
    coffee = CategoryFactory(name="Coffee & Tea", slug="coffee-tea", parent=pantry)
    ground = CategoryFactory(name="Ground Coffee", slug="ground-coffee", parent=coffee)
    home = CategoryFactory(name="Home", slug="home-goods")
    return {"pantry": pantry, "coffee": coffee, "ground": ground, "home": home}


@pytest.fixture
def without_personal_rails(monkeypatch):
    """Personalised rails off: with no model they fall back to the popular list and, coming first on
    the page, would take the products the rails under test show."""
    for name in ("home.recommended", "home.trending", "product.recommended", "cart.recommended"):
        monkeypatch.setitem(PLACEMENTS, name, Placement(name, PLACEMENTS[name].title, no_ids))


def card_ids(html: str, placement: str) -> list[int]:
    """Product ids of the cards of one placement, in page order."""
    pattern = rf'data-product-id="(\d+)" data-placement="{re.escape(placement)}"'
    return [int(m) for m in re.findall(pattern, html)]


def card_positions(html: str, placement: str) -> list[int]:
    pattern = rf'data-placement="{re.escape(placement)}" data-position="(\d+)"'
    return [int(m) for m in re.findall(pattern, html)]


def scores_refresh() -> None:
    """What beat does every few minutes: fold the new events into the decayed popularity scores."""
    popularity_refresh(now=timezone.now() + COMMIT_LAG + timedelta(seconds=1))


def page_view_id(html: str) -> str:
    return re.search(r'<body data-page-view-id="([0-9a-f-]{36})"', html).group(1)


# ---------- home ----------


def test_home_shows_popular_and_new_arrival_rails(client, without_personal_rails):
    now = timezone.now()
    old_hit = ProductFactory(name="Stoneground Oat Flour", created_at=now - timedelta(days=30))
    newest = ProductFactory(name="Cold Brew Concentrate", created_at=now)
    ProductFactory.create_batch(20, created_at=now - timedelta(days=60))
    EventFactory.create_batch(3, product=old_hit, type=EventType.PURCHASE)
    scores_refresh()

    response = client.get("/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "Popular right now" in html and "New arrivals" in html
    assert card_ids(html, "home.popular")[0] == old_hit.pk
    # popular tops up with the newest; a product appears in one rail per page
    assert newest.pk in card_ids(html, "home.popular")
    assert newest.pk not in card_ids(html, "home.new_arrivals")
    assert len(card_ids(html, "home.new_arrivals")) == 8
    assert card_positions(html, "home.popular")[:2] == [0, 1]
    assert f"/products/{old_hit.pk}/{old_hit.slug}/?from=home.popular&amp;pos=0" in html
    uuid.UUID(page_view_id(html))
    assert 'src="/static/js/beacon.js" defer' in html


def test_each_render_gets_a_new_page_view_id(client):
    a = page_view_id(client.get("/").content.decode())
    b = page_view_id(client.get("/").content.decode())
    assert a != b


def test_home_query_count_is_bounded(client, django_assert_max_num_queries):
    ProductFactory.create_batch(12)
    EventFactory.create_batch(4, type=EventType.ADD_TO_CART)
    # cold caches, worst case over the arms (the visitor id, hence its arm, is random): the cart, the
    # running experiment (3, once per process and TTL), the batch list and the visitor's user (arms that
    # rank by a model), popular, new arrivals, trending, the rails' impressions, products
    with django_assert_max_num_queries(12):
        client.get("/")
    # warm, worst case over the arms: the cart, the batch list and the visitor's user (arms that rank by a
    # model), the rails' impressions, products of the rails
    with django_assert_max_num_queries(5):
        client.get("/")


# ---------- category ----------


def test_category_lists_products_of_all_descendants(client, tree):
    deep = ProductFactory(name="Dark Roast Ground Coffee", category=tree["ground"])
    mid = ProductFactory(name="Earl Grey Tea Bags", category=tree["coffee"])
    elsewhere = ProductFactory(name="Linen Tea Towel", category=tree["home"])

    html = client.get(reverse("catalog:category", kwargs={"slug": "pantry"})).content.decode()

    grid = card_ids(html, "category.grid")
    assert set(grid) == {deep.pk, mid.pk}
    assert elsewhere.pk not in grid
    assert "2 products" in html
    assert 'href="/c/coffee-tea/"' in html  # sub-category link


def test_category_breadcrumb_walks_up_the_tree(client, tree):
    ProductFactory(category=tree["ground"])
    html = client.get("/c/ground-coffee/").content.decode()
    crumbs = html.split('class="breadcrumb"')[1].split("</nav>")[0]
    assert crumbs.index("Pantry") < crumbs.index("Coffee &amp; Tea") < crumbs.index("Ground Coffee")


def test_unknown_category_is_404(client):
    assert client.get("/c/no-such-thing/").status_code == 404


def test_category_pages_by_24(client, tree):
    ProductFactory.create_batch(30, category=tree["ground"])

    first = client.get("/c/pantry/").content.decode()
    second = client.get("/c/pantry/?page=2").content.decode()

    assert len(card_ids(first, "category.grid")) == 24
    assert card_positions(second, "category.grid") == list(range(24, 30))
    assert not set(card_ids(first, "category.grid")) & set(card_ids(second, "category.grid"))
    assert "Showing 25–30 of 30" in second
    assert 'rel="next"' in first and 'rel="prev"' in second


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price_asc", ["Basil", "Cumin", "Anise"]),
        ("price_desc", ["Anise", "Cumin", "Basil"]),
        ("name", ["Anise", "Basil", "Cumin"]),
        ("newest", ["Cumin", "Basil", "Anise"]),
        ("popular", ["Basil", "Anise", "Cumin"]),
    ],
)
def test_category_sorting(client, tree, sort, expected):
    now = timezone.now()
    spices = {
        "Anise": ProductFactory(
            name="Anise", price=Decimal("9.00"), category=tree["coffee"], created_at=now - timedelta(days=3)
        ),
        "Basil": ProductFactory(
            name="Basil", price=Decimal("2.50"), category=tree["coffee"], created_at=now - timedelta(days=2)
        ),
        "Cumin": ProductFactory(
            name="Cumin", price=Decimal("4.75"), category=tree["coffee"], created_at=now - timedelta(days=1)
        ),
    }
    EventFactory.create_batch(2, product=spices["Basil"], type=EventType.PURCHASE)
    EventFactory(product=spices["Anise"], type=EventType.ADD_TO_CART)
    EventFactory.create_batch(5, product=spices["Cumin"], type=EventType.VIEW)  # views are not "popular"
    scores_refresh()

    html = client.get(f"/c/coffee-tea/?sort={sort}").content.decode()

    by_id = {p.pk: name for name, p in spices.items()}
    assert [by_id[i] for i in card_ids(html, "category.grid")] == expected
    assert f'<option value="{sort}" selected>' in html


def test_category_has_popular_rail_from_descendants(client, tree):
    hit = ProductFactory(name="Single Origin Beans", category=tree["ground"])
    ProductFactory.create_batch(3, category=tree["coffee"])
    EventFactory.create_batch(2, product=hit, type=EventType.ADD_TO_CART)
    scores_refresh()

    html = client.get("/c/pantry/").content.decode()

    assert "Popular in Pantry" in html
    assert card_ids(html, "category.popular")[0] == hit.pk


# ---------- search ----------


def test_search_finds_by_name_brand_and_category(client, tree):
    roaster = BrandFactory(name="Bramble Roasters")
    espresso = ProductFactory(name="Espresso Blend", brand=roaster, category=tree["ground"])
    towel = ProductFactory(name="Waffle Towel", category=tree["home"], description="Soft cotton.")

    by_name = client.get("/search/?q=espresso").content.decode()
    by_brand = client.get("/search/?q=bramble").content.decode()
    by_category = client.get("/search/?q=ground coffee").content.decode()
    by_two_words = client.get("/search/?q=bramble towel").content.decode()

    assert card_ids(by_name, "search.results") == [espresso.pk]
    assert card_ids(by_brand, "search.results") == [espresso.pk]
    assert card_ids(by_category, "search.results") == [espresso.pk]
    assert card_ids(by_two_words, "search.results") == []  # every word must match
    assert towel.pk not in card_ids(by_name, "search.results")


def test_search_ranks_name_matches_first_and_pages(client, tree):
    in_description = ProductFactory(name="Travel Mug", description="Keeps your latte hot.", category=tree["home"])
    in_name = ProductFactory(name="Latte Cups", category=tree["home"])
    ProductFactory.create_batch(25, name="Oat Latte Mix", category=tree["coffee"])

    html = client.get("/search/?q=latte").content.decode()
    last = client.get("/search/?q=latte&page=2").content.decode()

    assert "27 products found" in html
    assert card_ids(html, "search.results")[0] == in_name.pk
    assert card_ids(last, "search.results")[-1] == in_description.pk


def test_search_without_results_says_so_and_offers_popular(client):
    ProductFactory.create_batch(3)
    html = client.get("/search/?q=zzzqqq").content.decode()
    assert "No products match" in html
    assert card_ids(html, "search.popular")


# ---------- product page ----------


def test_product_page_shows_everything_a_shopper_needs(client, tree, without_personal_rails):
    brand = BrandFactory(name="Hollow Oak")
    product = ProductFactory(
        name="Kenyan AA Whole Bean",
        brand=brand,
        category=tree["ground"],
        price=Decimal("14.50"),
        stock=3,
        description="Bright and juicy with blackcurrant notes.",
    )
    sibling, _ = ProductFactory.create_batch(2, category=tree["ground"])

    html = client.get(product.get_absolute_url()).content.decode()

    assert "Kenyan AA Whole Bean" in html and "Hollow Oak" in html
    assert "$14.50" in html
    assert "Only 3 left" in html
    assert "blackcurrant" in html
    assert 'action="/cart/add/"' in html and 'name="nonce"' in html and 'name="quantity"' in html
    crumbs = html.split('class="breadcrumb"')[1].split("</nav>")[0]
    assert "Pantry" in crumbs and "Ground Coffee" in crumbs
    assert "More from Ground Coffee" in html
    assert sibling.pk in card_ids(html, "product.more_from_category")
    assert product.pk not in card_ids(html, "product.more_from_category")


def test_a_product_without_a_brand_shows_no_brand_on_its_page_or_card(client, tree):
    product = ProductFactory(name="Plain Jar", brand=None, category=tree["ground"])
    branded = ProductFactory(name="Branded Jar", brand=BrandFactory(name="Hollow Oak"), category=tree["ground"])
    ProductFactory(category=tree["ground"])  # a rail shows two cards at least

    html = client.get(product.get_absolute_url()).content.decode()
    assert "<title>Plain Jar — Larkspur Market</title>" in html
    assert 'class="product-brand"' not in html and "<dt>Brand</dt>" not in html
    assert '<dt>Category</dt><dd><a href="/c/ground-coffee/">Ground Coffee</a></dd>' in html
    card = html.split(f'data-product-id="{branded.pk}"')[1].split("</article>")[0]
    assert '<p class="card-brand">Hollow Oak</p>' in card

    html = client.get(branded.get_absolute_url()).content.decode()
    assert "<title>Branded Jar by Hollow Oak — Larkspur Market</title>" in html
    card = html.split(f'data-product-id="{product.pk}"')[1].split("</article>")[0]
    assert "Plain Jar" in card and "card-brand" not in card


def test_a_product_page_escapes_what_the_merchant_typed(client, tree):
    product = ProductFactory(
        name='Tom & Jerry\'s <b>"Jar"</b>', brand=BrandFactory(name="A<B>"), category=tree["ground"], description=""
    )
    html = client.get(product.get_absolute_url()).content.decode()
    assert (
        "<title>Tom &amp; Jerry&#x27;s &lt;b&gt;&quot;Jar&quot;&lt;/b&gt; by A&lt;B&gt; — Larkspur Market</title>"
        in html
    )
    assert '<h1 class="product-title">Tom &amp; Jerry&#x27;s &lt;b&gt;&quot;Jar&quot;&lt;/b&gt;</h1>' in html
    assert '<p class="product-brand">A&lt;B&gt;</p>' in html
    assert "<b>" not in html and "About this product" not in html

    product.description = "First line.\n\n<i>Second</i> & last."
    product.save()
    html = client.get(product.get_absolute_url()).content.decode()
    assert "<p>First line.</p>\n\n<p>&lt;i&gt;Second&lt;/i&gt; &amp; last.</p>" in html
    assert '<meta name="description" content="First line.\n\n&lt;i&gt;Second&lt;/i&gt; &amp; last.">' in html


def test_out_of_stock_product_cannot_be_added(client):
    product = ProductFactory(stock=0)
    html = client.get(product.get_absolute_url()).content.decode()
    assert "Out of stock" in html
    assert 'action="/cart/add/"' not in html


def test_product_page_redirects_to_canonical_slug_keeping_attribution(client):
    product = ProductFactory(name="Fig Jam")
    response = client.get(f"/products/{product.pk}/wrong-slug/?from=home.popular&pos=2")
    assert response.status_code == 302
    assert response["Location"] == f"/products/{product.pk}/fig-jam/?from=home.popular&pos=2"


def test_inactive_product_is_404(client):
    product = ProductFactory(is_active=False)
    assert client.get(product.get_absolute_url()).status_code == 404


def test_product_view_is_logged_with_page_view_id_and_placement(client):
    product = ProductFactory()

    response = client.get(product.get_absolute_url() + "?from=home.new_arrivals&pos=3")

    view = Event.objects.get(type=EventType.VIEW)
    html = response.content.decode()
    assert view.product_id == product.pk
    assert str(view.page_view_id) == page_view_id(html)
    assert view.idempotency_key == f"view:{view.page_view_id}"
    assert (view.placement, view.position) == ("home.new_arrivals", 3)
    assert view.visitor_id == visitor_id_from_cookie(client.cookies["vid"].value)
    # the add-to-cart form carries the attribution on
    assert 'name="placement" value="home.new_arrivals"' in html


def test_direct_product_view_has_placement_direct(client):
    product = ProductFactory()
    client.get(product.get_absolute_url())
    client.get(product.get_absolute_url() + "?from=<script>&pos=x")
    assert list(Event.objects.values_list("placement", "position")) == [("direct", None), ("direct", None)]


def test_product_page_query_count_is_bounded(client, tree, django_assert_max_num_queries):
    product = ProductFactory(category=tree["ground"])
    ProductFactory.create_batch(10, category=tree["ground"])
    ProductFactory.create_batch(5, category=tree["home"])
    EventFactory.create_batch(3, type=EventType.PURCHASE, product__category=tree["coffee"])

    # first page of a new visitor, cold caches: product, tree, view event (creates the visitor:
    # 8 with savepoints), rail sources (4) + one query for all rail products, nav, cart count
    with django_assert_max_num_queries(17):
        client.get(product.get_absolute_url())
    # warm: product, view event (5), rail products, cart count; independent of rail or catalog size
    with django_assert_max_num_queries(8):
        client.get(product.get_absolute_url())


def test_rails_load_every_product_in_one_query(tree, django_assert_num_queries):
    products = ProductFactory.create_batch(6, category=tree["ground"])
    context = RailContext(product_id=products[0].pk)
    rails_fill(requests=["home.popular", "home.new_arrivals"], context=context)  # warm the id caches

    with django_assert_num_queries(1):
        rails = rails_fill(requests=[RailRequest("home.popular"), RailRequest("home.new_arrivals")], context=context)
        names = [p.category.name for rail in rails for p in rail.products] + [
            p.brand.name for rail in rails for p in rail.products
        ]

    shown = [p.pk for rail in rails for p in rail.products]
    assert len(shown) == len(set(shown)) == 5  # no duplicates across rails, current product excluded
    assert names


def _card(html: str, pk: int, placement: str) -> str:
    m = re.search(
        rf'<article class="card" data-product-id="{pk}" data-placement="{re.escape(placement)}".*?</article>', html
    )
    assert m, f"no card for product {pk} in {placement}"
    return m.group(0)


def test_an_edited_product_shows_its_new_card_on_the_next_page(client, tree):
    product = ProductFactory(category=tree["ground"], name="Kettle Chips", price=Decimal("4.00"), stock=50)
    ProductFactory.create_batch(3, category=tree["ground"])
    first = _card(client.get("/c/ground-coffee/").content.decode(), product.pk, "category.grid")
    assert "$4.00" in first and "In stock" in first and "Kettle Chips" in first

    product.price, product.stock, product.name = Decimal("5.50"), 2, "Kettle Chips <Sea Salt>"
    product.save()  # held cards are dropped in every process (catalog.cards version stamp)

    again = _card(client.get("/c/ground-coffee/").content.decode(), product.pk, "category.grid")
    assert "$5.50" in again and "Only 2 left" in again
    assert "Kettle Chips &lt;Sea Salt&gt;" in again and "<Sea Salt>" not in again


def test_popular_rail_falls_back_to_newest_without_events(tree):
    now = timezone.now()
    older = ProductFactory(category=tree["coffee"], created_at=now - timedelta(days=5))
    newer = ProductFactory(category=tree["ground"], created_at=now)
    ProductFactory(category=tree["home"], created_at=now)
    sold_out = ProductFactory(category=tree["ground"], created_at=now, stock=0)

    from shop.catalog.selectors import category_tree_get

    t = category_tree_get()
    ctx = RailContext(tree=t, category_id=tree["pantry"].pk, category_name="Pantry")
    (rail,) = rails_fill(requests=["category.popular"], context=ctx)

    assert [p.pk for p in rail.products] == [newer.pk, older.pk]
    assert sold_out not in rail.products
    assert rail.title == "Popular in Pantry"


def test_a_placement_source_can_be_swapped_and_tags_its_arm(client, monkeypatch, without_personal_rails):
    a, b, c = ProductFactory.create_batch(3)
    ProductFactory.create_batch(10)

    def picked(context):
        return Candidates(ids=[c.pk, a.pk], arm="dlrm", model_version="v3")

    monkeypatch.setitem(PLACEMENTS, "home.popular", Placement("home.popular", "Picked for you", picked))
    html = client.get("/").content.decode()

    assert "Picked for you" in html
    assert card_ids(html, "home.popular") == [c.pk, a.pk]
    assert (
        f'data-product-id="{c.pk}" data-placement="home.popular" data-position="0" data-arm="dlrm" data-model-version="v3"'
        in html
    )


def test_cards_escape_names_and_flag_sold_out_products(client, tree):
    ProductFactory(name="<script>alert(1)</script> Tea", category=tree["coffee"], stock=0)
    html = client.get("/c/coffee-tea/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tea" in html
    assert "Sold out" in html


# ---------- product image ----------


def test_product_image_is_a_cacheable_svg(client):
    product = ProductFactory(name="Sea Salt Crackers")

    response = client.get(f"/products/{product.pk}/image.svg")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.lstrip().startswith(b"<svg") or b"<svg" in response.content[:200]
    assert "max-age=" in response["Cache-Control"]
    etag = response["ETag"]
    again = client.get(f"/products/{product.pk}/image.svg", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    bigger = client.get(f"/products/{product.pk}/image.svg?s=800")
    assert bigger["ETag"] != etag


def test_image_of_unknown_product_is_404(client):
    assert client.get("/products/999999/image.svg").status_code == 404


# ---------- queries per page type (warm caches: what a returning shopper costs) ----------


def test_category_page_queries_do_not_grow_with_the_catalog_or_the_log(client, tree, django_assert_num_queries):
    ProductFactory.create_batch(30, category=tree["ground"])
    EventFactory.create_batch(20, type=EventType.ADD_TO_CART, product__category=tree["ground"])
    scores_refresh()
    client.get("/c/pantry/")  # cookie set; tree, list, rail and card caches warm
    # the list (count and first pages' ids), cards, rails, tree and navigation all come from caches
    with django_assert_num_queries(0):  # not even the header's cart badge: this browser never had a cart
        client.get("/c/pantry/")
    ProductFactory.create_batch(30, category=tree["coffee"])
    EventFactory.create_batch(40, type=EventType.PURCHASE, product__category=tree["coffee"])
    scores_refresh()
    cache.delete_many([f"catalog:list:{tree['pantry'].pk}:popular"])  # what LIST_TTL does
    # the list read again (its ids; fewer than LIST_CACHED_IDS, so they give the count too) and one
    # query for the cards of products not shown before
    with django_assert_num_queries(2):
        client.get("/c/pantry/?sort=popular&page=2")
    with django_assert_num_queries(0):
        client.get("/c/pantry/?sort=popular&page=2")


def test_category_pages_past_the_shared_list_read_their_slice(client, tree, django_assert_num_queries):
    ProductFactory.create_batch(LIST_CACHED_IDS + 30, category=tree["home"])
    client.get("/c/home-goods/?sort=newest")
    last = (LIST_CACHED_IDS + 30 + 23) // 24
    html = client.get(f"/c/home-goods/?sort=newest&page={last}").content.decode()
    assert len(card_ids(html, "category.grid")) == (LIST_CACHED_IDS + 30) % 24 or 24
    assert f"of {LIST_CACHED_IDS + 30}" in html
    with django_assert_num_queries(1):  # its ids; the count and its cards are held
        client.get(f"/c/home-goods/?sort=newest&page={last}")


def test_category_lists_stay_held_after_a_shopper_has_seen_every_category(client, settings, django_assert_num_queries):
    # Each category page shares three lists through the cache (the page's own, its popular and its new
    # rail): 110 categories need 330 entries, more than Django's default local-memory cache holds (300),
    # at which size the lists pushed each other out and revisited pages read them again.
    assert settings.CACHES["default"]["OPTIONS"]["MAX_ENTRIES"] == settings.CACHE_MAX_ENTRIES
    categories = [CategoryFactory(name=f"Aisle {i}", slug=f"aisle-{i}") for i in range(110)]
    for category in categories:
        ProductFactory.create_batch(2, category=category)
    for category in categories:
        assert client.get(f"/c/{category.slug}/").status_code == 200
    for category in categories[:5]:
        with django_assert_num_queries(0):  # the lists are still held
            client.get(f"/c/{category.slug}/")


def test_search_page_queries_do_not_grow_with_the_results(client, tree, django_assert_num_queries):
    ProductFactory.create_batch(30, name="Oat Latte Mix", category=tree["coffee"])
    client.get("/search/?q=latte")
    with django_assert_num_queries(0):  # results shared for LIST_TTL, cards held
        client.get("/search/?q=latte")
    with django_assert_num_queries(0):  # the same words, another spelling: the same list
        client.get("/search/?q=LATTE++")
    ProductFactory.create_batch(30, name="Latte Cups", category=tree["home"])
    with django_assert_num_queries(2):  # another sort: its ids (the count too), the cards not shown before
        client.get("/search/?q=latte&sort=name&page=2")


def test_a_long_search_reads_its_count_beside_its_first_pages(client, tree, django_assert_num_queries):
    # more results than the shared head: the count comes with the head (one ranked query, not a second
    # one that matches and counts them all again); pages past the head read their slice
    ProductFactory.create_batch(LIST_CACHED_IDS + 30, name="Oat Latte Mix", category=tree["coffee"])
    client.get("/search/?q=mix")  # the visitor's cookie, and the same products' cards
    with django_assert_num_queries(1):  # the ids with the count
        html = client.get("/search/?q=latte").content.decode()
    assert f"{LIST_CACHED_IDS + 30} products found" in html
    last = (LIST_CACHED_IDS + 30 + 23) // 24
    html = client.get(f"/search/?q=latte&page={last}").content.decode()
    assert len(card_ids(html, "search.results")) == (LIST_CACHED_IDS + 30) % 24 or 24
    with django_assert_num_queries(1):  # its ids; the count and its cards are held
        client.get(f"/search/?q=latte&page={last}")
    assert "No products match" in client.get("/search/?q=nothing-like-it").content.decode()  # no rows: 0


def test_a_returning_shoppers_product_page_runs_exactly_one_query(client, tree, django_assert_num_queries):
    product = ProductFactory(category=tree["ground"], name="French Press")
    ProductFactory.create_batch(10, category=tree["ground"])
    ProductFactory.create_batch(5, category=tree["home"])
    EventFactory.create_batch(3, type=EventType.PURCHASE, product__category=tree["coffee"])
    client.get(product.get_absolute_url())  # the visitor's cookie; the product's page and the rails held

    # ONE statement for the view; the product part of the page is held (catalog.product_page), the rails'
    # cards too; the personal rail comes after load (RAILS_AFTER_LOAD); this browser never had a cart, so
    # the header's badge reads none (a shopper with one: tests/shop/test_cart_hint.py)
    with django_assert_num_queries(1) as ctx:
        response = client.get(product.get_absolute_url() + "?from=home.popular&pos=2")
    assert response.status_code == 200
    writes = [q["sql"] for q in ctx.captured_queries if 'INSERT INTO "events_event"' in q["sql"]]
    assert len(writes) == 1
    html = response.content.decode()
    view = Event.objects.get(type=EventType.VIEW, page_view_id=page_view_id(html))
    assert (view.product_id, view.placement, view.position) == (product.pk, "home.popular", 2)
    served = Event.objects.filter(type=EventType.IMPRESSION, page_view_id=view.page_view_id)
    assert not served.exists()  # the personal rail's impressions come with it, after load
    assert 'data-rail-src="/rails/product.recommended?' in html
    assert '<h1 class="product-title">French Press</h1>' in html
    assert f'name="page_view_id" value="{view.page_view_id}"' in html


def test_a_product_page_is_answered_only_once_its_view_is_stored(client, monkeypatch):
    """The view is written in the same statement as the impressions: when that write fails the page
    fails (503), it never answers a view that was not stored."""
    from django.db import OperationalError

    from shop.catalog import rails

    product = ProductFactory()
    client.get(product.get_absolute_url())

    def broken(**kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(rails, "events_record", broken)
    client.raise_request_exception = False
    response = client.get(product.get_absolute_url())
    assert response.status_code >= 500
    assert Event.objects.filter(type=EventType.VIEW).count() == 1  # the first page's view only


def test_an_edited_product_shows_on_its_own_page_at_once(client, tree):
    product = ProductFactory(category=tree["ground"], name="Moka Pot", price=Decimal("30.00"), stock=50)
    html = client.get(product.get_absolute_url()).content.decode()
    assert "$30.00" in html and "Moka Pot" in html and 'name="quantity"' in html

    product.price, product.stock, product.name = Decimal("27.50"), 0, "Moka Pot <3 cups>"
    product.save()  # the held product page is dropped in every process (the cards' version stamp)

    html = client.get(product.get_absolute_url()).content.decode()
    assert "$27.50" in html and "Moka Pot &lt;3 cups&gt;" in html and "<3 cups>" not in html
    assert "Currently out of stock" in html and 'name="quantity"' not in html

    product.is_active = False
    product.save()
    assert client.get(product.get_absolute_url()).status_code == 404


def test_each_product_render_gets_its_own_buy_box(client):
    product = ProductFactory(stock=3)
    first, second = (client.get(product.get_absolute_url()).content.decode() for _ in range(2))

    def field(html: str, name: str) -> str:
        return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)

    assert field(first, "nonce") != field(second, "nonce")
    assert field(first, "page_view_id") == page_view_id(first) != page_view_id(second)
    assert field(first, "csrfmiddlewaretoken")
    assert 'max="3"' in first


def test_a_returning_shoppers_home_page_runs_exactly_one_query(client, django_assert_num_queries):
    ProductFactory.create_batch(12)
    EventFactory.create_batch(4, type=EventType.ADD_TO_CART)
    client.get("/")
    client.get("/")  # every list and card held
    # the rails' impressions (no model serving: an arm ranked by a model adds its batch list and the
    # visitor's user, see test_home_query_count_is_bounded); no cart to read for the header's badge
    with django_assert_num_queries(1):
        assert client.get("/").status_code == 200

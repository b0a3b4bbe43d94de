"""``manage.py seed_catalog``: a believable, deterministic catalog that is safe to seed twice."""

from __future__ import annotations

import datetime as dt
import time
import xml.etree.ElementTree as ET
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from shop.catalog.images import product_svg
from shop.catalog.models import Brand, Category, Product
from shop.catalog.seed import CatalogGenerator

pytestmark = pytest.mark.django_db


def _seed(**kwargs) -> str:
    out = StringIO()
    call_command("seed_catalog", stdout=out, verbosity=0, **kwargs)
    return out.getvalue()


def _snapshot() -> dict[str, tuple]:
    return {
        p.sku: (p.name, p.price, p.stock, p.category.slug, p.brand.name, p.image_seed, p.description)
        for p in Product.objects.select_related("category", "brand")
    }


def test_seeds_5000_believable_products_quickly_and_a_rerun_is_a_no_op(django_assert_max_num_queries):
    started = time.perf_counter()
    out = _seed(products=5000, seed=42)
    seconds = time.perf_counter() - started
    assert "Seeded 5,000 products" in out
    assert seconds < 30, f"seeding 5,000 products took {seconds:.1f} s"

    assert Product.objects.count() == 5000
    roots = Category.objects.filter(parent__isnull=True)
    assert 8 <= roots.count() <= 12
    leaves = Category.objects.annotate(n=Count("children")).filter(n=0)
    assert leaves.count() >= 100
    # at least 3 levels below a root somewhere, and depth is consistent with the parent chain
    deep = Category.objects.filter(depth__gte=3).select_related("parent__parent__parent").first()
    assert deep is not None
    assert deep.parent.parent.parent.parent_id is None and deep.parent.parent.parent.depth == 0
    assert Category.objects.filter(name="Whole bean", parent__name="Coffee", parent__parent__name="Beverages").exists()
    assert Brand.objects.count() >= 300

    products = list(Product.objects.select_related("category", "brand"))
    # products sit in leaf categories, have a brand, and a shelf price in cents ending like .99/.49
    leaf_ids = set(leaves.values_list("pk", flat=True))
    assert all(p.category_id in leaf_ids for p in products)
    assert all(p.brand_id for p in products)
    assert all(p.price > 0 for p in products)
    endings = {str(p.price)[-2:] for p in products}
    assert {"99", "49"} <= endings and len(endings) <= 10
    assert len({p.name for p in products}) > 4000  # names vary
    parents = dict(Category.objects.values_list("pk", "parent_id"))
    names = dict(Category.objects.values_list("pk", "name"))

    def root_name(category_id: int) -> str:
        while parents[category_id] is not None:
            category_id = parents[category_id]
        return names[category_id]

    # names carry the brand (book titles carry the publisher's name nowhere, as in a real shop)
    assert all(p.brand.name in p.name for p in products if root_name(p.category_id) != "Books")
    assert all(len(p.description.split(". ")) >= 3 for p in products)
    out_of_stock = sum(1 for p in products if p.stock == 0)
    assert 100 < out_of_stock < 1000  # some, not most
    # created over the last ~18 months, so "new arrivals" has something to show
    now = timezone.now()
    ages = [now - p.created_at for p in products]
    assert min(ages) < dt.timedelta(days=14) and dt.timedelta(days=500) < max(ages) < dt.timedelta(days=560)
    # every product's picture is valid SVG
    for p in products[:200]:
        root = ET.fromstring(product_svg(name=p.name, category=p.category.name, seed=p.image_seed))
        assert root.tag.endswith("svg")

    # same arguments again: nothing written, and it says so
    before = _snapshot()
    with django_assert_max_num_queries(3):
        out = _seed(products=5000, seed=42)
    assert "already seeded" in out
    assert _snapshot() == before


def test_same_seed_gives_the_same_catalog_and_another_seed_another():
    _seed(products=300, seed=7)
    first = _snapshot()
    Product.objects.all().delete()
    Brand.objects.all().delete()
    Category.objects.all().delete()
    _seed(products=300, seed=7)
    assert _snapshot() == first

    now = timezone.now()
    # the generator (no database) agrees, and another seed gives another catalog
    a = {p.sku: (p.name, p.price) for p in CatalogGenerator(seed=7, now=now).products(range(300))}
    b = {p.sku: (p.name, p.price) for p in CatalogGenerator(seed=8, now=now).products(range(300))}
    assert a == {sku: (v[0], v[1]) for sku, v in first.items()}
    assert len(set(a.values()) & set(b.values())) < 10


def test_a_larger_count_extends_without_touching_existing_products():
    _seed(products=200, seed=3)
    before = _snapshot()
    out = _seed(products=260, seed=3)
    assert "Seeded 60 products" in out
    after = _snapshot()
    assert len(after) == 260
    assert {sku: after[sku] for sku in before} == before


def test_shrinking_or_switching_seed_is_refused_with_a_clear_message():
    _seed(products=100, seed=3)
    with pytest.raises(CommandError, match="at least 100"):
        _seed(products=50, seed=3)
    with pytest.raises(CommandError, match="seeded with --seed 3"):
        _seed(products=100, seed=4)
    assert Product.objects.count() == 100


@pytest.mark.django_db(transaction=True)
def test_a_freshly_seeded_catalog_is_vacuumed_so_search_uses_its_index():
    """Right after a bulk load, before autovacuum's pass, PostgreSQL planned every search as a scan that
    parsed each product's text (155 ms a term on 5,000 products instead of 2)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    _seed(products=400, seed=11)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, n_mod_since_analyze "
            "FROM pg_stat_user_tables WHERE relname = 'catalog_product'"
        )
        assert cur.fetchone() == (True, True, 0)

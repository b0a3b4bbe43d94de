"""A category's lists and rails are read in order from product_category_*_idx on PostgreSQL (no heap
scan and sort of every product in the category), and give the same products as the ORM's order."""

from __future__ import annotations

import pytest
from django.db import connection

from shop.catalog import selectors
from shop.catalog.models import Product
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def aisle():
    category = CategoryFactory(name="Tea", slug="tea")
    other = CategoryFactory(name="Coffee", slug="coffee")
    products = [ProductFactory(category=category, stock=i % 3) for i in range(30)]
    ProductFactory.create_batch(10, category=other)
    for i, p in enumerate(products):
        Product.objects.filter(pk=p.pk).update(popularity=None if i % 4 == 0 else float(i % 7))
    return category, other


def _plan(sql: str, params) -> str:
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned and sorted anyway
        cur.execute("SET LOCAL enable_bitmapscan = off")
        cur.execute("SET LOCAL enable_sort = off")  # a sort then appears only if no index gives the order
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


@pytest.mark.parametrize("field", ["popularity", None])
def test_a_category_rail_reads_its_index_in_order(aisle, field):
    if connection.vendor != "postgresql":
        pytest.skip("plans are PostgreSQL's")
    category, _ = aisle
    plan = _plan(selectors._ranked_ids_sql(field, "one"), [category.pk, 8])
    index = "product_category_popular_idx" if field else "product_category_new_idx"
    assert index in plan and "Sort" not in plan, plan


def test_the_category_list_reads_its_index_in_order(aisle):
    if connection.vendor != "postgresql":
        pytest.skip("plans are PostgreSQL's")
    category, _ = aisle
    for sort, index in (("popular", "product_category_popular_idx"), ("newest", "product_category_new_idx")):
        qs = selectors.product_list(category_ids=[category.pk], sort=sort).values_list("pk", flat=True)[:24]
        sql, params = qs.query.sql_with_params()
        plan = _plan(sql, params)
        assert index in plan and "Sort" not in plan, (sort, plan)


@pytest.mark.parametrize("field", ["popularity", None])
def test_one_category_and_several_give_the_orm_order(aisle, field):
    category, other = aisle
    qs = Product.objects.filter(is_active=True, stock__gt=0)
    if field:
        qs = qs.filter(popularity__isnull=False)
    order = ["-created_at", "-id"] if field is None else ["-popularity", "-created_at", "-id"]
    for scope in ([category.pk], [category.pk, other.pk]):
        expected = list(qs.filter(category_id__in=scope).order_by(*order).values_list("id", flat=True)[:12])
        assert selectors.ranked_product_ids(field, category_ids=scope, limit=12) == expected

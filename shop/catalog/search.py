"""Product search on PostgreSQL: full-text prefix matching over name and description, matched and ranked
(``ts_rank``, name above description) on the document PostgreSQL stores for each product (migration
0004), served by its GIN index ``product_search_ranked_idx`` (migration 0006), on top of the
storefront's field bonuses. ``selectors.product_search`` uses it on PostgreSQL and
keeps its portable ``icontains`` path elsewhere (SQLite)."""

from __future__ import annotations

import re
from functools import reduce

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.core.cache import cache
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from .models import Brand, Product

CONFIG = "simple"  # no stemming or stop words: brand names and product words match as typed
_TOKEN = re.compile(r"[^\W_]+")


# name weighted A, description D, stored by PostgreSQL (migration 0004) and indexed (migration 0006):
# matching and ranking read it instead of parsing each candidate's name and description again
RANKED_COLUMN = "search_ranked"


def product_document() -> RawSQL:
    """The stored document: what a search filters on (its GIN index) and ranks by. Its lexemes are those
    of ``to_tsvector(name || ' ' || description)``; the weights change the rank, not what matches."""
    q = connection.ops.quote_name
    # identifiers only (the model's table and a constant), through quote_name; no value reaches the SQL
    return RawSQL(f"{q(Product._meta.db_table)}.{q(RANKED_COLUMN)}", [], output_field=SearchVectorField())  # nosec B611


def prefix_query(term: str) -> SearchQuery | None:
    """``word:*`` for each word of ``term`` (so "choc" finds "chocolate"); None when it has no word.
    Only letters and digits reach the query syntax."""
    tokens = _TOKEN.findall(term.lower())
    if not tokens:
        return None
    return SearchQuery(" & ".join(f"{t}:*" for t in tokens), search_type="raw", config=CONFIG)


BRANDS_CACHE_KEY = "catalog:brand_names"
BRANDS_TTL = 120


def _brand_names() -> list[tuple[int, str]]:
    """(id, lower-cased name) of every brand: a few hundred rows, cached, so a term's brand matches
    become a literal id list the planner can combine with the indexes."""
    brands = cache.get(BRANDS_CACHE_KEY)
    if brands is None:
        brands = [(pk, name.lower()) for pk, name in Brand.objects.values_list("id", "name")]
        cache.set(BRANDS_CACHE_KEY, brands, BRANDS_TTL)
    return brands


def product_search_fts(
    qs: QuerySet[Product], *, terms: list[str], category_names: dict[int, str]
) -> tuple[QuerySet[Product], SearchRank | None]:
    """``qs`` narrowed to products matching every term in their name or description (full text), brand
    or category name; and the text rank to order them by. Every condition is on a product column
    (brand and category matches become literal id lists, from a cached brand list and the in-memory
    category tree), so PostgreSQL can OR the GIN index with the foreign-key indexes instead of
    scanning the catalog."""
    queries: list[SearchQuery] = []
    qs = qs.alias(document=product_document())
    brands = _brand_names()
    for term in terms:
        cond = Q(pk__in=[])  # matches nothing; each branch below widens it
        category_ids = [pk for pk, name in category_names.items() if term in name]
        if category_ids:
            cond |= Q(category_id__in=category_ids)
        brand_ids = [pk for pk, name in brands if term in name]
        if brand_ids:
            cond |= Q(brand_id__in=brand_ids)
        query = prefix_query(term)
        if query is not None:
            cond |= Q(document=query)
            queries.append(query)
        qs = qs.filter(cond)
    if not queries:
        return qs, None
    return qs, SearchRank(product_document(), reduce(lambda a, b: a | b, queries))

"""Product search on PostgreSQL: full-text prefix matching over name and description, matched and ranked
(``ts_rank``, name above description) on the document PostgreSQL stores for each product (migration
0004), served by its GIN index ``product_search_ranked_idx`` (migration 0006), on top of the
storefront's field bonuses. ``selectors.product_search`` uses it on PostgreSQL and
keeps its portable ``icontains`` path elsewhere (SQLite).

A search page's list of ids (``search_ids``) is one fixed statement per shape instead of the ORM's
queryset: resolving and compiling that queryset (a CASE per word, a rank, a window count) cost 3.7 ms of
CPU per search not held yet at 50,000 products, more than PostgreSQL spent running most of them. The
statement is written here once per shape (how many words, which match a brand or category name, the
sort) and bound to the words' values; ``tests/shop/test_search.py`` holds it to the ORM's answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache, reduce
from typing import NamedTuple

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
    text = _text_query(term)
    return None if text is None else SearchQuery(text, search_type="raw", config=CONFIG)


def _text_query(term: str) -> str | None:
    """The ``to_tsquery`` input of ``term``: ``word:*`` for each of its words; None when it has none."""
    tokens = _TOKEN.findall(term.lower())
    return " & ".join(f"{t}:*" for t in tokens) if tokens else None


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
    for term in search_terms_resolved(terms, category_names=category_names):
        cond = Q(pk__in=[])  # matches nothing; each branch below widens it
        if term.category_ids:
            cond |= Q(category_id__in=term.category_ids)
        if term.brand_ids:
            cond |= Q(brand_id__in=term.brand_ids)
        if term.text_query is not None:
            query = SearchQuery(term.text_query, search_type="raw", config=CONFIG)
            cond |= Q(document=query)
            queries.append(query)
        qs = qs.filter(cond)
    if not queries:
        return qs, None
    return qs, SearchRank(product_document(), reduce(lambda a, b: a | b, queries))


class SearchTerm(NamedTuple):
    """One word of a search and what it may match besides the text: a literal id list each."""

    word: str
    text_query: str | None  # the ``to_tsquery`` input, None when the word has no letter or digit
    category_ids: tuple[int, ...]
    brand_ids: tuple[int, ...]


def search_terms_resolved(terms: Sequence[str], *, category_names: dict[int, str]) -> list[SearchTerm]:
    """Each word with its text query and the brands and categories whose names hold it."""
    brands = _brand_names()
    out = []
    for term in terms:
        out.append(
            SearchTerm(
                word=term,
                text_query=_text_query(term),
                category_ids=tuple(pk for pk, name in category_names.items() if term in name),
                brand_ids=tuple(pk for pk, name in brands if term in name),
            )
        )
    return out


# the storefront's sorts (``selectors.SORTS``) and the ranked one; every order ends on a unique column
_ORDER = {
    "price_asc": ("price", "name", "id"),
    "price_desc": ("-price", "name", "id"),
    "newest": ("-created_at", "-id"),
    "name": ("name", "id"),
    "popular": ("-popularity", "-created_at", "-id"),
}


@lru_cache(maxsize=512)
def _ids_sql(shape: tuple[tuple[bool, bool, bool], ...], sort: str, ranked: bool, count: bool, names: bool) -> str:
    """The statement for one shape: per word (text query?, category ids?, brand ids?), the sort, whether
    the text rank orders ties (``ranked``), whether each row carries the list's total (``count``) and the
    product's slug and name (``names``). Identifiers come from the model's meta through ``quote_name``;
    every value is a named parameter."""
    q = connection.ops.quote_name
    meta = Product._meta

    def col(name: str, alias: str = "p") -> str:
        return f"{alias}.{q(meta.get_field(name).column)}"

    brand, category = meta.get_field("brand"), meta.get_field("category")
    where = [col("is_active")]
    for i, (text, cats, brands) in enumerate(shape):
        either = []
        if text:
            either.append(f"p.{q(RANKED_COLUMN)} @@ to_tsquery('{CONFIG}'::regconfig, %(q{i})s)")
        if cats:
            either.append(f"{col('category')} = ANY(%(c{i})s)")
        if brands:
            either.append(f"{col('brand')} = ANY(%(b{i})s)")
        where.append(f"({' OR '.join(either)})" if either else "FALSE")
    joins = ""
    if sort == "relevance":
        name = f"UPPER({col('name')}::text)"
        bname = f"UPPER(b.{q(brand.related_model._meta.get_field('name').column)}::text)"
        cname = f"UPPER(c.{q(category.related_model._meta.get_field('name').column)}::text)"
        score = ["0"]
        for i in range(len(shape)):
            like = f"UPPER(%(l{i})s)"
            score.append(
                f"CASE WHEN {name} LIKE {like} THEN 8 WHEN {bname} LIKE {like} THEN 5 "
                f"WHEN {cname} LIKE {like} THEN 4 ELSE 1 END"
            )
        bonus = f"WHEN {name} = UPPER(%(phrase)s) THEN 20 "
        if len(shape) > 1:
            bonus += f"WHEN {name} LIKE UPPER(%(phrase_like)s) THEN 6 "
        score.append(f"CASE {bonus}WHEN {name} LIKE UPPER(%(first_start)s) THEN 3 ELSE 0 END")
        order = [f"({' + '.join(score)}) DESC"]
        if ranked:
            order.append(f"ts_rank(p.{q(RANKED_COLUMN)}, to_tsquery('{CONFIG}'::regconfig, %(rank)s)) DESC")
        order += [f"{col('name')} ASC", f"{col('id')} ASC"]
        joins = (
            f" LEFT OUTER JOIN {q(brand.related_model._meta.db_table)} b"
            f" ON {col('brand')} = b.{q(brand.target_field.column)}"
            f" INNER JOIN {q(category.related_model._meta.db_table)} c"
            f" ON {col('category')} = c.{q(category.target_field.column)}"
        )
    else:
        order = [
            f"{col(f.lstrip('-'))} {'DESC' if f.startswith('-') else 'ASC'}"
            + (" NULLS LAST" if f == "-popularity" else "")
            for f in _ORDER[sort]
        ]
    total = f", COUNT({col('id')}) OVER ()" if count else ""
    total += f", {col('slug')}, {col('name')}" if names else ""
    return (
        f"SELECT {col('id')}{total} FROM {q(meta.db_table)} p{joins} "  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
        f"WHERE {' AND '.join(where)} ORDER BY {', '.join(order)} LIMIT %(limit)s OFFSET %(offset)s"
    )


def search_ids(
    terms: Sequence[SearchTerm], *, sort: str, offset: int, limit: int, count: bool = False, names: bool = False
) -> list[tuple]:
    """Rows ``(id,)`` (``(id, total)`` with ``count``, then ``slug, name`` with ``names``) of the active
    products matching every term, in the order of ``sort`` ("relevance" or a storefront sort), ``limit``
    from ``offset``. PostgreSQL only. The same products and order as ``selectors.product_search``'s
    queryset, without building it. ``terms`` must not be empty."""
    if sort != "relevance" and sort not in _ORDER:
        raise ValueError(f"unknown sort {sort!r}")
    queries = [t.text_query for t in terms if t.text_query is not None]
    shape = tuple((t.text_query is not None, bool(t.category_ids), bool(t.brand_ids)) for t in terms)
    params: dict[str, object] = {"limit": limit, "offset": offset}
    like = connection.ops.prep_for_like_query
    for i, t in enumerate(terms):
        params[f"q{i}"], params[f"c{i}"], params[f"b{i}"] = t.text_query, list(t.category_ids), list(t.brand_ids)
        params[f"l{i}"] = f"%{like(t.word)}%"
    if sort == "relevance":
        phrase = " ".join(t.word for t in terms)
        params.update(phrase=phrase, phrase_like=f"%{like(phrase)}%", first_start=f"{like(terms[0].word)}%")
        params["rank"] = " | ".join(f"({query})" for query in queries)
    with connection.cursor() as cur:
        cur.execute(_ids_sql(shape, sort, bool(queries), count, names), params)
        return cur.fetchall()

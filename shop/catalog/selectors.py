"""Reading the catalog: the category tree, product lists, search and the product page."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When, Window
from django.http import Http404
from django.urls import get_script_prefix, reverse

from shop.events.models import EventType

from .models import Brand, Category, Product

CATEGORY_TREE_CACHE_KEY = "catalog:category_tree:version"
CATEGORY_TREE_TTL = 120
STALE_TREE_RETRY_SECONDS = 10

# Events that counted towards "popular" before the decayed score (catalog.popularity) replaced the count.
POPULARITY_EVENT_TYPES = (EventType.PURCHASE, EventType.ADD_TO_CART)

SORTS: dict[str, str] = {
    "popular": "Most popular",
    "newest": "Newest",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
    "name": "Name: A to Z",
}
DEFAULT_SORT = "popular"
SEARCH_SORTS: dict[str, str] = {"relevance": "Best match", **SORTS}
MAX_SEARCH_TERMS = 6


@dataclass(frozen=True, slots=True)
class CategoryNode:
    id: int
    name: str
    slug: str
    parent_id: int | None
    depth: int

    @property
    def url(self) -> str:
        return _category_url(get_script_prefix(), self.slug)


@lru_cache(maxsize=4096)
def _category_url(script_prefix: str, slug: str) -> str:
    # breadcrumbs and rail links ask for the same few hundred URLs on every page
    return reverse("catalog:category", kwargs={"slug": slug})


@dataclass(slots=True)
class CategoryTree:
    """The whole category tree in memory: one query, then every walk is free.

    Descendants are precomputed once per tree, so a category page never walks the tree with
    one query per level.
    """

    nodes: dict[int, CategoryNode]
    by_slug: dict[str, int]
    children: dict[int | None, list[int]]
    _descendants: dict[int, tuple[int, ...]] = field(default_factory=dict)
    built_at: float = field(default_factory=time.monotonic)
    # what callers derive from this tree, computed once per tree (a rebuilt tree starts empty); keys name
    # their caller, and each caller bounds its own keys (e.g. by the tree's slugs)
    derived: dict[tuple, object] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, str, str, int | None, int]]) -> CategoryTree:
        nodes = {r[0]: CategoryNode(id=r[0], name=r[1], slug=r[2], parent_id=r[3], depth=r[4]) for r in rows}
        children: dict[int | None, list[int]] = {}
        for node in sorted(nodes.values(), key=lambda n: n.name.lower()):
            children.setdefault(node.parent_id, []).append(node.id)
        tree = cls(nodes=nodes, by_slug={n.slug: n.id for n in nodes.values()}, children=children)
        tree._precompute_descendants()
        return tree

    def _precompute_descendants(self) -> None:
        # Children before parents (deepest first), so each node unions finished child sets.
        order: list[int] = []
        stack = list(self.children.get(None, []))
        seen: set[int] = set()
        while stack:
            node_id = stack.pop()
            if node_id in seen:  # a corrupt parent cycle must not hang the page
                continue
            seen.add(node_id)
            order.append(node_id)
            stack.extend(self.children.get(node_id, []))
        for node_id in reversed(order):
            acc: list[int] = [node_id]
            for child in self.children.get(node_id, []):
                acc.extend(self._descendants.get(child, (child,)))
            self._descendants[node_id] = tuple(acc)

    def get(self, category_id: int) -> CategoryNode | None:
        return self.nodes.get(category_id)

    def by_slug_get(self, slug: str) -> CategoryNode | None:
        node_id = self.by_slug.get(slug)
        return self.nodes[node_id] if node_id is not None else None

    def descendant_ids(self, category_id: int) -> tuple[int, ...]:
        """The category itself and every category below it."""
        return self._descendants.get(category_id, (category_id,))

    def ancestors(self, category_id: int) -> list[CategoryNode]:
        """Root first, ending with the category itself (for breadcrumbs)."""
        path: list[CategoryNode] = []
        node = self.nodes.get(category_id)
        while node is not None and len(path) <= 64:
            path.append(node)
            node = self.nodes.get(node.parent_id) if node.parent_id is not None else None
        return list(reversed(path))

    def children_of(self, category_id: int | None) -> list[CategoryNode]:
        return [self.nodes[i] for i in self.children.get(category_id, [])]

    def roots(self) -> list[CategoryNode]:
        return self.children_of(None)


_tree_memo: dict[str, CategoryTree] = {}


def category_tree_get(*, refresh: bool = False) -> CategoryTree:
    """The category tree: one query when it is (re)built, none otherwise.

    The shared cache holds only a version stamp; each process keeps the built tree for that
    stamp, so a page does not unpickle thousands of nodes. ``refresh`` (or the stamp expiring)
    rebuilds it and tells every process through a new stamp.
    """
    version = None if refresh else cache.get(CATEGORY_TREE_CACHE_KEY)
    tree = _tree_memo.get(version) if version else None
    if tree is None:
        rows = Category.objects.values_list("id", "name", "slug", "parent_id", "depth")
        tree = CategoryTree.from_rows(rows)
        if version is None:  # expired or refreshed: a new stamp makes the other processes rebuild too
            version = uuid.uuid4().hex
            cache.set(CATEGORY_TREE_CACHE_KEY, version, CATEGORY_TREE_TTL)
        _tree_memo.clear()
        _tree_memo[version] = tree
    return tree


def category_node_get(*, slug: str) -> tuple[CategoryNode, CategoryTree]:
    """The category for ``slug`` and the tree it lives in; reloads once if the cache is stale."""
    tree = category_tree_get()
    node = tree.by_slug_get(slug)
    # a category added since the tree was built; rate-limited so unknown slugs cannot force rebuilds
    if node is None and time.monotonic() - tree.built_at > STALE_TREE_RETRY_SECONDS:
        tree = category_tree_get(refresh=True)
        node = tree.by_slug_get(slug)
    if node is None:
        raise Http404("No such category")
    return node, tree


def _card_queryset() -> QuerySet[Product]:
    """What a product card needs, in one query."""
    return Product.objects.filter(is_active=True).select_related("brand", "category")


def _apply_sort(qs: QuerySet[Product], *, sort: str) -> QuerySet[Product]:
    if sort == "price_asc":
        return qs.order_by("price", "name", "id")
    if sort == "price_desc":
        return qs.order_by("-price", "name", "id")
    if sort == "newest":
        return qs.order_by("-created_at", "-id")
    if sort == "name":
        return qs.order_by("name", "id")
    # popular (default): the time-decayed score kept by catalog.popularity (a column, no event
    # aggregate per request), newest first among equals and for products nobody has touched yet
    return qs.order_by(F("popularity").desc(nulls_last=True), "-created_at", "-id")


@lru_cache(maxsize=16)  # 3 fields x 3 scopes
def _ranked_ids_sql(field: str | None, scope: str) -> str:
    """``scope``: "all" products, "one" category (``= %s``: ``= ANY`` of one value would not read
    product_category_*_idx in order) or "many" categories (``= ANY(%s)``)."""
    p = Product._meta
    q = connection.ops.quote_name
    col = {name: q(p.get_field(name).column) for name in ("id", "is_active", "stock", "category", "created_at")}
    where = [col["is_active"], f"{col['stock']} > 0"]
    order = [f"{col['created_at']} DESC", f"{col['id']} DESC"]
    if field is not None:
        where.append(f"{q(p.get_field(field).column)} IS NOT NULL")
        # NULLS LAST changes nothing here (nulls are filtered out) but matches the indexes' order
        order.insert(0, f"{q(p.get_field(field).column)} DESC NULLS LAST")
    if scope != "all":
        where.append(f"{col['category']} = %s" if scope == "one" else f"{col['category']} = ANY(%s)")
    return (
        f"SELECT {col['id']} FROM {q(p.db_table)} WHERE {' AND '.join(where)} "  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
        f"ORDER BY {', '.join(order)} LIMIT %s"
    )


def ranked_product_ids(field: str | None, *, category_ids: Iterable[int] | None, limit: int) -> list[int]:
    """Active in-stock products (in ``category_ids``, when given) with ``field`` set, highest first, then
    newest; with ``field`` None, newest first. On PostgreSQL one fixed statement per shape (a rail's list
    is read by every page whose scope is not held yet: compiling the ORM query cost more than running it)."""
    scope = None if category_ids is None else [int(i) for i in category_ids]
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            if scope is None:
                cur.execute(_ranked_ids_sql(field, "all"), [limit])
            elif len(scope) == 1:
                cur.execute(_ranked_ids_sql(field, "one"), [scope[0], limit])
            else:
                cur.execute(_ranked_ids_sql(field, "many"), [scope, limit])
            return [row[0] for row in cur.fetchall()]
    qs = Product.objects.filter(is_active=True, stock__gt=0)
    if field is not None:
        qs = qs.filter(**{f"{field}__isnull": False})
    if scope is not None:
        qs = qs.filter(category_id__in=scope)
    order = ["-created_at", "-id"] if field is None else [F(field).desc(), "-created_at", "-id"]
    return list(qs.order_by(*order).values_list("id", flat=True)[:limit])


def popular_product_ids(*, category_ids: Iterable[int] | None = None, limit: int) -> list[int]:
    """In-stock products with the highest 7-day decayed popularity (index product_popularity_idx)."""
    return ranked_product_ids("popularity", category_ids=category_ids, limit=limit)


def trending_product_ids(*, category_ids: Iterable[int] | None = None, limit: int) -> list[int]:
    """In-stock products with the highest 1-day decayed interest (index product_trending_idx)."""
    return ranked_product_ids("trending", category_ids=category_ids, limit=limit)


def product_list(*, category_ids: Iterable[int] | None = None, sort: str = DEFAULT_SORT) -> QuerySet[Product]:
    """Active products (optionally within ``category_ids``) ready for cards, sorted by ``sort``."""
    qs = _card_queryset()
    if category_ids is not None:
        qs = qs.filter(category_id__in=list(category_ids))
    return _apply_sort(qs, sort=sort if sort in SORTS else DEFAULT_SORT)


def search_terms(query: str) -> list[str]:
    """The words of a search box query (lower-cased, de-duplicated, at most a handful)."""
    words = [w for w in re.split(r"[\s,;]+", query.strip().lower()) if w]
    seen: list[str] = []
    for w in words:
        w = w.strip("\"'()[]{}")
        if w and w not in seen:
            seen.append(w[:50])
    return seen[:MAX_SEARCH_TERMS]


def _category_names() -> dict[int, str]:
    """Every category's lower-cased name by id (the in-memory tree, no query): what a search word may match."""
    return {node.id: node.name.lower() for node in category_tree_get().nodes.values()}


def _resolved_terms(query: str) -> list:
    """The words of ``query`` with what each matches besides the text (``catalog.search``, PostgreSQL only)."""
    from .search import search_terms_resolved  # django.contrib.postgres: PostgreSQL only

    return search_terms_resolved(search_terms(query), category_names=_category_names())


def product_search(*, query: str, sort: str = "relevance") -> QuerySet[Product]:
    """Products matching every word of ``query`` in name, description, brand or category.

    On PostgreSQL, full-text prefix matching on an index (``catalog.search``); elsewhere plain
    ``icontains``. A term may also match the brand or category name. Relevance: a match in the
    name weighs most, then brand, then category, then description; the whole phrase in the name
    or a name that starts with the first word earns a bonus.
    """
    terms = search_terms(query)
    if not terms:
        return Product.objects.none()
    qs = _card_queryset()
    rank = None
    if connection.vendor == "postgresql":
        from .search import product_search_fts  # django.contrib.postgres: PostgreSQL only

        qs, rank = product_search_fts(qs, terms=terms, category_names=_category_names())
    else:
        for term in terms:
            qs = qs.filter(
                Q(name__icontains=term)
                | Q(brand__name__icontains=term)
                | Q(category__name__icontains=term)
                | Q(description__icontains=term)
            )
    score = Value(0)
    for term in terms:
        score = score + Case(
            When(name__icontains=term, then=Value(8)),
            When(brand__name__icontains=term, then=Value(5)),
            When(category__name__icontains=term, then=Value(4)),
            default=Value(1),
            output_field=IntegerField(),
        )
    phrase = " ".join(terms)
    bonus = [When(name__iexact=phrase, then=Value(20))]
    if len(terms) > 1:
        bonus.append(When(name__icontains=phrase, then=Value(6)))
    bonus.append(When(name__istartswith=terms[0], then=Value(3)))
    score = score + Case(*bonus, default=Value(0), output_field=IntegerField())
    if sort in SORTS:
        return _apply_sort(qs, sort=sort)
    if rank is not None:  # text rank (name above description) breaks ties between field bonuses
        return qs.annotate(relevance=score, text_rank=rank).order_by("-relevance", "-text_rank", "name", "id")
    return qs.annotate(relevance=score).order_by("-relevance", "name", "id")


def search_suggestions(*, query: str, limit: int = 8) -> list[dict[str, str]]:
    """What to offer under the search box as ``query`` is typed: categories whose name holds it (from
    the in-memory tree, no query), then the best-matching active product names (one query)."""
    needle = query.strip().lower()
    if not search_terms(needle):
        return []
    tree = category_tree_get()
    out = [
        {"label": node.name, "kind": "category", "url": node.url}
        for node in sorted(tree.nodes.values(), key=lambda n: (n.depth, n.name))
        if needle in node.name.lower()
    ][: max(1, limit // 3)]
    seen = {s["label"].lower() for s in out}
    if connection.vendor == "postgresql":  # the search page's statement (catalog.search), not the queryset
        from .search import search_ids

        rows = search_ids(_resolved_terms(query), sort="relevance", offset=0, limit=limit * 2, names=True)
    else:
        rows = product_search(query=query).values_list("pk", "slug", "name")[: limit * 2]
    for pk, slug, name in rows:
        if name.lower() not in seen and len(out) < limit:
            seen.add(name.lower())
            out.append(
                {"label": name, "kind": "product", "url": reverse("catalog:product", kwargs={"pk": pk, "slug": slug})}
            )
    return out


def product_get(*, pk: int) -> Product:
    """One active product with its brand and category (one query), or 404."""
    try:
        return _card_queryset().get(pk=pk)
    except Product.DoesNotExist as exc:
        raise Http404("No such product") from exc


@dataclass(frozen=True, slots=True)
class PageProduct:
    """What a product page shows of its product (``catalog.product_page``), read without a model."""

    pk: int
    sku: str
    name: str
    slug: str
    description: str
    category_id: int
    brand_name: str | None
    price: Decimal
    stock: int


_PAGE_PRODUCT_FIELDS = ("id", "sku", "name", "slug", "description", "category", "price", "stock")


@lru_cache(maxsize=1)
def _page_product_sql() -> str:
    p, b = Product._meta, Brand._meta
    q = connection.ops.quote_name
    cols = ", ".join(f"p.{q(p.get_field(name).column)}" for name in _PAGE_PRODUCT_FIELDS)
    return (
        f"SELECT {cols}, b.{q(b.get_field('name').column)} FROM {q(p.db_table)} p "  # nosec B608  # identifiers from model meta through quote_name; the id is a bound parameter
        f"LEFT JOIN {q(b.db_table)} b ON b.{q(b.pk.column)} = p.{q(p.get_field('brand').column)} "
        f"WHERE p.{q(p.get_field('is_active').column)} AND p.{q(p.pk.column)} = %s"
    )


def page_product_get(*, pk: int) -> PageProduct:
    """The fields of one active product's page (one fixed statement on PostgreSQL), or 404."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(_page_product_sql(), [int(pk)])
            row = cur.fetchone()
    else:
        row = (
            Product.objects.filter(is_active=True, pk=pk)
            .values_list(*("category_id" if f == "category" else f for f in _PAGE_PRODUCT_FIELDS), "brand__name")
            .first()
        )
    if row is None:
        raise Http404("No such product")
    pk_, sku, name, slug, description, category_id, price, stock, brand_name = row
    return PageProduct(
        pk=pk_, sku=sku, name=name, slug=slug, description=description, category_id=category_id,
        brand_name=brand_name, price=price, stock=stock,
    )  # fmt: skip


def products_by_ids(*, ids: Iterable[int]) -> dict[int, Product]:
    """Active products for cards, keyed by id (one query); missing or inactive ids are absent."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    # cards never show the description, the longest column
    return {p.pk: p for p in _card_queryset().filter(pk__in=ids).defer("description")}


class CardRow(NamedTuple):
    """What a product card shows of a product (``catalog.cards``), read without building a model."""

    pk: int
    name: str
    slug: str
    brand_name: str | None
    stock: int
    price: Decimal


@lru_cache(maxsize=1)
def _card_rows_sql() -> str:
    p, b = Product._meta, Brand._meta
    q = connection.ops.quote_name
    col = {name: q(p.get_field(name).column) for name in ("id", "name", "slug", "stock", "price", "is_active", "brand")}
    return (
        f"SELECT p.{col['id']}, p.{col['name']}, p.{col['slug']}, b.{q(b.get_field('name').column)}, "  # nosec B608  # identifiers from model meta through quote_name; ids are a bound parameter
        f"p.{col['stock']}, p.{col['price']} FROM {q(p.db_table)} p "
        f"LEFT JOIN {q(b.db_table)} b ON b.{q(b.pk.column)} = p.{col['brand']} "
        f"WHERE p.{col['is_active']} AND p.{col['id']} = ANY(%s)"
    )


def card_rows_by_ids(*, ids: Iterable[int]) -> dict[int, CardRow]:
    """Active products' card fields keyed by id (one query); missing or inactive ids are absent.

    A card needs six columns: on PostgreSQL one fixed statement (no query compiling, no model
    instances: a quarter of the CPU of :func:`products_by_ids` for a grid of 24), elsewhere the ORM."""
    ids = [int(i) for i in dict.fromkeys(ids)]
    if not ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(_card_rows_sql(), [ids])
            rows = cur.fetchall()
    else:
        rows = (
            Product.objects.filter(is_active=True, pk__in=ids)
            .order_by()
            .values_list("pk", "name", "slug", "brand__name", "stock", "price")
        )
    return {row[0]: CardRow(*row) for row in rows}


LIST_TTL = 60
LIST_CACHED_IDS = 240  # the first ten pages of 24: nearly every page a shopper opens


class CachedIds:
    """A product list (ids, in order) for ``django.core.paginator.Paginator``, shared through the cache.

    The count and the first ``LIST_CACHED_IDS`` ids are read once per ``LIST_TTL`` seconds for everyone
    (two queries), so a category or search page costs no query for its list until then; pages beyond
    them read their slice. A list may lag the catalog by up to ``LIST_TTL`` seconds. ``queryset`` is
    called only when the list is not shared yet or a page past the shared head is read: building a
    ranked search's queryset costs about as much as the rest of its page.

    ``count_with_head``: read the count beside the head (``count(*) OVER ()``, one query) instead of by a
    second query once the head is full. For a list that is sorted in full anyway (a ranked search);
    not for one an index gives in order (a category's), whose head query stops after its first rows.
    """

    def __init__(self, *, key: str, queryset: Callable[[], QuerySet], count_with_head: bool = False) -> None:
        self._make = queryset
        self._queryset: QuerySet | None = None
        self._count_with_head = count_with_head
        cached = cache.get(key)
        if cached is None:
            cached = self._read_head()
            cache.set(key, cached, LIST_TTL)
        self.total, self.head = cached

    def _read_head(self) -> tuple[int, list[int]]:
        """The list's total and its first ``LIST_CACHED_IDS`` ids."""
        if self._count_with_head:
            rows = list(
                self.queryset.annotate(list_total=Window(Count("pk"))).values_list("pk", "list_total")[:LIST_CACHED_IDS]
            )
            return (rows[0][1] if rows else 0, [pk for pk, _ in rows])
        ids = self.queryset.values_list("pk", flat=True)
        head = list(ids[:LIST_CACHED_IDS])
        return (len(head) if len(head) < LIST_CACHED_IDS else ids.count(), head)

    def _read(self, start: int, stop: int) -> list[int]:
        """Ids ``start:stop`` of the list (a page past the shared head)."""
        return list(self.queryset.values_list("pk", flat=True)[start:stop])

    @property
    def queryset(self) -> QuerySet:
        if self._queryset is None:
            self._queryset = self._make()
        return self._queryset

    def count(self) -> int:
        return self.total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: slice) -> list[int]:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("CachedIds supports plain slices only")
        start, stop = index.start or 0, self.total if index.stop is None else index.stop
        if stop <= len(self.head) or len(self.head) == self.total:
            return self.head[start:stop]
        return self._read(start, stop)


class SearchIds(CachedIds):
    """A search's ranked ids, shared like any list; on PostgreSQL read by one fixed statement per shape
    (``catalog.search.search_ids``) rather than through ``product_search``'s queryset."""

    def __init__(self, *, key: str, query: str, sort: str) -> None:
        self._query, self._sort = query, sort
        self._terms: list | None = None
        super().__init__(key=key, queryset=lambda: product_search(query=query, sort=sort), count_with_head=True)

    def _resolved(self) -> list:
        if self._terms is None:
            self._terms = _resolved_terms(self._query)
        return self._terms

    def _read_head(self) -> tuple[int, list[int]]:
        if connection.vendor != "postgresql":
            return super()._read_head()
        if not self._resolved():
            return (0, [])
        from .search import search_ids

        rows = search_ids(self._resolved(), sort=self._sort, offset=0, limit=LIST_CACHED_IDS, count=True)
        return (rows[0][1] if rows else 0, [row[0] for row in rows])

    def _read(self, start: int, stop: int) -> list[int]:
        if connection.vendor != "postgresql":
            return super()._read(start, stop)
        if not self._resolved() or stop <= start:
            return []
        from .search import search_ids

        return [row[0] for row in search_ids(self._resolved(), sort=self._sort, offset=start, limit=stop - start)]


def category_product_ids(*, category_id: int, category_ids: Iterable[int], sort: str) -> CachedIds:
    """The ids of a category page's products (itself and its descendants), sorted, shared for ``LIST_TTL``."""
    sort = sort if sort in SORTS else DEFAULT_SORT
    return CachedIds(
        key=f"catalog:list:{category_id}:{sort}",
        queryset=lambda: product_list(category_ids=category_ids, sort=sort),
    )


def search_product_ids(*, query: str, sort: str = "relevance") -> CachedIds:
    """The ids of a search's results, ranked, shared for ``LIST_TTL`` (keyed by the query's words)."""
    sort = sort if sort in SEARCH_SORTS else "relevance"
    raw = repr((search_terms(query), sort)).encode()
    key = "catalog:search:" + hashlib.blake2b(raw, digest_size=16).hexdigest()
    return SearchIds(key=key, query=query, sort=sort)

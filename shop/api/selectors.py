"""Read queries that only the API needs, composed from the catalog's own selectors.

The storefront pages and the API list products through the same selectors (same sorts, same
search), so a client of the API sees the catalog the way a shopper on the site does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from shop.catalog.models import Brand, Product
from shop.catalog.selectors import (
    DEFAULT_SORT,
    CategoryNode,
    CategoryTree,
    category_tree_get,
    product_list,
    product_search,
    search_terms,
)


class UnknownFilterValue(LookupError):
    """A filter names a category or brand that does not exist."""

    def __init__(self, field: str, value: str) -> None:
        super().__init__(f'Unknown {field} "{value}".')
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class ProductFilters:
    category: str | None = None
    brand: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None
    q: str | None = None
    ordering: str | None = None


def category_tree_fresh_get(*, slug: str | None = None) -> CategoryTree:
    """The cached category tree, reloaded once when ``slug`` is missing from a stale copy."""
    tree = category_tree_get()
    if slug is not None and tree.by_slug_get(slug) is None:
        tree = category_tree_get(refresh=True)
    return tree


def category_list_api(*, parent: str | None = None, tree: CategoryTree | None = None) -> list[CategoryNode]:
    """Every category (or the children of ``parent``), roots first, then by depth and name (of ``tree``, by
    default the cached tree, reloaded once when ``parent`` is missing from it)."""
    if tree is None:
        tree = category_tree_fresh_get(slug=parent)
    if parent is not None:
        node = tree.by_slug_get(parent)
        if node is None:
            raise UnknownFilterValue("category", parent)
        return tree.children_of(node.id)
    return sorted(tree.nodes.values(), key=lambda n: (n.depth, n.name.lower(), n.id))


def product_list_api(*, filters: ProductFilters) -> QuerySet[Product]:
    """Active products matching ``filters``: a category includes everything below it.

    Sorts are the storefront's (``popular`` by default, ``relevance`` when searching).
    """
    terms = search_terms(filters.q or "")
    if terms:
        qs = product_search(query=filters.q or "", sort=filters.ordering or "relevance")
    else:
        qs = product_list(sort=filters.ordering or DEFAULT_SORT)
    if filters.category:
        tree = category_tree_fresh_get(slug=filters.category)
        node = tree.by_slug_get(filters.category)
        if node is None:
            raise UnknownFilterValue("category", filters.category)
        qs = qs.filter(category_id__in=tree.descendant_ids(node.id))
    if filters.brand:
        brand_id = Brand.objects.filter(slug=filters.brand).values_list("id", flat=True).first()
        if brand_id is None:
            raise UnknownFilterValue("brand", filters.brand)
        qs = qs.filter(brand_id=brand_id)
    if filters.min_price is not None:
        qs = qs.filter(price__gte=filters.min_price)
    if filters.max_price is not None:
        qs = qs.filter(price__lte=filters.max_price)
    if filters.in_stock is True:
        qs = qs.filter(stock__gt=0)
    elif filters.in_stock is False:
        qs = qs.filter(stock=0)
    return qs

"""Reads for the interaction log."""

from __future__ import annotations

from collections.abc import Iterable

from shop.catalog.models import Product


def event_product_ids_known(*, product_ids: Iterable[int]) -> set[int]:
    """Which of ``product_ids`` exist (one query for a whole batch).

    Inactive products count: a card rendered a moment before a merchant hid the product was
    still seen, and its impression is still worth keeping.
    """
    ids = set(product_ids)
    if not ids:
        return set()
    return set(Product.objects.filter(pk__in=ids).values_list("pk", flat=True))

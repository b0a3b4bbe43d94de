"""Product cards as pre-rendered HTML, kept per process: a rail or a grid is then string joins.

A card's markup depends on the product (name, brand, price, stock, links) and on where it is shown
(placement, position, the arm and model version that ranked it). :class:`CardParts` holds the
product's part, escaped once; :meth:`CardParts.render` fills in the rest. :func:`cards_get` keeps the
parts of recently shown products in this process for ``CARD_TTL`` seconds, so a page whose rails
leave out a different product each time (every product page) still renders its cards without loading
or formatting a product: only cards not held yet cost one query for all of them.

Freshness: a card may show a price or stock level up to ``CARD_TTL`` seconds old (the rails' id lists
behind them already may). A product saved through the ORM drops every process's cards at once (a
version stamp in the shared cache, checked once per call), as does clearing the cache.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import quote

from django.core.cache import cache
from django.urls import get_script_prefix, reverse
from django.utils.html import escape

from .selectors import CardRow, card_rows_by_ids

CARD_TTL = 60.0
CARD_MEMO_SIZE = 20_000  # products; a few hundred bytes each
CARDS_VERSION_KEY = "catalog:cards:version"
CARDS_VERSION_TTL = 24 * 3600


def money(value) -> str:
    try:
        amount = Decimal(value)
    except (TypeError, ValueError, InvalidOperation):
        return ""
    return f"${amount:,.2f}"


def stock_label(product) -> str:
    if product.stock <= 0:
        return "Out of stock"
    if product.stock <= 5:
        return f"Only {product.stock} left"
    return "In stock"


def stock_class(product) -> str:
    if product.stock <= 0:
        return "out"
    if product.stock <= 5:
        return "low"
    return "in"


@lru_cache(maxsize=8)
def _products_prefix(script_prefix: str) -> str:
    # "/products/0/" -> "/products/": one reverse per process instead of two per card
    return reverse("catalog:product_by_id", kwargs={"pk": 0})[: -len("0/")]


def products_prefix() -> str:
    """The path every product's URLs start with (``/products/``), resolved once per process."""
    return _products_prefix(get_script_prefix())


@lru_cache(maxsize=1024)
def _placement_attrs(placement: str) -> tuple[str, str]:
    """(escaped for an attribute, quoted for a query string) of a placement name."""
    return escape(placement), escape(quote(placement, safe=""))


@dataclass(frozen=True, slots=True)
class CardParts:
    """One product's card with the placement, position, arm and model version left open."""

    head: str  # '<article class="card" data-product-id="12" data-placement="'
    link: str  # '><a class="card-link" href="/products/12/slug/?from='
    tail: str  # '"><div class="card-media">...</article>'

    def render(self, placement: str, position: int, arm: str | None = None, model_version: str | None = None) -> str:
        attr, query = _placement_attrs(placement)
        extra = ""
        if arm:
            extra += f' data-arm="{escape(arm)}"'
        if model_version:
            extra += f' data-model-version="{escape(model_version)}"'
        pos = int(position)
        return f'{self.head}{attr}" data-position="{pos}"{extra}{self.link}{query}&amp;pos={pos}{self.tail}'


def card_row(product) -> CardRow:
    """A loaded :class:`~shop.catalog.models.Product` (brand loaded with it) as the card's fields."""
    brand = product.brand.name if product.brand_id else None
    return CardRow(int(product.pk), product.name, product.slug, brand, int(product.stock), product.price)


def card_parts(product) -> CardParts:
    """The product's part of its card, from a :class:`CardRow` or a loaded product."""
    row = product if isinstance(product, CardRow) else card_row(product)
    prefix = _products_prefix(get_script_prefix())
    pk = row.pk
    name = escape(row.name)
    brand = f'<p class="card-brand">{escape(row.brand_name)}</p>' if row.brand_name is not None else ""
    flag = '<span class="card-flag">Sold out</span>' if row.stock <= 0 else ""
    return CardParts(
        head=f'<article class="card" data-product-id="{pk}" data-placement="',
        link=f'><a class="card-link" href="{prefix}{pk}/{escape(row.slug)}/?from=',
        tail=(
            f'"><div class="card-media"><img src="{prefix}{pk}/image.svg" alt="{name}" loading="lazy" '
            f'decoding="async" width="400" height="400">{flag}</div>'
            f'<div class="card-body">{brand}<h3 class="card-title">{name}</h3>'
            f'<div class="card-foot"><span class="price">{escape(money(row.price))}</span>'
            f'<span class="badge badge-{stock_class(row)}">{escape(stock_label(row))}</span></div></div>'
            "</a></article>"
        ),
    )


class _Memo:
    """product id -> (expires at, parts or None for "not shown": inactive or gone), for one stamp."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp: str | None = None
        self.items: OrderedDict[int, tuple[float, CardParts | None]] = OrderedDict()


_memo = _Memo()


def current_stamp() -> str:
    """The version of everything held per process from the catalog (cards, product pages)."""
    stamp = cache.get(CARDS_VERSION_KEY)
    if stamp is None:
        stamp = uuid.uuid4().hex
        # another process may have set one meanwhile: keep theirs, so processes agree
        if not cache.add(CARDS_VERSION_KEY, stamp, CARDS_VERSION_TTL):
            stamp = cache.get(CARDS_VERSION_KEY) or stamp
    return stamp


def cards_forget() -> None:
    """Drop every process's cards (a product changed): the next page reloads what it shows."""
    cache.set(CARDS_VERSION_KEY, uuid.uuid4().hex, CARDS_VERSION_TTL)


def cards_forget_on_change(sender, created: bool = False, **kwargs) -> None:
    """``post_save``/``post_delete`` receiver for the models a card shows (``CatalogConfig.ready``): an
    edit or a removal changes cards already held; a new row changes none."""
    if not created:
        cards_forget()


def cards_get(*, ids: Iterable[int], products: dict | None = None) -> dict[int, CardParts | None]:
    """The cards of ``ids``: held ones from this process, the rest built from ``products`` (already
    loaded products or card rows) or read in one query (:func:`card_rows_by_ids`). An id
    that is not an active product maps to None."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    if not ids:
        return {}
    stamp = current_stamp()
    now = time.monotonic()
    out: dict[int, CardParts | None] = {}
    missing: list[int] = []
    with _memo.lock:
        if _memo.stamp != stamp:
            _memo.items.clear()
            _memo.stamp = stamp
        items = _memo.items
        for pid in ids:
            hit = items.get(pid)
            if hit is not None and hit[0] > now:
                out[pid] = hit[1]
            else:
                missing.append(pid)
    if missing:
        given = products or {}
        need = [pid for pid in missing if pid not in given]
        loaded = {**given, **(card_rows_by_ids(ids=need) if need else {})}
        expires = now + CARD_TTL
        fresh = {pid: (card_parts(loaded[pid]) if pid in loaded else None) for pid in missing}
        with _memo.lock:
            if _memo.stamp == stamp:
                for pid, parts in fresh.items():
                    _memo.items[pid] = (expires, parts)
                    _memo.items.move_to_end(pid)
                while len(_memo.items) > CARD_MEMO_SIZE:
                    _memo.items.popitem(last=False)
        out.update(fresh)
    return out

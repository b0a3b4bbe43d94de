"""The product page's product part, rendered once per product and process and held like the cards.

A product page is the product (breadcrumbs, picture, name, price, stock, description: the same for
every shopper), a buy box (this render's CSRF token, nonce, page view id and attribution) and the
rails. The product part is rendered from ``catalog/_product_main.html`` once and held for
``cards.CARD_TTL`` seconds, with a hole where the buy box goes; each request fills the hole with a
few escaped strings (:func:`buy_box_html`) instead of loading the product and rendering its template.

Freshness is the cards': a held page may show a price or stock level up to ``CARD_TTL`` seconds old;
saving a product, brand or category through the ORM drops every process's held pages at once (the
same version stamp as the cards). The cart checks stock and price when an item is added, whatever
the page showed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.http import Http404
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .cards import CARD_TTL, current_stamp
from .selectors import CategoryTree, PageProduct, category_tree_get, page_product_get

BUY_BOX_HOLE = "<!--buy-box-->"
HELD_PAGES = 5_000  # products; a few kilobytes each


@dataclass(frozen=True, slots=True)
class ProductPage:
    """What a product page shows of its product, the same for every shopper."""

    pk: int
    slug: str
    category_id: int
    in_stock: bool
    max_quantity: int
    title: SafeString  # the <title>, escaped
    meta_description: SafeString
    before_buy_box: SafeString
    after_buy_box: SafeString

    def html(self, buy_box: str) -> SafeString:
        return mark_safe(self.before_buy_box + buy_box + self.after_buy_box)  # nosec B308 B703  # rendered template parts and an escaped buy box


class _Held:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp: str | None = None
        self.items: OrderedDict[int, tuple[float, ProductPage | None]] = OrderedDict()


_held = _Held()


def product_page_get(*, pk: int, tree: CategoryTree) -> ProductPage:
    """The product part of product ``pk``'s page: held, or rendered (one query) and held; 404 when the
    product is not active (also remembered for ``CARD_TTL`` seconds, so a crawler's misses stay cheap)."""
    stamp = current_stamp()
    now = time.monotonic()
    with _held.lock:
        if _held.stamp != stamp:
            _held.items.clear()
            _held.stamp = stamp
        hit = _held.items.get(pk)
    if hit is not None and hit[0] > now:
        page = hit[1]
    else:
        try:
            page = _render(page_product_get(pk=pk), tree=tree)
        except Http404:
            page = None
        with _held.lock:
            if _held.stamp == stamp:
                _held.items[pk] = (now + CARD_TTL, page)
                _held.items.move_to_end(pk)
                while len(_held.items) > HELD_PAGES:
                    _held.items.popitem(last=False)
    if page is None:
        raise Http404("No such product")
    return page


def _render(product: PageProduct, *, tree: CategoryTree) -> ProductPage:
    if tree.get(product.category_id) is None:  # a category added since this process read the tree
        tree = category_tree_get(refresh=True)
    context = {
        "product": product,
        "category": tree.get(product.category_id),
        "breadcrumbs": tree.ancestors(product.category_id),
        "buy_box_hole": BUY_BOX_HOLE,
    }
    html = render_to_string("catalog/_product_main.html", context)
    before, hole, after = html.partition(BUY_BOX_HOLE)
    if not hole:
        raise RuntimeError("catalog/_product_main.html lost its buy box hole")
    title = render_to_string("catalog/_product_title.html", context).strip()
    description = render_to_string("catalog/_product_meta_description.html", context).strip()
    return ProductPage(
        pk=int(product.pk),
        slug=product.slug,
        category_id=int(product.category_id),
        in_stock=product.stock > 0,
        max_quantity=max(1, min(int(product.stock), 99)),
        title=mark_safe(title),  # nosec B308 B703  # a rendered (autoescaped) template
        meta_description=mark_safe(description),  # nosec B308 B703  # a rendered (autoescaped) template
        before_buy_box=mark_safe(before),  # nosec B308 B703  # a rendered (autoescaped) template
        after_buy_box=mark_safe(after),  # nosec B308 B703  # a rendered (autoescaped) template
    )


_BUY_BOX = (
    '<form class="buy-box" method="post" action="{}">'
    '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
    # the fields of orders.forms.AddToCartForm, written out: a bound form and its widget templates cost
    # more than the rest of the page
    '<input type="hidden" name="nonce" value="{}" id="id_nonce">'
    '<input type="hidden" name="product_id" value="{}" id="id_product_id">'
    '<input type="hidden" name="placement" value="{}" id="id_placement">'
    '<input type="hidden" name="position" value="{}" id="id_position">'
    '<input type="hidden" name="page_view_id" value="{}" id="id_page_view_id">'
    '<div class="qty"><label for="id_quantity">Quantity</label>'
    '<input type="number" name="quantity" id="id_quantity" value="1" min="1" max="{}" inputmode="numeric" '
    'class="qty-input" required></div>'
    '<button type="submit" class="btn btn-primary btn-block" data-add-to-cart>Add to cart</button>'
    "</form>"
)
_OUT_OF_STOCK = mark_safe(  # nosec B308 B703  # a constant
    '<div class="buy-box buy-box-out"><p><strong>Currently out of stock.</strong> We\'re restocking soon — '
    "in the meantime, see similar products below.</p>"
    '<button type="button" class="btn btn-block" disabled>Out of stock</button></div>'
)


def buy_box_html(
    page: ProductPage,
    *,
    action: str,
    csrf_token: str,
    nonce: str,
    placement: str,
    position: int | None,
    page_view_id: str,
) -> SafeString:
    """This render's buy box: the add-to-cart form with its token, nonce and attribution, each escaped."""
    if not page.in_stock:
        return _OUT_OF_STOCK
    return format_html(
        _BUY_BOX,
        action,
        csrf_token,
        nonce,
        page.pk,
        placement,
        "" if position is None else position,
        page_view_id,
        page.max_quantity,
    )

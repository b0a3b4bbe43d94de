"""The product page's product part, rendered once per product and process and held like the cards.

A product page is the product (breadcrumbs, picture, name, price, stock, description: the same for
every shopper), a buy box (this render's CSRF token, nonce, page view id and attribution) and the
rails. The product part is read with one fixed statement, written out as markup (escaped parts, as the
cards are) once and held for ``cards.CARD_TTL`` seconds, with a hole where the buy box goes; each
request fills the hole with a few escaped strings (:func:`buy_box_html`) instead of loading the product
and rendering it.

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
from functools import lru_cache

from django.http import Http404
from django.urls import get_script_prefix, reverse
from django.utils.html import escape, format_html, linebreaks
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from .cards import CARD_TTL, current_stamp, money, products_prefix, stock_class, stock_label
from .selectors import CategoryTree, PageProduct, category_tree_get, page_product_get

HELD_PAGES = 5_000  # products; a few kilobytes each


@lru_cache(maxsize=8)
def _home_url(script_prefix: str) -> str:
    return reverse("catalog:home")


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
    """The product part in markup (written out here, as the cards are: a template render of it cost more
    than the rest of a page whose product this process does not hold yet)."""
    category = tree.get(product.category_id)
    if category is None:  # a category added since this process read the tree
        tree = category_tree_get(refresh=True)
        category = tree.get(product.category_id)
    e = escape
    name, sku = e(product.name), e(product.sku)
    brand = None if product.brand_name is None else e(product.brand_name)
    brand_line = "" if brand is None else f'<p class="product-brand">{brand}</p>'
    crumbs = "".join(f'<li><a href="{e(b.url)}">{e(b.name)}</a></li>' for b in tree.ancestors(product.category_id))
    before = (
        "\n"
        '<nav class="breadcrumb" aria-label="Breadcrumb">\n'
        "  <ol>\n"
        f'    <li><a href="{e(_home_url(get_script_prefix()))}">Home</a></li>\n'
        f"    {crumbs}\n"
        f'    <li aria-current="page">{e(Truncator(product.name).chars(48))}</li>\n'
        "  </ol>\n"
        "</nav>\n"
        "\n"
        f'<article class="product" data-product-id="{product.pk}">\n'
        '  <div class="product-media">\n'
        f'    <img src="{e(products_prefix())}{product.pk}/image.svg?s=800" alt="{name}" '
        'width="800" height="800">\n'
        "  </div>\n"
        '  <div class="product-info">\n'
        f"    {brand_line}\n"
        f'    <h1 class="product-title">{name}</h1>\n'
        f'    <p class="product-sku">Item {sku}</p>\n'
        '    <div class="product-price-row">\n'
        f'      <span class="price price-large">{e(money(product.price))}</span>\n'
        f'      <span class="badge badge-{e(stock_class(product))}">{e(stock_label(product))}</span>\n'
        "    </div>\n"
        "\n"
        "    "
    )
    after = (
        "\n"
        "\n"
        '    <ul class="assurances">\n'
        "      <li>Free delivery on every order</li>\n"
        "      <li>Free 30-day returns</li>\n"
        "      <li>Pay on delivery</li>\n"
        "    </ul>\n"
        "  </div>\n"
        "</article>\n"
        "\n"
    )
    if product.description:
        after += (
            '\n<section class="product-description">\n'
            "  <h2>About this product</h2>\n"
            f"  {linebreaks(product.description, autoescape=True)}\n"
            '  <dl class="specs">\n'
            f"    {'' if brand is None else f'<dt>Brand</dt><dd>{brand}</dd>'}\n"
            f'    <dt>Category</dt><dd><a href="{e(category.url if category else "")}">'
            f"{e(category.name if category else '')}</a></dd>\n"
            f"    <dt>Item number</dt><dd>{sku}</dd>\n"
            "  </dl>\n"
            "</section>\n"
        )
    after += "\n"
    title = f"{name}{'' if brand is None else f' by {brand}'} — Larkspur Market"
    description = e(Truncator(product.description).chars(155)).strip()
    return ProductPage(
        pk=int(product.pk),
        slug=product.slug,
        category_id=int(product.category_id),
        in_stock=product.stock > 0,
        max_quantity=max(1, min(int(product.stock), 99)),
        title=mark_safe(title),  # nosec B308 B703  # built from escaped parts
        meta_description=mark_safe(description),  # nosec B308 B703  # escaped
        before_buy_box=mark_safe(before),  # nosec B308 B703  # built from escaped parts
        after_buy_box=mark_safe(after),  # nosec B308 B703  # built from escaped parts
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

"""Template helpers every storefront page uses: page view id, cart count, prices, paging links."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import quote

from django import template
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from shop.catalog.web import page_view_id_get

register = template.Library()


@register.simple_tag(takes_context=True)
def page_view_id(context) -> str:
    request = context.get("request")
    return str(page_view_id_get(request)) if request is not None else ""


@register.simple_tag(takes_context=True)
def cart_count(context) -> int:
    """Items in the visitor's cart (one query; views that loaded the cart set it on the request)."""
    request = context.get("request")
    if request is None or not hasattr(request, "visitor_id"):
        return 0
    known = getattr(request, "cart_count", None)
    if known is None:
        from shop.orders.selectors import cart_item_count

        known = cart_item_count(visitor_id=request.visitor_id)
        request.cart_count = known
    return known


@register.filter
def money(value) -> str:
    try:
        amount = Decimal(value)
    except (TypeError, ValueError, InvalidOperation):
        return ""
    return f"${amount:,.2f}"


@register.simple_tag(takes_context=True)
def url_with(context, **changes) -> str:
    """The current query string with some parameters changed (``None`` drops one)."""
    request = context["request"]
    params = request.GET.copy()
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = value
    return "?" + urlencode(sorted(params.lists()), doseq=True) if params else "?"


@register.filter
def stock_label(product) -> str:
    if product.stock <= 0:
        return "Out of stock"
    if product.stock <= 5:
        return f"Only {product.stock} left"
    return "In stock"


@register.filter
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


_CARD = (
    '<article class="card" data-product-id="{pk}" data-placement="{placement}" data-position="{position}"{extra}>'
    '<a class="card-link" href="{url}?from={placement_q}&amp;pos={position}">'
    '<div class="card-media"><img src="{img}" alt="{name}" loading="lazy" decoding="async" width="400" height="400">'
    "{flag}</div>"
    '<div class="card-body">{brand}<h3 class="card-title">{name}</h3>'
    '<div class="card-foot"><span class="price">{price}</span>'
    '<span class="badge badge-{stock_class}">{stock_label}</span></div></div></a></article>'
)


_SOLD_OUT = mark_safe('<span class="card-flag">Sold out</span>')


@register.simple_tag
def product_card(product, placement: str, position: int, arm: str | None = None, model_version: str | None = None):
    """One product card (rendered in Python: a page shows dozens of them, and a template include
    per card costs more than the rest of the page). Carries the beacon's data attributes."""
    prefix = _products_prefix(get_script_prefix())
    extra = mark_safe("")
    if arm:
        extra += format_html(' data-arm="{}"', arm)
    if model_version:
        extra += format_html(' data-model-version="{}"', model_version)
    return format_html(
        _CARD,
        pk=product.pk,
        placement=placement,
        placement_q=quote(placement, safe=""),
        position=position,
        extra=extra,
        url=f"{prefix}{product.pk}/{product.slug}/",
        img=f"{prefix}{product.pk}/image.svg",
        name=product.name,
        flag=_SOLD_OUT if product.stock <= 0 else "",
        brand=format_html('<p class="card-brand">{}</p>', product.brand.name) if product.brand_id else "",
        price=money(product.price),
        stock_class=stock_class(product),
        stock_label=stock_label(product),
    )

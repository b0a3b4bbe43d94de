"""Template helpers every storefront page uses: page view id, cart count, prices, paging links."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import quote

from django import template
from django.conf import settings
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import slugify

from shop.catalog.web import page_view_id_get

register = template.Library()


@register.simple_tag(takes_context=True)
def page_view_id(context) -> str:
    request = context.get("request")
    return str(page_view_id_get(request)) if request is not None else ""


def _has_visitor_cookie(request) -> bool:
    try:
        return uuid.UUID(request.COOKIES.get(settings.VISITOR_COOKIE, "")) == request.visitor_id
    except ValueError:
        return False


@register.simple_tag(takes_context=True)
def cart_count(context) -> int:
    """Items in the visitor's cart (one query; views that loaded the cart set it on the request)."""
    request = context.get("request")
    if request is None or not hasattr(request, "visitor_id"):
        return 0
    known = getattr(request, "cart_count", None)
    if known is None and not _has_visitor_cookie(request):
        known = request.cart_count = 0  # a visitor id minted for this request has no cart yet
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


@lru_cache(maxsize=256)
def _route(script_prefix: str, name: str, args: tuple) -> str:
    return reverse(name, args=args)


@register.simple_tag
def route(name: str, *args) -> str:
    """``{% url %}`` for the fixed links every page repeats (header, footer), resolved once per process."""
    return _route(get_script_prefix(), name, args)


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


_RAIL_MORE = '<a class="rail-more" href="{}">See all <span aria-hidden="true">→</span></a>'


@register.simple_tag
def rail_section(rail) -> str:
    """A whole rail (``<section>`` with its cards), rendered in Python like the cards it holds;
    the storefront caches it per placement and product ids (``rails.rails_html``)."""
    if rail is None or not rail.products:
        return ""
    slug = slugify(rail.placement)
    cards = "\n".join(
        product_card(p, rail.placement, i, rail.arm, rail.model_version) for i, p in enumerate(rail.products)
    )
    return format_html(
        '<section class="rail" data-placement="{placement}" aria-labelledby="rail-{slug}">\n'
        '<div class="rail-head"><h2 id="rail-{slug}">{title}</h2>{more}</div>\n'
        '<div class="rail-track">\n{cards}\n</div>\n</section>\n',
        placement=rail.placement,
        slug=slug,
        title=rail.title,
        more=format_html(_RAIL_MORE, rail.see_all_url) if rail.see_all_url else "",
        cards=mark_safe(cards),  # each card is escaped by format_html
    )


@lru_cache(maxsize=8)
def _category_prefix(script_prefix: str) -> str:
    # "/c/x/" -> "/c/": one reverse per process instead of one per link per page
    return reverse("catalog:category", kwargs={"slug": "x"})[: -len("x/")]


@register.simple_tag
def category_links(categories, current_slug: str = "", limit: int | None = None) -> str:
    """``<li>`` links to top-level categories (navigation bar and footer); marks the current one."""
    prefix = _category_prefix(get_script_prefix())
    items = categories if limit is None else categories[:limit]
    return mark_safe(
        "".join(
            format_html(
                '<li><a href="{}{}/"{}>{}</a></li>',
                prefix,
                quote(c["slug"], safe=""),
                mark_safe(' aria-current="page"') if current_slug and c["slug"] == current_slug else "",
                c["name"],
            )
            for c in items
        )
    )

"""Template helpers every storefront page uses: page view id, cart count, prices, paging links."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from django import template
from django.templatetags.static import static
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from shop.catalog import cards
from shop.catalog.cart_hint import cart_may_have_lines
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
    if known is None and not cart_may_have_lines(request):
        known = request.cart_count = 0  # a new visitor, or an anonymous one whose cart was never seen
    if known is None:
        from shop.orders.selectors import page_cart

        # the same read as the page's personalised rails (one query per render)
        lines = page_cart(visitor_id=request.visitor_id, page_view_id=page_view_id_get(request))
        known = sum(qty for _, qty in lines)
        request.cart_count = known
    return known


@register.filter
def money(value) -> str:
    return cards.money(value)


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
    return cards.stock_label(product)


@register.filter
def stock_class(product) -> str:
    return cards.stock_class(product)


@lru_cache(maxsize=256)
def _route(script_prefix: str, name: str, args: tuple) -> str:
    return reverse(name, args=args)


@lru_cache(maxsize=256)
def _asset(script_prefix: str, path: str) -> str:
    return static(path)


@register.simple_tag
def asset(path: str) -> str:
    """``{% static %}`` resolved once per process: the manifest's hashed names change only with a deploy
    (a restart), and every page links the same stylesheet, scripts and icons."""
    return _asset(get_script_prefix(), path)


@register.simple_tag
def route(name: str, *args) -> str:
    """``{% url %}`` for the fixed links every page repeats (header, footer), resolved once per process."""
    return _route(get_script_prefix(), name, args)


@register.simple_tag
def product_card(product, placement: str, position: int, arm: str | None = None, model_version: str | None = None):
    """One product card (rendered in Python, see ``catalog.cards``: a page shows dozens of them, and a
    template include per card costs more than the rest of the page). Carries the beacon's data attributes."""
    return mark_safe(cards.card_parts(product).render(placement, position, arm, model_version))  # nosec B308 B703  # catalog.cards escapes every part


@register.simple_tag
def rail_section(rail) -> str:
    """A whole rail (``<section>`` with its cards) from a :class:`~shop.catalog.rails.Rail`."""
    if rail is None or not rail.products:
        return ""
    parts = [cards.card_parts(p) for p in rail.products]
    return rail_markup(placement=rail.placement, title=rail.title, see_all_url=rail.see_all_url, items=parts,
                       arm=rail.arm, model_version=rail.model_version)  # fmt: skip


def rail_markup(
    *,
    placement: str,
    title: str,
    see_all_url: str,
    items: list[cards.CardParts],
    arm: str | None = None,
    model_version: str | None = None,
) -> SafeString:
    """A rail's ``<section>``: its title, the "see all" link and the cards, in order (positions from 0)."""
    slug = _rail_slug(placement)
    body = "\n".join(card.render(placement, i, arm, model_version) for i, card in enumerate(items))
    more = format_html(_RAIL_MORE, see_all_url) if see_all_url else ""
    return format_html(
        '<section class="rail" data-placement="{placement}" aria-labelledby="rail-{slug}">\n'
        '<div class="rail-head"><h2 id="rail-{slug}">{title}</h2>{more}</div>\n'
        '<div class="rail-track">\n{cards}\n</div>\n</section>\n',
        placement=placement,
        slug=slug,
        title=title,
        more=more,
        cards=mark_safe(body),  # each card's parts are escaped (catalog.cards)  # nosec B308 B703
    )


def grid_markup(*, ids: list[int], placement: str, offset: int = 0) -> SafeString:
    """A grid of product cards (category and search results) from the cards this process holds
    (``catalog.cards``; one query for those it does not); positions count from ``offset``."""
    held = cards.cards_get(ids=ids)
    shown = [held[pid] for pid in ids if held.get(pid) is not None]
    body = "\n".join(card.render(placement, offset + i) for i, card in enumerate(shown))
    return mark_safe(f'<div class="product-grid">\n{body}\n</div>')  # each card's parts are escaped  # nosec B308 B703


@lru_cache(maxsize=256)
def _rail_slug(placement: str) -> str:
    return slugify(placement)


_RAIL_MORE = '<a class="rail-more" href="{}">See all <span aria-hidden="true">→</span></a>'


@lru_cache(maxsize=8)
def _category_prefix(script_prefix: str) -> str:
    # "/c/x/" -> "/c/": one reverse per process instead of one per link per page
    return reverse("catalog:category", kwargs={"slug": "x"})[: -len("x/")]


@register.simple_tag
def category_links(categories, current_slug: str = "", limit: int | None = None) -> str:
    """``<li>`` links to top-level categories (navigation bar and footer); marks the current one."""
    items = categories if limit is None else categories[:limit]
    return _category_links(get_script_prefix(), tuple((c["slug"], c["name"]) for c in items), current_slug or "")


@lru_cache(maxsize=512)
def _category_links(script_prefix: str, items: tuple[tuple[str, str], ...], current_slug: str) -> SafeString:
    # every page renders the bar and the footer: formatted once per process for each list and current
    # category (the key is the list itself, so a renamed or added category makes a new entry)
    prefix = _category_prefix(script_prefix)
    return mark_safe(  # nosec B308 B703  # joined format_html() output, each value escaped
        "".join(
            format_html(
                '<li><a href="{}{}/"{}>{}</a></li>',
                prefix,
                quote(slug, safe=""),
                mark_safe(' aria-current="page"') if current_slug and slug == current_slug else "",  # nosec B308 B703  # a constant
                name,
            )
            for slug, name in items
        )
    )


@register.simple_tag
def category_tiles(categories, limit: int = 12) -> str:
    """The home page's "Shop by category" tiles (``<li>`` each), formatted once per process per list."""
    return _category_tiles(get_script_prefix(), tuple((c["slug"], c["name"]) for c in categories[:limit]))


@lru_cache(maxsize=64)
def _category_tiles(script_prefix: str, items: tuple[tuple[str, str], ...]) -> SafeString:
    prefix = _category_prefix(script_prefix)
    return mark_safe(  # nosec B308 B703  # joined format_html() output, each value escaped
        "".join(
            format_html(
                '<li><a class="tile tile-{}" href="{}{}/"><span>{}</span>'
                '<span class="tile-arrow" aria-hidden="true">→</span></a></li>',
                "a" if i % 2 == 0 else "b",
                prefix,
                quote(slug, safe=""),
                name,
            )
            for i, (slug, name) in enumerate(items)
        )
    )

"""Product rails: the slots ("placements") on every page where a row of products goes.

A placement has a name (``"home.popular"``, ``"product.more_from_category"``), a title and a
*source*: a function that returns ranked candidate product ids for a :class:`RailContext`.
:func:`rails_fill` asks each placement's source for ids, removes what an earlier rail on the
same page already shows, then loads every product of every rail in ONE query.

Later work plugs recommendations in by replacing a placement's source (see
:func:`placement_register`); pages and templates do not change. A source may return
:class:`Candidates` to tag the rail with the experiment arm and model version that ranked it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db import DatabaseError
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from shop.events.models import EventType
from shop.events.services import EventIn, events_record, impression_key

from .cards import cards_get
from .models import Product
from .selectors import (
    CategoryTree,
    popular_product_ids,
    products_by_ids,
    ranked_product_ids,
    trending_product_ids,
)
from .stock import sold_out_ids

DEFAULT_RAIL_SIZE = 8
# A lone card does not read as a row; a rail with fewer candidates is left out (its products stay free).
MIN_RAIL_SIZE = 2
# Sources rank more than a rail shows, so exclusions (this product, earlier rails) still leave a full rail.
CANDIDATE_POOL = 32
POPULAR_TTL = 300
NEW_ARRIVALS_TTL = 60
TRENDING_TTL = 60

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rail:
    """A filled rail, ready for ``_rail.html``."""

    placement: str
    title: str
    products: list[Product]
    see_all_url: str = ""
    arm: str | None = None
    model_version: str | None = None


@dataclass(frozen=True, slots=True)
class RailContext:
    """What a source may use to rank: who is looking, and at what."""

    visitor_id: uuid.UUID | None = None
    user_id: int | None = None
    category_id: int | None = None
    category_name: str = ""
    category_url: str = ""
    product_id: int | None = None
    tree: CategoryTree | None = None
    exclude_ids: frozenset[int] = frozenset()
    page_view_id: uuid.UUID | None = None  # the render whose rails these are (impression keys)
    device: str = ""
    after_load: bool = False  # a rail fetched after its page loaded: no header on this request reads the cart
    no_cart: bool = False  # the visitor has no cart lines to read (``catalog.cart_hint``)

    def scope_ids(self) -> tuple[int, ...] | None:
        """The category and its descendants, or None for the whole catalog."""
        if self.category_id is None:
            return None
        if self.tree is None:
            return (self.category_id,)
        return self.tree.descendant_ids(self.category_id)


@dataclass(frozen=True, slots=True)
class Candidates:
    ids: Sequence[int]
    arm: str | None = None
    model_version: str | None = None


Source = Callable[[RailContext], "Sequence[int] | Candidates"]


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    title: str  # may use {category}
    source: Source
    size: int = DEFAULT_RAIL_SIZE
    min_size: int = MIN_RAIL_SIZE
    see_all: bool = False  # link the title to the context's category


def _scope_key(context: RailContext) -> str:
    return "all" if context.category_id is None else str(context.category_id)


def popular_ids(context: RailContext, *, at_least: int = CANDIDATE_POOL) -> list[int]:
    """Highest 7-day decayed popularity in the scope (an indexed column; cached), topped up with the newest.

    ``at_least`` asks for a deeper list (rounded up to a multiple of CANDIDATE_POOL, each depth cached on its
    own): a rail that must leave out many products (those of the page's other rails) still fills."""
    depth = CANDIDATE_POOL * min(16, max(1, -(-int(at_least) // CANDIDATE_POOL)))  # at most 512
    key = f"rails:popular:{_scope_key(context)}" + (f":{depth}" if depth > CANDIDATE_POOL else "")
    ids = cache.get(key)
    if ids is None:
        ids = popular_product_ids(category_ids=context.scope_ids(), limit=depth)
        if len(ids) < depth:
            have = set(ids)
            ids = (ids + [i for i in new_arrival_ids(context) if i not in have])[:depth]
        cache.set(key, ids, POPULAR_TTL)
    return ids


def new_arrival_ids(context: RailContext) -> list[int]:
    """Newest in-stock products in the scope (cached briefly)."""
    key = f"rails:new:{_scope_key(context)}"
    ids = cache.get(key)
    if ids is None:
        ids = ranked_product_ids(None, category_ids=context.scope_ids(), limit=CANDIDATE_POOL)
        cache.set(key, ids, NEW_ARRIVALS_TTL)
    return ids


def trending_ids(context: RailContext) -> list[int]:
    """Highest 1-day decayed interest (views, adds, sales) in the scope: an indexed column kept by
    ``catalog.popularity``, so the cost does not grow with the log (cached briefly); topped up with the popular."""
    key = f"rails:trending:{_scope_key(context)}"
    ids = cache.get(key)
    if ids is None:
        ids = trending_product_ids(category_ids=context.scope_ids(), limit=CANDIDATE_POOL)
        if len(ids) < CANDIDATE_POOL:
            have = set(ids)
            ids = (ids + [i for i in popular_ids(context) if i not in have])[:CANDIDATE_POOL]
        cache.set(key, ids, TRENDING_TTL)
    return ids


def no_ids(context: RailContext) -> list[int]:
    """Default for personalised placements: empty (the rail is hidden) until a recommender plugs in."""
    return []


PLACEMENTS: dict[str, Placement] = {}


def placement_register(placement: Placement) -> Placement:
    """Add or replace a placement (later: a recommender-backed source for the same name)."""
    PLACEMENTS[placement.name] = placement
    return placement


for _p in (
    Placement("home.recommended", "Recommended for you", no_ids),
    Placement("home.trending", "Trending now", trending_ids),
    Placement("home.popular", "Popular right now", popular_ids),
    Placement("home.new_arrivals", "New arrivals", new_arrival_ids),
    Placement("category.popular", "Popular in {category}", popular_ids),
    Placement("category.new_arrivals", "New in {category}", new_arrival_ids),
    Placement("product.more_from_category", "More from {category}", new_arrival_ids, see_all=True),
    Placement("product.popular", "Popular in {category}", popular_ids, see_all=True),
    Placement("product.new_arrivals", "New arrivals", new_arrival_ids),
    Placement("product.recommended", "You may also like", no_ids),
    Placement("cart.recommended", "Complete your order", no_ids),
    Placement("cart.popular", "You might also like", popular_ids),
    Placement("search.popular", "Popular right now", popular_ids),
    Placement("account.new_arrivals", "New arrivals", new_arrival_ids),
):
    placement_register(_p)


@dataclass(slots=True)
class RailRequest:
    """One placement to fill on a page, optionally with its own context (e.g. a wider category)."""

    placement: str
    context: RailContext | None = None
    _ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RailPlan:
    """A rail whose products are chosen (ids, in order) but not loaded yet."""

    placement: str
    title: str
    product_ids: tuple[int, ...]
    min_size: int
    see_all_url: str = ""
    arm: str | None = None
    model_version: str | None = None


def rails_plan(
    *,
    requests: Sequence[RailRequest | str],
    context: RailContext,
    with_events: Sequence[EventIn] = (),
    user: AbstractBaseUser | None = None,
) -> list[RailPlan]:
    """Choose each placement's products in page order; a product appears in one rail of a page at most.

    Sold-out products are left out (:mod:`.stock`). Queries: each cold source once (then cached); the
    sold-out set when this process's is older than SOLD_OUT_TTL_S; no product is loaded; one statement for the
    served rails' impressions together with ``with_events`` (the page's own events of this visitor,
    e.g. its view), none when there is nothing to write.
    """
    shown: set[int] = set(context.exclude_ids)
    if context.product_id is not None:
        shown.add(context.product_id)
    sold_out = sold_out_ids()  # lists ranked before a product sold out still name it: never shown in a rail
    plans: list[RailPlan] = []
    for req in requests:
        req = RailRequest(req) if isinstance(req, str) else req
        placement = PLACEMENTS[req.placement]
        ctx = req.context or context
        raw = placement.source(ctx)
        cands = raw if isinstance(raw, Candidates) else Candidates(ids=raw)
        picked: list[int] = []
        for pid in cands.ids:
            if pid not in shown and pid not in sold_out:
                picked.append(pid)
                shown.add(pid)
                if len(picked) >= placement.size:
                    break
        if len(picked) < placement.min_size:
            shown.difference_update(picked)
            continue
        plans.append(
            RailPlan(
                placement=placement.name,
                title=placement.title.format(category=ctx.category_name or "the shop"),
                product_ids=tuple(picked),
                min_size=placement.min_size,
                see_all_url=ctx.category_url if placement.see_all else "",
                arm=cands.arm,
                model_version=cands.model_version,
            )
        )
    _impressions_record(plans, context, with_events=with_events, user=user)
    return plans


def _impressions_record(
    plans: Sequence[RailPlan],
    context: RailContext,
    *,
    with_events: Sequence[EventIn] = (),
    user: AbstractBaseUser | None = None,
) -> None:
    """Server-side impressions of the rails a ranker served (those tagged with an arm), with the arm and
    model version that ranked them: what was served, whether or not the browser later reports it seen
    (the beacon's impressions have source ``beacon``), written in one statement with ``with_events``.

    Impressions alone never break the page (a failure is logged); with the page's own events (its
    view) a failure propagates, as that event's own write would: a view is never dropped silently."""
    served = [plan for plan in plans if plan.arm]
    if with_events and context.visitor_id is None:
        raise ValueError("with_events needs the visitor the events belong to")
    if context.visitor_id is None or not (served or with_events):
        return
    pvid = context.page_view_id or uuid.uuid4()
    impressions = [
        EventIn(
            type=EventType.IMPRESSION,
            product_id=pid,
            idempotency_key=impression_key(page_view_id=pvid, placement=plan.placement, position=pos),
            placement=plan.placement,
            position=pos,
            page_view_id=pvid,
            arm=plan.arm,
            model_version=plan.model_version,
            device=context.device,
        )
        for plan in served
        for pos, pid in enumerate(plan.product_ids)
    ]
    if with_events:
        events_record(visitor_id=context.visitor_id, user=user, events=[*with_events, *impressions])
        return
    try:
        events_record(visitor_id=context.visitor_id, user=None, events=impressions)
    except DatabaseError:
        log.warning("rail impressions not recorded", exc_info=True)


def rail_from_plan(plan: RailPlan, products: dict[int, Product]) -> Rail | None:
    """The filled rail, or None when too few of its products are still active."""
    items = [products[pid] for pid in plan.product_ids if pid in products]
    if len(items) < plan.min_size:
        return None
    return Rail(
        placement=plan.placement,
        title=plan.title,
        products=items,
        see_all_url=plan.see_all_url,
        arm=plan.arm,
        model_version=plan.model_version,
    )


def rails_fill(*, requests: Sequence[RailRequest | str], context: RailContext) -> list[Rail]:
    """Fill placements in page order; a product appears in one rail of a page at most.

    Queries: each cold source once (then cached), plus one for all products of all rails.
    """
    plans = rails_plan(requests=requests, context=context)
    products = products_by_ids(ids=[pid for plan in plans for pid in plan.product_ids])
    return [rail for rail in (rail_from_plan(plan, products) for plan in plans) if rail is not None]


@dataclass(frozen=True, slots=True)
class RailHtml:
    """A rendered rail: its placement (for anchors) and its markup (``{{ rail }}`` renders the markup)."""

    placement: str
    html: SafeString

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def rails_html(
    *,
    requests: Sequence[RailRequest | str],
    context: RailContext,
    with_events: Sequence[EventIn] = (),
    user: AbstractBaseUser | None = None,
    after_load: Collection[str] | None = None,
) -> list[RailHtml]:
    """The rails of a page, rendered from the cards this process holds (``catalog.cards``).

    A placement in ``after_load`` (default: the ``RAILS_AFTER_LOAD`` setting) is not filled here: its place
    holds an empty ``<section data-rail-src>`` whose address (:func:`rail_src`) the browser fetches once the
    page has loaded, carrying this render's page view, the page's product and the products the page's other
    rails show (so the two never repeat each other). The page does not wait for a live re-rank.

    Queries: each cold source once, one statement for the impressions and ``with_events`` (see
    :func:`rails_plan`), plus one for the products of the rails whose cards this process does not hold
    (none when all are held). A card may show a price or stock level up to ``cards.CARD_TTL`` seconds
    old, as the id lists behind it already may.
    """
    from .templatetags.storefront import rail_markup  # rendering lives with the other card helpers

    later = set(settings.RAILS_AFTER_LOAD if after_load is None else after_load)
    reqs = [RailRequest(r) if isinstance(r, str) else r for r in requests]
    now = [r for r in reqs if r.placement not in later]
    plans = rails_plan(requests=now, context=context, with_events=with_events, user=user)
    cards = cards_get(ids=[pid for plan in plans for pid in plan.product_ids])
    html: dict[str, SafeString] = {}
    for plan in plans:
        items = [cards[pid] for pid in plan.product_ids if cards.get(pid) is not None]
        if len(items) < plan.min_size:
            continue  # too few of its products are still active
        html[plan.placement] = rail_markup(
            placement=plan.placement,
            title=plan.title,
            see_all_url=plan.see_all_url,
            items=items,
            arm=plan.arm,
            model_version=plan.model_version,
        )
    if len(now) < len(reqs):
        shown = sorted({pid for plan in plans for pid in plan.product_ids} | set(context.exclude_ids))
        for req in reqs:
            if req.placement in later:
                ctx = req.context or context
                src = rail_src(
                    placement=req.placement,
                    product_id=ctx.product_id,
                    page_view_id=context.page_view_id,
                    exclude_ids=shown[:RAIL_EXCLUDE_MAX],
                )
                html[req.placement] = format_html(
                    '<section class="rail rail-later" data-placement="{}" data-rail-src="{}" aria-busy="true">'
                    "</section>\n",
                    req.placement,
                    src,
                )
    return [RailHtml(placement=r.placement, html=html[r.placement]) for r in reqs if r.placement in html]


# The products a rail fetched after load leaves out: those of the page's other rails (at most 3 x 8).
RAIL_EXCLUDE_MAX = 64


def rail_src(
    *, placement: str, product_id: int | None, page_view_id: uuid.UUID | None, exclude_ids: Sequence[int]
) -> str:
    """Where the browser fetches a rail after load (see :func:`rails_html`)."""
    query = {}
    if product_id is not None:
        query["product"] = str(product_id)
    if page_view_id is not None:
        query["pv"] = str(page_view_id)
    if exclude_ids:
        query["exclude"] = ",".join(str(int(pid)) for pid in exclude_ids)
    return reverse("catalog:rail", kwargs={"placement": placement}) + ("?" + urlencode(query) if query else "")


def context_for_category(*, base: RailContext, tree: CategoryTree, category_id: int, **overrides) -> RailContext:
    """``base`` narrowed to a category of ``tree`` (name and link filled in)."""
    node = tree.get(category_id)
    return replace(
        base,
        tree=tree,
        category_id=category_id,
        category_name=node.name if node else "",
        category_url=node.url if node else "",
        **overrides,
    )

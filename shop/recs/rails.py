"""Rail sources backed by the recommendation service (:mod:`shop.recs.live`).

Registered by ``RecsConfig.ready`` for the personalised placements: home "Recommended for you", product
page "You may also like", cart "Complete your order" and "Trending now". The storefront's pages do not
change, only the source behind the slot. A rail never breaks a page: whatever goes wrong, the popular list
fills it (and the fault is counted).
"""

from __future__ import annotations

import logging

from shop.catalog.rails import CANDIDATE_POOL, Candidates, Placement, RailContext, placement_register, popular_ids
from shop.orders.selectors import cart_lines_brief, page_cart

from .live import PLACEMENTS, checked_by_use, recommendations_serve
from .stats import serving_record

log = logging.getLogger(__name__)


def _cart_for_render(context: RailContext) -> tuple[int, ...] | None:
    """The cart's products, read once per page render (shared with the header's badge); none to read for a
    visitor the cart hint says has none, in the page or after load. None for a rail fetched after load by a
    browser that may have a cart: the service then reads it in the same round trip as the visitor's events."""
    if context.visitor_id is None:
        return None
    if context.no_cart:
        return ()
    if context.page_view_id is None or context.after_load:
        return None
    visitor_id = context.visitor_id
    lines = page_cart(
        visitor_id=visitor_id,
        page_view_id=context.page_view_id,
        read=lambda: checked_by_use(lambda: cart_lines_brief(visitor_id=visitor_id)),
    )
    return tuple(pid for pid, _ in lines)


def _source(placement: str):
    def source(context: RailContext) -> Candidates:
        if context.visitor_id is None:
            return Candidates(ids=popular_ids(context))
        try:
            served = recommendations_serve(
                visitor_id=context.visitor_id,
                user_id=context.user_id,
                placement=placement,
                k=CANDIDATE_POOL,
                exclude_ids=tuple(context.exclude_ids),
                product_id=context.product_id if placement == "product.recommended" else None,
                device=context.device,
                # the cart page passes its cart as the exclusions; other pages read it once per render
                cart_ids=context.exclude_ids if placement == "cart.recommended" else _cart_for_render(context),
            )
        except Exception:  # a bug, not a serving fault (those fall back inside): the page still renders
            log.exception("recommendations for %s failed", placement)
            serving_record(
                placement=placement, arm=None, source="fallback", reason="error", model_version=None, timings_ms={}
            )
            return Candidates(ids=popular_ids(RailContext()))
        return Candidates(ids=served.product_ids, arm=served.arm or "", model_version=served.model_version)

    return source


def register_recommendation_placements() -> None:
    for name, title in PLACEMENTS.items():
        placement_register(Placement(name, title, _source(name)))

"""A shopper's whole journey in a real browser, then the interaction log it left behind."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from shop.events.middleware import visitor_id_from_cookie
from shop.events.models import Event, EventType
from shop.orders.models import Order

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _wait_for(predicate, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_home_to_order_confirmation_logs_every_interaction_once(live_server, page):
    call_command("seed_catalog", products=300, seed=7, verbosity=0)

    # Home: rails of product cards.
    page.goto(live_server.url + "/")
    assert page.locator("[data-product-id][data-placement]").count() > 0
    visitor_id = visitor_id_from_cookie(next(c["value"] for c in page.context.cookies() if c["name"] == "vid"))

    # Category: from the navigation bar.
    page.locator("nav.category-nav a").first.click()
    page.wait_for_load_state("domcontentloaded")
    grid_cards = page.locator("[data-product-id][data-placement][data-position]")
    assert grid_cards.count() > 0
    category_page_view = page.locator("body").get_attribute("data-page-view-id")
    # let the IntersectionObserver see the cards above the fold
    page.wait_for_timeout(500)

    # Product: click the first in-stock card of the category listing.
    card = page.locator("[data-product-id][data-placement][data-position]:not(:has(.card-flag))").first
    product_id = int(card.get_attribute("data-product-id"))
    placement = card.get_attribute("data-placement")
    position = int(card.get_attribute("data-position"))
    card.locator("a").first.click()
    page.wait_for_url(f"**/products/{product_id}/**")
    product_name = page.locator("h1").first.inner_text()

    # Add to cart, then check out.
    page.locator("[data-add-to-cart]").click()
    page.wait_for_load_state("domcontentloaded")
    page.goto(live_server.url + "/cart/")
    assert product_name in page.content()
    page.goto(live_server.url + "/checkout/")
    page.get_by_label("Full name").fill("Ada Shopper")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Street address").fill("1 Market Street")
    page.get_by_label("City").fill("Springfield")
    page.get_by_label("Postal code").fill("12345")
    country = page.get_by_label("Country")
    if country.evaluate("el => el.tagName") == "SELECT":
        country.select_option(index=1)
    else:
        country.fill("Netherlands")
    page.locator("form.checkout-form button[type=submit]").click()
    page.wait_for_url("**/orders/**")
    assert "Thank" in page.content() or "thank" in page.content()

    order = Order.objects.get(visitor_id=visitor_id)
    assert order.number in page.content()
    assert list(order.lines.values_list("product_id", flat=True)) == [product_id]

    # Beacon posts are asynchronous: wait until the click has arrived.
    mine = Event.objects.filter(visitor_id=visitor_id)
    assert _wait_for(lambda: mine.filter(type=EventType.CLICK).exists()), "the click never reached the log"

    clicks = list(mine.filter(type=EventType.CLICK))
    assert [(e.product_id, e.placement, e.position) for e in clicks] == [(product_id, placement, position)]
    assert str(clicks[0].page_view_id) == category_page_view

    views = list(mine.filter(type=EventType.VIEW))
    assert [(e.product_id, e.placement) for e in views] == [(product_id, placement)]
    adds = list(mine.filter(type=EventType.ADD_TO_CART))
    assert [(e.product_id, e.quantity) for e in adds] == [(product_id, 1)]
    purchases = list(mine.filter(type=EventType.PURCHASE))
    assert [(e.product_id, e.order_id) for e in purchases] == [(product_id, order.pk)]

    impressions = list(mine.filter(type=EventType.IMPRESSION, page_view_id=category_page_view))
    assert impressions, "no impressions were logged for the category page"
    slots = [(e.placement, e.position) for e in impressions]
    assert len(slots) == len(set(slots)), "an impression was stored twice"
    assert (placement, position) in slots, "the clicked card was never logged as seen"
    assert all(e.position is not None and e.placement for e in impressions)
    assert {e.visitor_id for e in mine} == {visitor_id}


def test_the_personal_rail_arrives_after_load_and_the_beacon_watches_it(live_server, page):
    """The product page is answered without its "You may also like" rail; the page's script fetches it, puts it
    in place, and the beacon reports its cards seen and clicked like the page's own."""
    from django.core.cache import cache

    from shop.catalog.cards import cards_forget

    cache.clear()  # lists held from an earlier test's catalog (its products are gone) would empty the rails
    cards_forget()
    call_command("seed_catalog", products=120, seed=3, verbosity=0)
    page.goto(live_server.url + "/")
    page.locator("[data-product-id][data-placement] a").first.click()
    page.wait_for_load_state("domcontentloaded")
    pvid = page.locator("body").get_attribute("data-page-view-id")
    rail = page.locator('section.rail[data-placement="product.recommended"]')
    rail.locator("[data-product-id]").first.wait_for(state="attached", timeout=10_000)
    assert page.locator("section[data-rail-src]").count() == 0  # the placeholder was replaced
    assert "You may also like" in rail.inner_text()
    rail.scroll_into_view_if_needed()
    seen: list[dict] = []

    def queued() -> bool:  # the beacon's queue before its next flush (every 5 s)
        seen[:] = [e for e in page.evaluate("window.shopBeacon.pending()") if e["placement"] == "product.recommended"]
        return bool(seen)

    assert _wait_for(queued, timeout=4.0), "the beacon never saw the rail's cards"
    assert all(e["type"] == "impression" and e["page_view_id"] == pvid for e in seen)
    # the server recorded the rail it served under the same keys: each slot once
    stored = Event.objects.filter(type=EventType.IMPRESSION, placement="product.recommended", page_view_id=pvid)
    slots = list(stored.values_list("position", flat=True))
    assert slots and len(slots) == len(set(slots)) and {e["position"] for e in seen} <= set(slots)

    card = rail.locator("[data-product-id]").first
    product_id, position = int(card.get_attribute("data-product-id")), int(card.get_attribute("data-position"))
    card.locator("a").first.click()
    page.wait_for_url(f"**/products/{product_id}/**")
    assert _wait_for(
        lambda: Event.objects.filter(
            type=EventType.CLICK, placement="product.recommended", position=position, page_view_id=pvid
        ).exists()
    ), "the click on the rail fetched after load never reached the log"

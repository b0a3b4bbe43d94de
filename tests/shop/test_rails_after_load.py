"""Personal rails fetched after the page has loaded (``RAILS_AFTER_LOAD``): the page holds an empty section
with the rail's address, ``/rails/<placement>`` answers its markup and records its impressions."""

from __future__ import annotations

import re
import uuid
from html import unescape

import pytest

from shop.events.models import Event, EventType
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

SRC = re.compile(r'<section class="rail rail-later" data-placement="([^"]+)" data-rail-src="([^"]+)"')


@pytest.fixture
def catalog():
    category = CategoryFactory()
    return [ProductFactory(category=category) for _ in range(30)]


def _cards(html: str, placement: str) -> list[int]:
    return [int(m) for m in re.findall(rf'data-product-id="(\d+)" data-placement="{re.escape(placement)}"', html)]


def test_the_product_page_leaves_its_personal_rail_to_after_load(client, catalog):
    product = catalog[0]
    page = client.get(product.get_absolute_url())
    html = page.content.decode()
    assert page.status_code == 200
    (placement, src), *more = SRC.findall(html)
    assert placement == "product.recommended" and more == []
    assert _cards(html, "product.recommended") == []  # nothing ranked while the page waited
    pvid = re.search(r'data-page-view-id="([0-9a-f-]+)"', html).group(1)
    shown = {pid for name in ("product.more_from_category", "product.popular", "product.new_arrivals")
             for pid in _cards(html, name)}  # fmt: skip
    params = dict(p.split("=", 1) for p in unescape(src).split("?", 1)[1].split("&"))
    assert params["product"] == str(product.pk) and params["pv"] == pvid
    assert set(map(int, params["exclude"].replace("%2C", ",").split(","))) == shown
    view = Event.objects.get(type=EventType.VIEW)
    assert not Event.objects.filter(type=EventType.IMPRESSION, placement="product.recommended").exists()

    rail = client.get(unescape(src), HTTP_ACCEPT="text/html")
    assert rail.status_code == 200 and rail["Content-Type"].startswith("text/html")
    assert "no-store" in rail["Cache-Control"] and "private" in rail["Cache-Control"]
    body = rail.content.decode()
    assert body.startswith('<section class="rail" data-placement="product.recommended"')
    assert "You may also like" in body
    ids = _cards(body, "product.recommended")
    assert len(ids) >= 2 and product.pk not in ids and not set(ids) & shown
    imps = Event.objects.filter(type=EventType.IMPRESSION, placement="product.recommended")
    assert sorted(imps.values_list("position", flat=True)) == list(range(len(ids)))
    assert {str(e.page_view_id) for e in imps} == {pvid} and {e.visitor_id for e in imps} == {view.visitor_id}
    assert [e.product_id for e in imps.order_by("position")] == ids

    again = client.get(unescape(src), HTTP_ACCEPT="text/html")  # a reload of the rail: the same keys
    assert again.status_code == 200 and imps.count() == len(ids)


def test_the_home_page_leaves_recommended_for_you_to_after_load(client, catalog):
    html = client.get("/").content.decode()
    assert [p for p, _ in SRC.findall(html)] == ["home.recommended"]
    src = unescape(SRC.findall(html)[0][1])
    assert "product=" not in src
    body = client.get(src).content.decode()
    assert "Recommended for you" in body and len(_cards(body, "home.recommended")) >= 2


def test_a_rail_after_load_is_the_callers_own_and_refuses_bad_input(client, catalog):
    product = catalog[0]
    url = "/rails/product.recommended"
    for query, field in [
        ("product=abc", "product"),
        ("product=0", "product"),
        ("product=99999999999", "product"),
        ("product=%C2%B2", "product"),
        ("pv=not-a-uuid", "pv"),
        ("exclude=1,x", "exclude"),
        ("exclude=" + ",".join(["1"] * 65), "exclude"),
        (f"product={product.pk}&product={product.pk}", "product"),
    ]:
        r = client.get(f"{url}?{query}")
        assert r.status_code == 400 and field in r.json(), (query, r.status_code, r.content[:200])
    assert not Event.objects.exists()  # nothing half-written
    assert client.get("/rails/home.trending").status_code == 404  # rendered in its page, not fetched
    assert client.get("/rails/nowhere").status_code == 404
    assert client.post(f"{url}?product={product.pk}").status_code == 405
    # another visitor's rail is not on offer: the visitor is the cookie's, whatever the query says
    other = uuid.uuid4()
    r = client.get(f"{url}?product={product.pk}&visitor_id={other}")
    assert r.status_code == 200
    visitors = set(Event.objects.values_list("visitor_id", flat=True))
    assert len(visitors) == 1 and other not in visitors


def test_with_no_rails_after_load_every_rail_is_in_its_page(client, catalog, settings):
    settings.RAILS_AFTER_LOAD = []
    html = client.get(catalog[0].get_absolute_url()).content.decode()
    assert SRC.findall(html) == [] and len(_cards(html, "product.recommended")) >= 2
    assert client.get(f"/rails/product.recommended?product={catalog[0].pk}").status_code == 404

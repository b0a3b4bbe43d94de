"""The page shell (``shop.catalog.shell``) gives byte for byte what ``render()`` gives, for every page
type, signed in or not, with a cart, with values that need escaping, and with flash messages."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.shortcuts import render

from shop.catalog import shell, views
from tests.factories import BrandFactory, CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

CSRF_VALUE = re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]+(")')


def _normalised(html: bytes) -> str:
    # each get_token() call masks the same secret differently
    return CSRF_VALUE.sub(r"\1TOKEN\2", html.decode())


@pytest.fixture
def compared(monkeypatch):
    """Every shell-rendered page is also rendered by the template engine; both must be equal."""
    pages: list[str] = []
    real = shell.shell_render

    def both(request, template_name, context):
        ours = real(request, template_name, context)
        theirs = render(request, template_name, context)
        assert _normalised(ours.content) == _normalised(theirs.content), template_name
        assert ours.status_code == theirs.status_code == 200
        assert ours["Content-Type"] == theirs["Content-Type"]
        pages.append(template_name)
        return ours

    monkeypatch.setattr(views, "shell_render", both)
    shell.shell_clear()
    return pages


@pytest.fixture
def catalog():
    top = CategoryFactory(name="Pantry <\"&'>", slug="pantry")
    leaf = CategoryFactory(name="Coffee", slug="coffee", parent=top)
    CategoryFactory(name="Home", slug="home-goods")
    brand = BrandFactory(name="Acme & <Sons>")
    products = [ProductFactory(category=leaf, brand=brand, name=f"Beans {i} <b>&amp;</b>") for i in range(12)]
    return top, leaf, products


def _visit_all(client, catalog) -> None:
    top, leaf, products = catalog
    p = products[0]
    for path in (
        "/",
        f"/c/{top.slug}/",
        f"/c/{leaf.slug}/?sort=price_asc&page=1",
        f"/products/{p.pk}/{p.slug}/",
        f"/products/{p.pk}/{p.slug}/?from=home.popular&pos=3",
        "/search/?q=beans",
        "/search/?q=%3Cscript%3E%22%27%26",
        "/search/?q=",
        "/search/?q=nothing-matches-this",
    ):
        assert client.get(path).status_code == 200, path


def test_the_shell_matches_the_template_engine_for_a_guest(client, catalog, compared):
    _visit_all(client, catalog)
    assert set(compared) == {
        "catalog/home.html",
        "catalog/category.html",
        "catalog/product_detail.html",
        "catalog/search.html",
    }
    html = client.get("/search/?q=%3Cscript%3E").content.decode()
    assert 'value="&lt;script&gt;"' in html and "<script>" not in html.split('id="site-search"')[1][:200]


def test_the_shell_matches_for_a_signed_in_shopper_with_a_cart(client, catalog, compared):
    user = get_user_model().objects.create_user(
        "mallory", password="pw-123456789", first_name='Ma<l>"lory the long-named'
    )
    client.force_login(user)
    assert client.get("/").status_code == 200  # the browser's visitor cookie
    _, _, products = catalog
    for p in products[:3]:
        r = client.post("/cart/add/", {"product_id": p.pk, "quantity": 1, "nonce": str(uuid.uuid4())})
        assert r.status_code == 302
    _visit_all(client, catalog)
    html = client.get("/").content.decode()
    assert "Ma&lt;l&gt;&quot;lory th…" in html  # escaped after truncation to 14 characters
    assert re.search(r"data-cart-count>(\d+)<", html).group(1) == "3", re.search(r"cart-count[^<]*<", html).group(0)
    assert 'name="csrfmiddlewaretoken"' in html  # the log-out form


def test_a_shopper_with_no_first_name_is_greeted_by_username(client, catalog, compared):
    user = get_user_model().objects.create_user("ada&co", password="pw-123456789")
    client.force_login(user)
    assert "ada&amp;co" in client.get("/").content.decode()
    assert compared == ["catalog/home.html"]


def test_flash_messages_are_shown_once_through_the_template_engine(client, catalog):
    _, _, products = catalog
    shell.shell_clear()
    r = client.post("/cart/add/", {"product_id": products[0].pk, "quantity": 1, "nonce": str(uuid.uuid4())})
    assert r.status_code == 302
    first = client.get(f"/products/{products[0].pk}/{products[0].slug}/").content.decode()
    again = client.get(f"/products/{products[0].pk}/{products[0].slug}/").content.decode()
    assert 'class="container messages"' in first
    assert 'class="container messages"' not in again


def test_the_test_client_still_sees_the_pages_context(client, catalog):
    response = client.get("/")
    assert response.context is not None and "rails" in response.context
    assert not response.context["user"].is_authenticated


def test_variants_are_bounded(monkeypatch):
    monkeypatch.setattr(shell, "MAX_VARIANTS", 3)
    shell.shell_clear()
    for cart in range(6):
        shell._shell(signed_in=False, cart=cart, current_slug="", nav=[])
    assert len(shell._variants) == 3


def test_an_unexpected_marker_in_the_base_is_refused():
    with pytest.raises(ValueError, match="unexpected markers"):
        shell._split("a\x00bogus\x00b")


def test_categories_outside_the_navigation_share_one_variant(client, catalog, compared):
    top, leaf, _ = catalog
    others = [CategoryFactory(name=f"Aisle {i}", slug=f"aisle-{i}", parent=top) for i in range(4)]
    for category in (leaf, *others):
        assert client.get(f"/c/{category.slug}/").status_code == 200
    # only a category shown in the navigation bar is marked current; the five leaves share one base
    currents = {key[2] for key in shell._variants}
    assert currents == {""}
    assert client.get(f"/c/{top.slug}/").status_code == 200
    assert {key[2] for key in shell._variants} == {"", top.slug}

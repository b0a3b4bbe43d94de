"""The cart hint: pages of a browser that never had a cart skip the cart read; every other browser's
badge still counts its cart, and the hint never shows or hides anything of another visitor's."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from shop.orders.models import CartItem
from tests.factories import ProductFactory, UserFactory
from tests.shop.test_cart_checkout import CHECKOUT

pytestmark = pytest.mark.django_db

HINT = "cart_hint"


def _add(client: Client, product, quantity: int = 1):
    data = {"product_id": product.pk, "quantity": quantity, "nonce": str(uuid.uuid4())}
    return client.post("/cart/add/", data)


def _cart_reads(client: Client, path: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        html = client.get(path).content.decode()
    return sum('"orders_cartitem"' in q["sql"] for q in ctx.captured_queries), html


def _pages(product) -> list[str]:
    return ["/", product.get_absolute_url(), f"/c/{product.category.slug}/", "/search/?q=honey"]


def test_a_browser_that_never_had_a_cart_reads_none_on_any_page(client):
    product = ProductFactory(name="Honey", stock=10)
    client.get("/")  # the visitor's cookie
    for path in _pages(product):
        reads, html = _cart_reads(client, path)
        assert reads == 0, path
        assert 'is-empty" data-cart-count>0</span>' in html, path
    assert HINT not in client.cookies


def test_an_add_sets_the_hint_and_every_page_then_counts_the_cart(client):
    product = ProductFactory(name="Honey", stock=10)
    client.get("/")
    response = _add(client, product, quantity=2)
    morsel = response.cookies[HINT]
    assert morsel.value == "1" and morsel["httponly"] is True and morsel["samesite"] == "Lax"
    for path in _pages(product):
        reads, html = _cart_reads(client, path)
        assert reads == 1, path
        assert "data-cart-count>2</span>" in html, path


def test_the_hint_goes_when_the_cart_is_seen_empty(client):
    product = ProductFactory(name="Honey", stock=10)
    _add(client, product)
    response = client.post("/checkout/", CHECKOUT, follow=True)
    assert not CartItem.objects.exists()
    assert response.redirect_chain[-1][0].startswith("/orders/")
    assert HINT not in client.cookies or client.cookies[HINT].value == ""  # dropped by the page that saw it empty
    reads, html = _cart_reads(client, "/")
    assert reads == 0 and 'is-empty" data-cart-count>0</span>' in html


def test_the_api_sets_the_hint_too():
    api = Client(enforce_csrf_checks=False)
    product = ProductFactory(stock=10)
    api.get("/")
    response = api.post(
        "/api/cart/items",
        {"product_id": product.pk, "quantity": 1},
        content_type="application/json",
        HTTP_SEC_FETCH_SITE="same-origin",
    )
    assert response.status_code == 201, response.content
    assert response.cookies[HINT].value == "1"
    assert _cart_reads(api, "/")[0] == 1


def test_a_signed_in_shopper_is_read_whatever_the_hint_says(client):
    """Log-in merges the account's other carts into this browser's: a signed-in shopper's badge is read
    on every page even when this browser has no hint."""
    user = UserFactory()
    other = Client()
    other.force_login(user)
    _add(other, ProductFactory(stock=10), quantity=3)
    client.get("/")
    response = client.post("/accounts/login/", {"username": user.username, "password": "password"})
    assert response.status_code == 302  # signed in; the other browser's lines come to this one
    client.cookies.pop(HINT, None)
    reads, html = _cart_reads(client, "/search/?q=x")
    assert reads == 1
    assert "data-cart-count>3</span>" in html


def test_a_forged_hint_costs_one_read_shows_only_this_visitors_cart_and_is_dropped(client):
    victim = Client()
    _add(victim, ProductFactory(stock=10), quantity=4)
    client.get("/")
    client.cookies[HINT] = "1"
    reads, html = _cart_reads(client, "/")
    assert reads == 1
    assert 'is-empty" data-cart-count>0</span>' in html  # this visitor's (empty) cart, not the victim's
    assert client.cookies[HINT].value == ""  # the page saw the cart empty and dropped it
    assert _cart_reads(client, "/")[0] == 0


def test_a_deleted_hint_only_hides_the_count_until_the_cart_page(client):
    """The documented cost of the hint: a browser that drops it sees a 0 badge until its cart page (which
    always reads the cart) sets it again."""
    product = ProductFactory(stock=10)
    _add(client, product, quantity=2)
    del client.cookies[HINT]
    assert 'is-empty" data-cart-count>0</span>' in _cart_reads(client, "/")[1]
    response = client.get("/cart/")
    assert "data-cart-count>2</span>" in response.content.decode()
    assert response.cookies[HINT].value == "1"
    assert "data-cart-count>2</span>" in _cart_reads(client, "/")[1]

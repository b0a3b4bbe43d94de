"""S3: CSRF on every session-authenticated POST, log-in included.

Each storefront form (log in, sign up, log out, add to cart, change and remove a cart line, checkout) and
each cookie-identified API write (cart, checkout) is posted by a browser-like client that enforces CSRF
like a real one: without the token 403, with the token from the shop's own cookie accepted (anything but
403). A sweep over every URL pattern finds the views that skip Django's CSRF middleware and checks that
each one is a DRF view whose authentication enforces CSRF itself, or is authenticated by a token only.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from shop.api.authentication import CookieSessionAuthentication
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def _browser(*, signed_in: bool) -> tuple[Client, str]:
    """A client that enforces CSRF, has visited the shop (cookies: csrftoken, vid) and returns the token."""
    c = Client(enforce_csrf_checks=True)
    if signed_in:
        c.force_login(UserFactory(username="csrf-shopper"))
    assert c.get("/accounts/login/").status_code in (200, 302)
    assert c.get("/cart/").status_code == 200
    token = c.cookies["csrftoken"].value
    assert "vid" in c.cookies
    return c, token


def _page_posts(product_id: int) -> list[tuple[str, dict, bool]]:
    """(path, form data, needs a signed-in user)."""
    return [
        ("/accounts/login/", {"username": "nobody", "password": "wrong-password"}, False),
        ("/accounts/signup/", {"username": "csrf-new", "email": "new@example.com"}, False),
        ("/cart/add/", {"product_id": product_id, "quantity": 1}, False),
        (f"/cart/items/{product_id}/", {f"l{product_id}-quantity": 2}, False),
        (f"/cart/items/{product_id}/remove/", {}, False),
        ("/checkout/", {"name": "A Shopper", "email": "a@example.com"}, False),
        ("/accounts/logout/", {}, True),
    ]


@pytest.mark.parametrize("signed_in", [False, True], ids=["guest", "signed-in"])
def test_every_storefront_form_needs_the_csrf_token(signed_in):
    product = ProductFactory(stock=5)
    for path, data, needs_user in _page_posts(product.pk):
        if needs_user and not signed_in:
            continue
        c, token = _browser(signed_in=signed_in)
        refused = c.post(path, data)
        assert refused.status_code == 403, f"{path} accepted a POST without the CSRF token"
        accepted = c.post(path, {**data, "csrfmiddlewaretoken": token})
        assert accepted.status_code != 403, f"{path} refused a POST with the CSRF token"


@pytest.mark.parametrize("signed_in", [False, True], ids=["guest", "signed-in"])
def test_every_cookie_identified_api_write_needs_the_csrf_token(signed_in):
    product = ProductFactory(stock=5)
    calls = [
        ("post", "/api/cart/items", {"product_id": product.pk, "quantity": 1}),
        ("patch", f"/api/cart/items/{product.pk}", {"quantity": 2}),
        ("delete", f"/api/cart/items/{product.pk}", None),
        ("post", "/api/checkout", {"full_name": "A Shopper", "email": "a@example.com", "address": "1 Road"}),
    ]
    for method, path, body in calls:
        c, token = _browser(signed_in=signed_in)
        kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
        refused = getattr(c, method)(path, **kwargs)
        assert refused.status_code == 403, f"{method.upper()} {path} without the token: {refused.status_code}"
        assert "CSRF" in refused.json()["detail"]
        accepted = getattr(c, method)(path, **kwargs, headers={"X-CSRFToken": token})
        assert accepted.status_code != 403, f"{method.upper()} {path} with the token: {accepted.content[:200]}"


def test_a_client_without_cookies_has_no_identity_to_forge():
    """No session, no visitor cookie: nothing to borrow, so the cart API answers (a new visitor's cart)."""
    product = ProductFactory(stock=5)
    c = Client(enforce_csrf_checks=True)
    r = c.post("/api/cart/items", {"product_id": product.pk, "quantity": 1}, content_type="application/json")
    assert r.status_code == 201, r.content


def _views(resolver: URLResolver, prefix: str = ""):
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from _views(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def test_no_view_skips_csrf_unless_its_own_authentication_enforces_it():
    checked = 0
    for route, view in _views(get_resolver()):
        if route.startswith("admin/") or not getattr(view, "csrf_exempt", False):
            continue  # Django's CSRF middleware protects it (the admin is Django's own)
        cls = getattr(view, "cls", None)
        assert cls is not None, f"{route} is csrf_exempt and not a DRF view"
        auth = getattr(cls, "authentication_classes", [])
        for a in auth:
            # SessionAuthentication checks CSRF for a signed-in user; CookieSessionAuthentication for a guest
            # with cookies too; a token is not sent by a browser on its own
            assert issubclass(a, SessionAuthentication | TokenAuthentication), f"{route}: {a}"
        writes = any(m in cls.http_method_names and hasattr(cls, m) for m in ("post", "put", "patch", "delete"))
        if writes and SessionAuthentication in auth and "cart" in route:
            raise AssertionError(f"{route} serves guests by cookie and must use CookieSessionAuthentication")
        checked += 1
    assert checked >= 10  # the API's views were found


def test_the_cart_and_checkout_apis_check_csrf_for_guests_too():
    from shop.orders.api import CartItemDetailApi, CartItemListApi, CheckoutApi

    for api in (CartItemListApi, CartItemDetailApi, CheckoutApi):
        assert api.authentication_classes == [CookieSessionAuthentication]

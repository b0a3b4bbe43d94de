"""A cookie that says this browser's cart may have lines, so pages skip the cart read when it cannot.

Every storefront page shows the cart's size in its header, and most visitors never add anything: for them
that read was a category or search page's only query and one of a product page's two. The ``cart_hint``
cookie (``CART_HINT_COOKIE``) is set when this browser's cart is seen with lines (an add, or any page
that read the cart) and dropped when it is seen empty. An anonymous visitor without it has no cart to
read: the badge shows 0 without asking the database.

It is a hint, never trusted for more. A signed-in shopper's cart is always read (log-in merges the
account's other carts into this browser's, which another browser can also do). A browser that deletes
the cookie while its cart has lines sees a 0 badge until its next add or a look at the cart page, which
always reads the cart; one that sets it by hand costs the shop one read per page, as before. Only the
visitor's own pages read it, so nothing of another visitor's is shown or hidden through it.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def _django_request(request) -> HttpRequest:
    return getattr(request, "_request", request)  # a DRF request wraps Django's


def _visitor_is_new(request: HttpRequest) -> bool:
    """A visitor minted for this request (or replaced by log-in / log-out): it has no cart yet."""
    return getattr(request, "visitor_cookie_id", None) != getattr(request, "visitor_id", None)


def cart_may_have_lines(request) -> bool:
    """False when this request's visitor has no cart lines to read: an anonymous visitor whose browser has
    no hint (or whose visitor was minted for this request)."""
    request = _django_request(request)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    if _visitor_is_new(request):
        return False
    return bool(request.COOKIES.get(settings.CART_HINT_COOKIE))


def cart_hint_note(request, *, lines: int) -> None:
    """This request saw the visitor's cart with ``lines`` lines (or items): the response sets or drops the
    hint to match."""
    _django_request(request).cart_lines_seen = lines


class CartHintMiddleware:
    """Sets the hint when the request saw the cart with lines, drops it when the request saw it empty (a
    page's badge read, ``request.cart_count``, counts as seeing it) or gave the browser a new visitor."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        seen = getattr(request, "cart_lines_seen", None)
        if seen is None:
            seen = getattr(request, "cart_count", None)
        if seen is None and _visitor_is_new(request):
            seen = 0
        name = settings.CART_HINT_COOKIE
        held = bool(request.COOKIES.get(name))
        if seen and not held:
            response.set_cookie(
                name,
                "1",
                max_age=settings.VISITOR_COOKIE_MAX_AGE,
                samesite="Lax",
                httponly=True,
                secure=request.is_secure(),
            )
        elif seen == 0 and name in request.COOKIES:  # also an emptied value a client sent back
            response.delete_cookie(name, samesite="Lax")
        return response

"""Session authentication for the storefront's cookie-identified endpoints (cart, checkout).

DRF's ``SessionAuthentication`` checks CSRF only for a signed-in user. A guest is identified by cookies too
(the session and the signed visitor cookie ``vid``), and a guest's cart and checkout are as worth forging
as a user's, so here every unsafe request that carries either cookie must carry the CSRF token. A request
with neither has no identity to borrow: it starts a new visitor, and a CSRF check would protect nothing.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS


class CookieSessionAuthentication(SessionAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)  # enforces CSRF for a signed-in user
        if result is None and request.method not in SAFE_METHODS and _carries_identity(request):
            self.enforce_csrf(request)
        return result


def _carries_identity(request) -> bool:
    cookies = request._request.COOKIES
    return settings.SESSION_COOKIE_NAME in cookies or settings.VISITOR_COOKIE in cookies


class CookieSessionScheme(SessionScheme):
    """In the schema: the session cookie, as Django's, for guests as well (CSRF token required on writes)."""

    target_class = CookieSessionAuthentication
    name = "guestCookieAuth"

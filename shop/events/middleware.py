"""Stable visitor id for every browser (signed cookie ``vid``), created lazily in the database."""

from __future__ import annotations

import uuid
from functools import lru_cache

from django.conf import settings
from django.core import signing

_SALT = "shop.events.visitor"


@lru_cache(maxsize=4)
def _signer_for(backend: str, key: str, fallbacks: tuple[str, ...], salt: str) -> signing.Signer:
    # the settings the signer is built from are the cache key: a rotated key gets a new signer
    return signing.get_cookie_signer(salt=salt)


def _signer() -> signing.Signer:
    """The ``vid`` cookie's signer, built once per process and key (every request reads the cookie)."""
    return _signer_for(
        settings.SIGNING_BACKEND,
        settings.SECRET_KEY,
        tuple(settings.SECRET_KEY_FALLBACKS),
        settings.VISITOR_COOKIE + _SALT,
    )


def visitor_cookie_value(visitor_id: uuid.UUID) -> str:
    """The signed ``vid`` cookie value for ``visitor_id`` (what the middleware sets)."""
    return _signer().sign(str(visitor_id))


def visitor_id_from_cookie(value: str | None) -> uuid.UUID | None:
    """The visitor id of a signed ``vid`` cookie value; None when missing, unsigned or forged."""
    if not value:
        return None
    try:
        return uuid.UUID(_signer().unsign(value))
    except (signing.BadSignature, ValueError):
        return None


def visitor_rotate(request) -> uuid.UUID:
    """Give this browser a brand-new visitor (at log out, or when its visitor is someone else's)."""
    request.visitor_id = uuid.uuid4()
    return request.visitor_id


class VisitorMiddleware:
    """``request.visitor_id`` from the signed, HttpOnly ``vid`` cookie; a new id when it is missing
    or forged. A view that changes ``request.visitor_id`` (log in, log out) gets the new cookie."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        cookie_id = visitor_id_from_cookie(request.COOKIES.get(settings.VISITOR_COOKIE))
        request.visitor_cookie_id = cookie_id  # None: this browser's visitor is new with this request
        request.visitor_id = cookie_id or uuid.uuid4()
        response = self.get_response(request)
        if request.visitor_id != cookie_id:
            response.set_cookie(
                settings.VISITOR_COOKIE,
                visitor_cookie_value(request.visitor_id),
                max_age=settings.VISITOR_COOKIE_MAX_AGE,
                samesite="Lax",
                httponly=True,  # nothing in the page reads it; script injection cannot steal it
                secure=request.is_secure(),
            )
        return response

"""Throttles keyed per visitor (cookie ``vid``) and falling back to the client address."""

from __future__ import annotations

import uuid

from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle


class VisitorScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` whose bucket is the visitor, not the user.

    The beacon endpoints run without authentication classes, so ``request.user`` is always
    anonymous there; a returning browser is identified by its ``vid`` cookie instead. A client
    without a (valid) cookie gets a fresh visitor id on every request, so it is keyed by address.
    """

    def get_rate(self) -> str | None:
        # Read the rates at call time (DRF binds THROTTLE_RATES at import), so a deployment's or a
        # test's override of REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        raw = request.COOKIES.get(settings.VISITOR_COOKIE, "")
        try:
            ident = f"v:{uuid.UUID(raw)}"
        except ValueError:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

"""Throttles keyed per visitor and per client address, on the shared cache.

Two buckets per scope: the visitor (signed ``vid`` cookie) and the address. A client that drops
its cookie on every request gets a fresh visitor each time but still shares one address bucket
(scope ``<scope>_ip``). Buckets live in the default cache, which is Redis when ``CACHE_URL`` (or
``REDIS_URL``) is set, so every web process counts against the same bucket. When the cache is
unreachable the throttle lets requests through (and logs): the shop keeps selling while Redis
is down, and the address limit returns with it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from shop.events.middleware import visitor_id_from_cookie

logger = logging.getLogger(__name__)


class _FailOpenMixin:
    def get_rate(self) -> str | None:
        # Read the rates at call time (DRF binds THROTTLE_RATES at import), so a deployment's or a
        # test's override of REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache server is down: serve rather than fail the request
            logger.warning("throttle cache unavailable; %s not throttled", self.scope, exc_info=True)
            return True

    def throttle_success(self) -> bool:
        try:
            return super().throttle_success()
        except Exception:
            logger.warning("throttle cache unavailable; %s not recorded", self.scope, exc_info=True)
            return True


class VisitorScopedRateThrottle(_FailOpenMixin, ScopedRateThrottle):
    """``ScopedRateThrottle`` whose bucket is the visitor (signed ``vid`` cookie), else the address.

    The beacon endpoints run without session authentication, so ``request.user`` is anonymous there.
    """

    def get_cache_key(self, request, view) -> str:
        vid = visitor_id_from_cookie(request.COOKIES.get(settings.VISITOR_COOKIE))
        ident = f"v:{vid}" if vid is not None else f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AddressScopedRateThrottle(_FailOpenMixin, SimpleRateThrottle):
    """The view's ``throttle_scope`` + ``_ip``, keyed by client address whatever the cookies say.

    The address is REMOTE_ADDR unless ``REST_FRAMEWORK["NUM_PROXIES"]`` says how many proxies to
    trust in X-Forwarded-For (a client-written header is never believed by default).
    """

    def allow_request(self, request, view) -> bool:
        scope = getattr(view, "throttle_scope", None)
        if not scope:
            return True
        self.scope = f"{scope}_ip"
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def __init__(self) -> None:  # the scope is known only once the view is (allow_request)
        pass


class KeyedRateThrottle(_FailOpenMixin, SimpleRateThrottle):
    """A bucket the caller names (scope + key), for views outside DRF: log-in attempts per address
    and per username, so neither one address nor a botnet guessing one account gets far."""

    def __init__(self, scope: str, key: str) -> None:
        self.scope = scope
        self.key = key
        super().__init__()

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.key}

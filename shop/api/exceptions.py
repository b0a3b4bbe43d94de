"""One answer for every error: JSON ``{"detail": ...}`` from the API, never a traceback.

- DRF's own exceptions (validation, auth, throttling, parse errors) keep their status codes.
- A database or broker outage is ``503 Service Unavailable`` with ``Retry-After``: the client may
  retry (every write is idempotent), and a load balancer sees a transient failure, not a bug.
- Anything else is a bug: Django logs it with its traceback and ``server_error`` answers
  ``500 {"detail": "Internal server error."}`` (DEBUG, which the demo alone may turn on, shows it).

``api_exception_handler`` is DRF's EXCEPTION_HANDLER; ``server_error`` is Django's ``handler500``,
for the pages (and for errors raised outside a DRF view, e.g. while saving the session).
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class PayloadTooLarge(APIException):
    """413: the request is over a documented size limit; the message names the limit."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


def _outage_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:  # the broker (sending a task while Redis is down)
        from kombu.exceptions import OperationalError as KombuOperationalError

        types.append(KombuOperationalError)
    except ImportError:  # pragma: no cover - kombu comes with celery
        pass
    try:  # the cache, when something other than a throttle uses it without a fallback
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        types.extend([RedisConnectionError, RedisTimeoutError])
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


OUTAGE_ERRORS = _outage_types()
UNAVAILABLE = "The service is briefly unavailable (database or queue); retry in a few seconds."


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus 503 for outages. Anything else (a bug) is re-raised to Django, which
    logs it with its traceback and answers through ``server_error``: 500 JSON, no traceback."""
    response = exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, OUTAGE_ERRORS):
        logger.warning("outage answered 503: %s: %s", type(exc).__name__, exc)
        return Response(
            {"detail": UNAVAILABLE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return None


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: JSON under /api/ (a path no route matches), the shop's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: 503 + Retry-After for outages, JSON under /api/, a plain page elsewhere."""
    exc = sys.exc_info()[1]
    outage = isinstance(exc, OUTAGE_ERRORS)
    code = 503 if outage else 500
    message = UNAVAILABLE if outage else "Internal server error."
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": message}, status=code)
    else:
        title = "Back in a moment" if outage else "Something went wrong"
        response = HttpResponse(
            f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>",
            status=code,
            content_type="text/html; charset=utf-8",
        )
    if outage:
        response["Retry-After"] = str(RETRY_AFTER_S)
    return response

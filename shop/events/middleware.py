"""Stable visitor id for every browser (cookie ``vid``), created lazily in the database."""

from __future__ import annotations

import uuid

from django.conf import settings


class VisitorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.COOKIES.get(settings.VISITOR_COOKIE, "")
        try:
            request.visitor_id = uuid.UUID(raw)
            new = False
        except ValueError:
            request.visitor_id = uuid.uuid4()
            new = True
        response = self.get_response(request)
        if new:
            response.set_cookie(
                settings.VISITOR_COOKIE,
                str(request.visitor_id),
                max_age=settings.VISITOR_COOKIE_MAX_AGE,
                samesite="Lax",
                httponly=False,  # the beacon reads nothing from it, but analytics tools may
                secure=request.is_secure(),
            )
        return response

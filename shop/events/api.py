"""``POST /api/events``: batch ingest of impressions, clicks and other interactions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.exceptions import PayloadTooLarge
from shop.api.parsers import BoundedJSONParser
from shop.api.schema import detail_response
from shop.api.throttles import AddressScopedRateThrottle, VisitorScopedRateThrottle

from .models import EventSource
from .serializers import (
    EventBatchErrorSerializer,
    EventBatchResultSerializer,
    EventBatchSerializer,
    event_batch_validate,
)
from .services import EventIn, clicks_attributed, events_record


def _refuse_cross_site(request: Request) -> None:
    """The CSRF defence of a cookie-authenticated endpoint that cannot take a CSRF token.

    Browsers label every POST with ``Sec-Fetch-Site`` and ``Origin``; another site's page (a form
    or a ``no-cors`` fetch) is refused. Clients that are not browsers send neither and are judged
    by their cookie or token alone; ``application/json`` already forces a CORS preflight, which
    this site never answers.
    """
    if request.META.get("HTTP_SEC_FETCH_SITE", "").lower() in {"cross-site", "same-site"}:
        raise PermissionDenied("Cross-site event posts are refused (Sec-Fetch-Site).")
    origin = request.META.get("HTTP_ORIGIN")
    if origin is not None:
        own = f"{request.scheme}://{request.get_host()}"
        if origin != own and origin not in settings.CSRF_TRUSTED_ORIGINS:
            raise PermissionDenied(f"Origin {origin} may not post events.")


class EventBatchApi(APIView):
    """Store a batch of impressions and clicks for one visitor, all or nothing.

    The visitor is the signed ``vid`` cookie. ``navigator.sendBeacon`` cannot send a CSRF header,
    so instead of SessionAuthentication's token check the request must not come from another site
    (``_refuse_cross_site``); the signed-in user (if any) still comes from the session that
    Django's middleware loaded. A staff token (``Authorization: Token ...``) may name the visitor.
    """

    authentication_classes = [TokenAuthentication]
    permission_classes = [AllowAny]
    parser_classes = [BoundedJSONParser]
    throttle_classes = [VisitorScopedRateThrottle, AddressScopedRateThrottle]
    throttle_scope = "events"

    @extend_schema(
        operation_id="events_create",
        summary="Record a batch of interaction events",
        description=(
            "Clients report only `impression` and `click`; views, cart changes and purchases are logged "
            "by the server. The visitor is the signed `vid` cookie (a client without one gets a new "
            "visitor and its cookie); only a staff token may name another with a top-level `visitor_id`. "
            "`occurred_at` is clamped to [received - 24 h, received + 5 min]. Posts from another site "
            "(`Origin`, `Sec-Fetch-Site`) are refused with 403. "
            "A batch is validated whole and stored in one transaction: one bad event rejects the batch "
            "and nothing is written. Errors name the event by its 0-based index: "
            '`{"events": {"3": {"product_id": ["Unknown product 999999."]}}}`. '
            "More than EVENTS_MAX_BATCH events or a body over EVENTS_MAX_BODY_BYTES is refused with 413 "
            '`{"detail": "..."}` naming the limit. Replayed idempotency keys are counted as duplicates '
            "and stored once."
        ),
        request=EventBatchSerializer,
        responses={
            202: EventBatchResultSerializer,
            400: OpenApiResponse(
                response=EventBatchErrorSerializer,
                description="Validation error naming the event index and field (or malformed JSON: `detail`).",
                examples=[
                    OpenApiExample(
                        "Unknown product",
                        value={"events": {"3": {"product_id": ["Unknown product 999999."]}}},
                        status_codes=["400"],
                    ),
                    OpenApiExample(
                        "Server-side type",
                        value={"events": {"0": {"type": ['"purchase" is not a valid choice.']}}},
                        status_codes=["400"],
                    ),
                    OpenApiExample(
                        "Malformed JSON",
                        value={"detail": "JSON parse error - Expecting value: line 1 column 1 (char 0)"},
                        status_codes=["400"],
                    ),
                ],
            ),
            401: detail_response("A token was sent and it is not valid."),
            403: detail_response("Posted from another site, or `visitor_id` without a staff token."),
            413: detail_response("Over EVENTS_MAX_BATCH events or EVENTS_MAX_BODY_BYTES bytes; nothing written."),
            415: detail_response("Not application/json."),
            429: detail_response("Throttled (scope `events` per visitor, `events_ip` per address)."),
        },
        examples=[
            OpenApiExample(
                "One impression",
                value={
                    "events": [
                        {
                            "type": "impression",
                            "product_id": 1,
                            "placement": "home.new_arrivals",
                            "position": 0,
                            "page_view_id": "6f1c2b1e-0d7e-4b8e-9a43-2f0c5d1b7a10",
                            "idempotency_key": "imp:6f1c2b1e-0d7e-4b8e-9a43-2f0c5d1b7a10:home.new_arrivals:0",
                            "occurred_at": "2026-01-01T12:00:00Z",
                            "device": "desktop",
                        }
                    ]
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        _refuse_cross_site(request)
        self._refuse_large_body(request)
        data = request.data
        events = data.get("events") if isinstance(data, dict) else None
        if isinstance(events, list) and len(events) > settings.EVENTS_MAX_BATCH:
            raise PayloadTooLarge(
                f"Batch of {len(events)} events is over the limit of {settings.EVENTS_MAX_BATCH} events "
                "(EVENTS_MAX_BATCH); nothing was stored."
            )
        # The plain-function fast path validates what the beacon sends; anything else (and every
        # error body) goes through the serializer, which stays the contract and the schema.
        validated = event_batch_validate(data)
        if validated is None:
            batch = EventBatchSerializer(data=data)
            batch.is_valid(raise_exception=True)
            validated = batch.validated_data

        body_visitor = validated.get("visitor_id")
        if body_visitor is not None:
            if not (request.user.is_authenticated and request.user.is_staff):
                raise PermissionDenied("Only a staff token may send events for a `visitor_id`.")
            visitor_id, source, user = body_visitor, EventSource.API, None
        else:
            # the middleware's visitor: the signed cookie's, or a new one whose cookie this response sets
            visitor_id, source = request._request.visitor_id, EventSource.BEACON
            # DRF's request.user is the token's (anonymous for a browser); the shopper is the session's
            user = get_user(request._request)
        items = validated["events"]
        events = [
            EventIn(
                type=e["type"],
                product_id=e["product_id"],
                idempotency_key=e["idempotency_key"],
                placement=e["placement"],
                position=e["position"],
                page_view_id=e["page_view_id"],
                occurred_at=e["occurred_at"],
                device=e["device"],
                source=source,
            )
            for e in items
        ]
        accepted = events_record(
            visitor_id=visitor_id, user=user, events=clicks_attributed(visitor_id=visitor_id, events=events)
        )
        return Response({"accepted": accepted, "duplicates": len(items) - accepted}, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _refuse_large_body(request: Request) -> None:
        # Decided from the header, before a byte of the body is read or parsed. Without a
        # Content-Length Django's WSGI request reads no body at all, so nothing slips past.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.EVENTS_MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"Body of {length} bytes is over the limit of {settings.EVENTS_MAX_BODY_BYTES} bytes "
                "(EVENTS_MAX_BODY_BYTES); nothing was stored."
            )

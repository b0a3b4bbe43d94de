"""``POST /api/events``: batch ingest of impressions, clicks and other interactions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth import get_user
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.exceptions import PayloadTooLarge
from shop.api.parsers import PlainTextJSONParser
from shop.api.schema import detail_response
from shop.api.throttles import VisitorScopedRateThrottle

from .models import EventSource
from .serializers import (
    EventBatchErrorSerializer,
    EventBatchResultSerializer,
    EventBatchSerializer,
    event_batch_validate,
)
from .services import EventIn, events_record


def _cookie_visitor_id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.COOKIES.get(settings.VISITOR_COOKIE, ""))
    except ValueError:
        return None


class EventBatchApi(APIView):
    """Store a batch of events for one visitor, all or nothing.

    No authentication classes: ``navigator.sendBeacon`` cannot send a CSRF header, and DRF only
    enforces CSRF through SessionAuthentication. The signed-in user (if any) still comes from the
    session that Django's middleware loaded, or from the visitor's attached user.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, PlainTextJSONParser]
    throttle_classes = [VisitorScopedRateThrottle]
    throttle_scope = "events"

    @extend_schema(
        operation_id="events_create",
        summary="Record a batch of interaction events",
        description=(
            "The visitor is the `vid` cookie; clients without cookies may send a top-level `visitor_id`. "
            "Bodies may be sent as `application/json` or `text/plain` (sendBeacon fallbacks). "
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
                        "Unknown type",
                        value={"events": {"0": {"type": ['"hover" is not a valid choice.']}}},
                        status_codes=["400"],
                    ),
                    OpenApiExample(
                        "Malformed JSON",
                        value={"detail": "JSON parse error - Expecting value: line 1 column 1 (char 0)"},
                        status_codes=["400"],
                    ),
                ],
            ),
            413: detail_response("Over EVENTS_MAX_BATCH events or EVENTS_MAX_BODY_BYTES bytes; nothing written."),
            415: detail_response("Neither application/json nor text/plain."),
            429: detail_response("Throttled (scope `events`, per visitor or address)."),
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

        cookie_visitor = _cookie_visitor_id(request)
        body_visitor = validated.get("visitor_id")
        visitor_id = cookie_visitor or body_visitor or request._request.visitor_id
        source = EventSource.API if cookie_visitor is None and body_visitor is not None else EventSource.BEACON
        items = validated["events"]
        accepted = events_record(
            visitor_id=visitor_id,
            # DRF replaced request.user with AnonymousUser (no authenticators); read the session.
            user=get_user(request._request),
            events=[
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
            ],
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

"""The OpenAPI schema: error bodies, and the status codes every operation can answer."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class DetailErrorSerializer(serializers.Serializer):
    """The body of every non-validation error (404, 413, 415, 429, malformed JSON)."""

    detail = serializers.CharField()


def detail_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=DetailErrorSerializer, description=description)


def validation_response(description: str, *, name: str) -> OpenApiResponse:
    """DRF's validation errors: field name -> list of messages (nested for nested fields; the items
    of a list are keyed by their 0-based index as a string), or ``detail`` for a malformed body.

    ``name`` is kept for callers; the body is a free-form object because its keys are the request's.
    """
    return OpenApiResponse(
        response=OpenApiTypes.OBJECT,
        description=description + " Body: field name -> messages (or `detail`).",
    )


# ---------- responses every operation can give, documented where they apply ----------


def _error(description: str) -> OpenApiResponse:
    # Error bodies are JSON objects: {"detail": "..."} or field -> messages (any shape of either).
    return OpenApiResponse(response=OpenApiTypes.OBJECT, description=description)


class ShopAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema that also documents the status codes the framework itself
    answers, so the schema is true for every operation (a fuzzer finds no undocumented code):

    - 400 for a body that is not valid JSON (or nested too deep) and for bad parameters;
    - 401 where a token may be sent, 403 where a permission or the CSRF check can refuse;
    - 404 where the path names an object or the list is paginated (a page past the end);
    - 413 / 415 for a body over the limit or not JSON; 429 where a throttle applies;
    - 503 with Retry-After everywhere (database or queue outage).

    A code a view declares itself keeps the view's description and body.
    """

    def _get_response_bodies(self, direction="response"):
        # the view's own responses (``extend_schema`` replaces get_response_serializers, not this)
        bodies = super()._get_response_bodies(direction)
        if direction != "response":
            return bodies
        for code, response in self._framework_responses().items():
            if code not in {str(c) for c in bodies}:
                bodies[code] = self._get_response_for_code(response, code, direction=direction)
        return bodies

    def _framework_responses(self) -> dict[str, OpenApiResponse]:
        view, out = self.view, {}
        has_body = self.method in {"POST", "PUT", "PATCH"}
        has_params = bool(self._get_filter_parameters() or self._get_pagination_parameters())
        if has_body or has_params or self.method == "DELETE":
            out["400"] = _error("Malformed JSON, or a field or parameter is invalid (the message names it).")
        authenticators = [a.__class__.__name__ for a in view.get_authenticators()]
        if "TokenAuthentication" in authenticators:
            out["401"] = _error("The token sent is not valid.")
        permissions = view.get_permissions() if hasattr(view, "request") else []
        public = permissions and all(p.__class__.__name__ == "AllowAny" for p in permissions)
        if not public or ("SessionAuthentication" in authenticators and self.method != "GET"):
            out["403"] = _error("Not allowed for this caller (or the CSRF check failed for a signed-in session).")
        if "{" in self.path or self._get_pagination_parameters():
            out["404"] = _error("No such object, or a page past the last.")
        if has_body:
            out["413"] = _error("Request body too large; nothing was stored.")
            out["415"] = _error("The body is not application/json.")
        if getattr(view, "throttle_classes", None) and getattr(view, "throttle_scope", None):
            out["429"] = _error("Throttled; the Retry-After header says when to retry.")
        out["503"] = _error("Database or queue briefly unavailable; retry after Retry-After seconds.")
        return out

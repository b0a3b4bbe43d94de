"""Serializers that only describe error bodies in the OpenAPI schema."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers


class DetailErrorSerializer(serializers.Serializer):
    """The body of every non-validation error (404, 413, 415, 429, malformed JSON)."""

    detail = serializers.CharField()


def detail_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=DetailErrorSerializer, description=description)


def validation_response(description: str, *, name: str) -> OpenApiResponse:
    # DRF's validation errors: field name -> list of messages (nested for nested fields; the
    # items of a list are keyed by their 0-based index as a string).
    return OpenApiResponse(
        response=inline_serializer(
            name=name,
            fields={
                "field_name": serializers.ListField(
                    child=serializers.CharField(), help_text="Messages for that field; any field of the request."
                )
            },
        ),
        description=description,
    )

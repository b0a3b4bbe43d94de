"""Request parsers for the API."""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Deeper than any request of this API needs (an event batch is 3 levels deep); refusing keeps a
# body like "[[[[...]]]]" from reaching Python's recursion limit in parsing, validation or errors.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(value, limit: int) -> bool:
    """True when lists/dicts in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser that answers 400 for what it would turn into a 500: bodies nested past
    Python's recursion limit (``RecursionError``) or past ``MAX_JSON_DEPTH``, and NaN/Infinity."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            raw = stream.read().decode(encoding) if stream is not None else ""
            data = json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.") from exc
        except ValueError as exc:  # includes UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from exc
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        return data

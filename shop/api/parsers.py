"""Request parsers for the API."""

from __future__ import annotations

from rest_framework.parsers import JSONParser


class PlainTextJSONParser(JSONParser):
    """JSON sent as ``text/plain``.

    ``navigator.sendBeacon`` fallbacks (and some proxies) send a string body, which browsers label
    ``text/plain;charset=UTF-8``; the payload is still the JSON of the beacon contract.
    """

    media_type = "text/plain"

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException


class PayloadTooLarge(APIException):
    """413: the request is over a documented size limit; the message names the limit."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"

"""Small request helpers shared by the storefront views (page view id, attribution, device)."""

from __future__ import annotations

import re
import uuid

from django.http import HttpRequest

PLACEMENT_RE = re.compile(r"^[a-z0-9_.:-]{1,64}$")
DIRECT = "direct"


def whole_number(raw: str | None, *, lo: int = 1, hi: int | None = None) -> int | None:
    """``raw`` as an int when it is plain ASCII digits within [lo, hi], else None (``str.isdigit()`` alone is
    true for "²", which ``int()`` refuses)."""
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return None
    n = int(raw)
    return n if n >= lo and (hi is None or n <= hi) else None


def page_view_id_get(request: HttpRequest) -> uuid.UUID:
    """The uuid4 of this render; the same for the view event and ``<body data-page-view-id>``."""
    pvid = getattr(request, "page_view_id", None)
    if pvid is None:
        pvid = uuid.uuid4()
        request.page_view_id = pvid
    return pvid


def attribution_get(params) -> tuple[str, int | None]:
    """(placement, position) from ``?from=<placement>&pos=<n>``; ``"direct"`` when absent or bogus."""
    placement = (params.get("from") or "").strip().lower()
    if not PLACEMENT_RE.match(placement):
        return DIRECT, None
    try:
        position = int(params.get("pos", ""))
    except (TypeError, ValueError):
        position = None
    if position is not None and not 0 <= position <= 10_000:
        position = None
    return placement, position


def device_get(request: HttpRequest) -> str:
    ua = request.headers.get("User-Agent", "")
    if "iPad" in ua or "Tablet" in ua:
        return "tablet"
    if "Mobi" in ua or "Android" in ua:
        return "mobile"
    return "desktop"


def is_prefetch(request: HttpRequest) -> bool:
    """Speculative loads (link prefetch/prerender) are not views a person made."""
    purpose = request.headers.get("Sec-Purpose", "") or request.headers.get("Purpose", "")
    return "prefetch" in purpose.lower()

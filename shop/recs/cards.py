"""What a recommendation shows of each product (id, name, price, url), held in process memory.

A request looks its items up in a dict: no query while every item is held. The serving thread
(:mod:`.serving`) reads every active product's card in one query every CARDS_REFRESH_S and publishes the
new table in one assignment, so on a running web process no card is older than CARDS_TTL_S (as the rails'
cached HTML: a name or price may show up to a minute old) and none expires on a request. An id the table
lacks, or holds too long (a product added since the last read, a process whose thread has not read yet,
a test without the thread), is read on the request in one query of four columns and held; a product that
is missing or inactive then is remembered as absent for as long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from django.urls import reverse

from shop.catalog.models import Product

CARDS_TTL_S = 60.0
CARDS_REFRESH_S = 30.0  # the serving thread's full read: half the TTL, so a held card never expires

_cards: dict[int, tuple[float, dict | None]] = {}  # product id -> (monotonic expiry, card or None: inactive)
_lock = threading.Lock()  # writers only (a request's misses, the refresh); readers take one reference
_refreshed_at: float | None = None  # monotonic time of the last full read (None: none yet)

# reverse() for one product costs microseconds; the refresh formats every active product's URL, so it
# reverses once with stand-ins and fills them in (checked against reverse() on the first product).
_PK_MARK, _SLUG_MARK = 987654321, "slug-stand-in"


def _url_format() -> str:
    url = reverse("catalog:product", kwargs={"pk": _PK_MARK, "slug": _SLUG_MARK})
    return url.replace("{", "{{").replace("}", "}}").replace(str(_PK_MARK), "{pk}").replace(_SLUG_MARK, "{slug}")


def _card(pid: int, name: str, price, url: str) -> dict:
    # the price as the API's other prices: a string with two decimals
    return {"product_id": pid, "name": name, "price": f"{price:.2f}", "url": url}


def product_cards(*, ids: Sequence[int]) -> dict[int, dict]:
    """The cards of the active products among ``ids``, keyed by id (held ones without a query)."""
    now = time.monotonic()
    table = _cards
    out: dict[int, dict] = {}
    missing: list[int] = []
    for pid in ids:
        held = table.get(pid)
        if held is None or held[0] <= now:
            missing.append(pid)
        elif held[1] is not None:
            out[pid] = held[1]
    if missing:
        rows = Product.objects.filter(pk__in=missing, is_active=True).values_list("id", "name", "price", "slug")
        fresh: dict[int, dict | None] = dict.fromkeys(missing)
        for pid, name, price, slug in rows:
            fresh[pid] = _card(pid, name, price, reverse("catalog:product", kwargs={"pk": pid, "slug": slug}))
        expiry = now + CARDS_TTL_S
        with _lock:
            _cards.update((pid, (expiry, card)) for pid, card in fresh.items())
        out.update((pid, card) for pid, card in fresh.items() if card is not None)
    return out


def product_cards_refresh() -> int:
    """Read every active product's card (one query) and publish them as the new table; returns how many.
    Products gone or inactive since the last read drop out (a request asking for one reads it again)."""
    global _cards, _refreshed_at
    now = time.monotonic()
    expiry = now + CARDS_TTL_S
    fmt = _url_format()
    table: dict[int, tuple[float, dict | None]] = {}
    rows = Product.objects.filter(is_active=True).values_list("id", "name", "price", "slug")
    for pid, name, price, slug in rows.iterator(chunk_size=5000):
        url = fmt.format(pk=pid, slug=slug)
        if not table and url != reverse("catalog:product", kwargs={"pk": pid, "slug": slug}):
            fmt = ""  # the stand-ins did not round-trip (an odd URL prefix): reverse each one
        if not fmt:
            url = reverse("catalog:product", kwargs={"pk": pid, "slug": slug})
        table[pid] = (expiry, _card(pid, name, price, url))
    with _lock:
        _cards = table
        _refreshed_at = now
    return len(table)


def product_cards_refresh_due() -> bool:
    """Refresh when CARDS_REFRESH_S has passed since the last full read (the serving thread's check)."""
    at = _refreshed_at
    if at is not None and time.monotonic() - at < CARDS_REFRESH_S:
        return False
    product_cards_refresh()
    return True


def product_cards_forget() -> None:
    """Drop this process's cards (tests; other processes pick changes up within CARDS_TTL_S)."""
    global _refreshed_at
    with _lock:
        _cards.clear()
        _refreshed_at = None

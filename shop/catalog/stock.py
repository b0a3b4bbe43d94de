"""Which active products are sold out, known per process without a query per page.

Rails recommend what a shopper can buy: every rail (:func:`shop.catalog.rails.rails_plan`) and the
recommendations API leave sold-out products out. Their id lists are ranked ahead of time (a cached popular
list, a model's snapshot of the catalog), so a product that sells out after its list was made would
otherwise stay on it, flagged "Sold out", until the list is rebuilt.

Each process holds the set for ``SOLD_OUT_TTL_S`` and then reads it again (one statement, answered from
the partial index ``product_sold_out_idx``); a checkout in this process adds what it sold out at once.
Another process sees a sell-out within ``SOLD_OUT_TTL_S``. A failed read keeps the set held before (a
rail never breaks a page) for ``SOLD_OUT_RETRY_S`` before the next try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from django.db import DatabaseError

from .models import Product

SOLD_OUT_TTL_S = 10.0
SOLD_OUT_RETRY_S = 1.0  # after a failed read

log = logging.getLogger(__name__)

_held: tuple[float, frozenset[int]] = (0.0, frozenset())  # (monotonic expiry, sold-out ids)
_failing = False  # the last read failed (its warning is logged once per outage)
_lock = threading.Lock()


def sold_out_ids() -> frozenset[int]:
    """The active products with no stock left, as this process last read them (at most SOLD_OUT_TTL_S old)."""
    global _held, _failing
    expiry, ids = _held
    if time.monotonic() < expiry:
        return ids
    try:
        fresh = frozenset(Product.objects.filter(is_active=True, stock=0).values_list("id", flat=True))
    except DatabaseError as exc:
        # held a little longer: while the database is down, not one more failing statement per request
        with _lock:
            _held = (time.monotonic() + SOLD_OUT_RETRY_S, _held[1])
            first, _failing = not _failing, True
        if first:  # once per outage, not per try
            log.warning("sold-out products not read (%s): rails keep the set held before", exc)
        return ids
    with _lock:
        _held = (time.monotonic() + SOLD_OUT_TTL_S, fresh | (_held[1] - ids))
        _failing = False
        return _held[1]


def sold_out_note(product_ids: Iterable[int]) -> None:
    """``product_ids`` just sold out (a checkout in this process): leave them out of this process's rails now."""
    global _held
    add = frozenset(int(i) for i in product_ids)
    if add:
        with _lock:
            _held = (_held[0], _held[1] | add)


def sold_out_forget() -> None:
    """Drop what this process holds (tests: each builds its own catalog)."""
    global _held, _failing
    with _lock:
        _held, _failing = (0.0, frozenset()), False

"""One shopper's browser: a cookie jar, page loads, form posts and the page beacon.

Requests carry what a browser would send: the cookies the site set, ``Origin`` and
``Sec-Fetch-Site: same-origin`` on posts, the CSRF token from the page's form. The beacon mirrors
``shop/static/js/beacon.js``: an impression per card seen (once per page view), a click when a card
is followed, batched to ``POST /api/events`` as JSON with idempotency keys
``imp:{page_view_id}:{placement}:{position}`` and ``clk:...``, flushed right after a click and
when the page is left.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import httpx

from .page import Card, Page, parse_page, rail_cards

USER_AGENTS = {
    "desktop": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "mobile": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/604.1",
}
_MAX_BATCH = 200  # the beacon's batch size
_PLACE_ORDER = re.compile(r"Place order\s*·\s*\$([\d,]+\.\d{2})")


def _beacon_device(user_agent: str) -> str:
    # the beacon's own rule: /iPad|Tablet/ -> tablet, /Mobi|Android/ -> mobile, else desktop
    if re.search(r"iPad|Tablet", user_agent):
        return "tablet"
    if re.search(r"Mobi|Android", user_agent):
        return "mobile"
    return "desktop"


@dataclass
class Counters:
    pages: int = 0
    rails_fetched: int = 0  # rails the pages' script fetched after load
    events_sent: int = 0
    events_refused: int = 0
    http_errors: int = 0
    throttled: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    orders: int = 0
    revenue: float = 0.0
    signups: int = 0
    logins: int = 0
    errors: list[str] = field(default_factory=list)
    sent_keys: list[str] = field(default_factory=list)  # idempotency keys the beacon delivered

    def add(self, other: Counters) -> None:
        for name in ("pages", "rails_fetched", "events_sent", "events_refused", "http_errors", "throttled", "clicks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("add_to_carts", "orders", "signups", "logins"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.revenue += other.revenue
        self.errors.extend(other.errors[:5])
        self.sent_keys.extend(other.sent_keys)


class Browser:
    def __init__(self, *, base_url: str, device: str = "desktop", timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.user_agent = USER_AGENTS[device]
        self.device = _beacon_device(self.user_agent)
        self.client = httpx.Client(
            base_url=self.base_url,
            follow_redirects=True,
            timeout=timeout,
            headers={"User-Agent": self.user_agent, "Accept": "text/html,application/xhtml+xml"},
        )
        self.counters = Counters()
        self.page: Page | None = None
        self.html = ""
        self._queue: list[dict] = []
        self._seen: set[str] = set()

    def close(self) -> None:
        self.leave_page()
        self.client.close()

    def cookies_dump(self) -> list[tuple[str, str, str, str]]:
        return [(c.name, c.value or "", c.domain, c.path) for c in self.client.cookies.jar]

    def cookies_load(self, cookies: list[tuple[str, str, str, str]]) -> None:
        for name, value, domain, path in cookies:
            self.client.cookies.set(name, value, domain=domain, path=path)

    def new_device(self) -> None:
        """Forget every cookie (the same person on another device or after clearing cookies)."""
        self.client.cookies.clear()

    # --- pages -----------------------------------------------------------------------------------
    def _record(self, response: httpx.Response) -> Page:
        self.counters.pages += 1
        if response.status_code == 429:
            self.counters.throttled += 1
        elif response.status_code >= 500:
            self.counters.http_errors += 1
            self.counters.errors.append(f"{response.status_code} {response.request.method} {response.url.path}")
        self.html = response.text
        page = parse_page(response.text, url=str(response.url.path), status=response.status_code)
        self.page = page
        self._seen = set()
        self._rails_after_load(page)
        return page

    def _rails_after_load(self, page: Page) -> None:
        """What the page's script does once it has loaded: fetch each personal rail and put its cards in place."""
        for at, src in reversed(page.rails_after_load):  # from the last, so earlier places stay where they were
            self.counters.rails_fetched += 1
            try:
                response = self.client.get(src, headers={"Accept": "text/html"})
            except httpx.HTTPError as exc:
                self.counters.errors.append(f"GET {src}: {exc.__class__.__name__}")
                continue
            if response.status_code >= 500:
                self.counters.http_errors += 1
                self.counters.errors.append(f"{response.status_code} GET {response.request.url.path}")
            if response.status_code == 200:
                page.cards[at:at] = rail_cards(response.text)

    def get(self, path: str) -> Page:
        self.leave_page()
        try:
            response = self.client.get(path)
        except httpx.HTTPError as exc:
            self.counters.http_errors += 1
            self.counters.errors.append(f"GET {path}: {exc.__class__.__name__}")
            self.page = Page(url=path, status=0)
            return self.page
        return self._record(response)

    def submit(self, form_action: str, fields: dict[str, str]) -> Page:
        """Post a form of the current page (its CSRF token is among ``fields``)."""
        self.leave_page()
        headers = {
            "Origin": self.base_url,
            "Sec-Fetch-Site": "same-origin",
            "Referer": self.base_url + (self.page.url if self.page else "/"),
        }
        try:
            response = self.client.post(form_action, data=fields, headers=headers)
        except httpx.HTTPError as exc:
            self.counters.http_errors += 1
            self.counters.errors.append(f"POST {form_action}: {exc.__class__.__name__}")
            self.page = Page(url=form_action, status=0)
            return self.page
        return self._record(response)

    # --- beacon ------------------------------------------------------------------------------------
    def _push(self, kind: str, prefix: str, card: Card) -> bool:
        pvid = self.page.page_view_id if self.page else None
        pos = "" if card.position is None else str(card.position)
        key = f"{prefix}:{pvid or 'none'}:{card.placement}:{pos}"[:100]
        if key in self._seen:
            return False
        self._seen.add(key)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._queue.append(
            {
                "type": kind,
                "product_id": card.product_id,
                "placement": card.placement,
                "position": card.position,
                "page_view_id": pvid,
                "idempotency_key": key,
                "occurred_at": now,
                "device": self.device,
            }
        )
        return True

    def saw(self, card: Card) -> None:
        self._push("impression", "imp", card)

    def follow(self, card: Card) -> Page:
        """Click a card: the beacon flushes the click first, then the browser navigates."""
        if self._push("click", "clk", card):
            self.counters.clicks += 1
        self.flush()
        return self.get(card.href)

    def flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
            try:
                response = self.client.post(
                    "/api/events",
                    json={"events": batch},
                    headers={"Origin": self.base_url, "Sec-Fetch-Site": "same-origin", "Accept": "*/*"},
                )
            except httpx.HTTPError as exc:
                self.counters.events_refused += len(batch)
                self.counters.errors.append(f"POST /api/events: {exc.__class__.__name__}")
                continue
            if response.status_code < 300:
                self.counters.events_sent += len(batch)
                self.counters.sent_keys.extend(e["idempotency_key"] for e in batch)
            else:
                self.counters.events_refused += len(batch)
                if response.status_code == 429:
                    self.counters.throttled += 1
                else:
                    self.counters.errors.append(f"POST /api/events: {response.status_code} {response.text[:200]}")

    def leave_page(self) -> None:
        # visibilitychange / pagehide: the beacon sends what is queued
        self.flush()

    # --- public catalogue API (JSON) ----------------------------------------------------------------
    def api_json(self, path: str) -> dict | list | None:
        try:
            response = self.client.get(path, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            self.counters.http_errors += 1
            return None
        if response.status_code != 200:
            return None
        return response.json()

    def checkout_total(self) -> float | None:
        """The amount on the checkout page's "Place order" button."""
        m = _PLACE_ORDER.search(self.html)
        return float(m.group(1).replace(",", "")) if m else None

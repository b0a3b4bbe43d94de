"""What a shopper reads off a page: product cards, links, forms, the product on a product page.

Only what a person sees or a browser needs is extracted. Card attributes are whitelisted (product
id, placement and position are what the page's beacon script sends); anything else a card carries
is ignored, so an experiment arm or model version in the markup never reaches a shopper.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_PRICE = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def parse_price(text: str) -> float | None:
    m = _PRICE.search(text or "")
    return float(m.group(0).replace(",", "")) if m else None


@dataclass
class Card:
    product_id: int
    placement: str
    position: int | None
    href: str
    name: str = ""
    brand: str = ""
    price: float | None = None
    sold_out: bool = False


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class ProductInfo:
    product_id: int
    name: str = ""
    brand: str = ""
    price: float | None = None
    in_stock: bool = False
    category_href: str = ""


@dataclass
class Page:
    url: str
    status: int
    page_view_id: str | None = None
    cards: list[Card] = field(default_factory=list)
    category_links: list[tuple[str, str]] = field(default_factory=list)  # (href, text) in the nav bar
    forms: list[Form] = field(default_factory=list)
    next_page: str | None = None
    product: ProductInfo | None = None
    checkout_href: str | None = None
    order_number: str | None = None
    # rails the page's script fetches after load: (where among the cards it goes, its address)
    rails_after_load: list[tuple[int, str]] = field(default_factory=list)

    def form(self, action_contains: str) -> Form | None:
        return next((f for f in self.forms if action_contains in f.action), None)

    def lists(self) -> dict[str, list[Card]]:
        """Cards grouped by placement, in page order, each sorted by position."""
        out: dict[str, list[Card]] = {}
        for c in self.cards:
            out.setdefault(c.placement, []).append(c)
        for cards in out.values():
            cards.sort(key=lambda c: (c.position is None, c.position or 0))
        return out


class _Parser(HTMLParser):
    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.card: Card | None = None
        self.form: Form | None = None
        self.capture: str | None = None  # which text we are collecting
        self.buf: list[str] = []
        self.in_category_nav = False
        self.nav_href: str | None = None
        self.depth_article = 0

    # --- helpers -----------------------------------------------------------------------------
    def _start_capture(self, what: str) -> None:
        self.capture, self.buf = what, []

    def _end_capture(self) -> str:
        text = " ".join("".join(self.buf).split())
        self.capture, self.buf = None, []
        return text

    # --- events ------------------------------------------------------------------------------
    def handle_starttag(self, tag, attrs):  # noqa: C901 - one dispatch over the tags we read
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "body":
            self.page.page_view_id = a.get("data-page-view-id") or None
        elif tag == "nav" and "category-nav" in cls:
            self.in_category_nav = True
        elif tag == "section" and a.get("data-rail-src"):
            self.page.rails_after_load.append((len(self.page.cards), a["data-rail-src"]))
        elif tag == "article" and "card" in cls and a.get("data-product-id") and a.get("data-placement"):
            pos = a.get("data-position")
            try:
                self.card = Card(
                    product_id=int(a["data-product-id"]),
                    placement=a["data-placement"],
                    position=int(pos) if pos not in (None, "") else None,
                    href="",
                )
            except ValueError:
                self.card = None
        elif tag == "article" and "product" in cls and a.get("data-product-id"):
            self.page.product = ProductInfo(product_id=int(a["data-product-id"]))
        elif tag == "a":
            href = a.get("href") or ""
            if self.card is not None and "card-link" in cls:
                self.card.href = href
            elif self.in_category_nav and href:
                self.nav_href = href
                self._start_capture("nav")
            elif a.get("rel") == "next" and "page-link" in cls:
                self.page.next_page = href
            elif href.endswith("/checkout/") and "btn" in cls and "is-disabled" not in cls:
                self.page.checkout_href = href
            elif self.page.product is not None and not self.page.product.category_href and href.startswith("/c/"):
                self.page.product.category_href = href  # breadcrumb: root category first
        elif tag == "p" and "card-brand" in cls and self.card is not None:
            self._start_capture("card-brand")
        elif tag == "h3" and "card-title" in cls and self.card is not None:
            self._start_capture("card-title")
        elif tag == "span" and "price" in cls:
            if self.card is not None:
                self._start_capture("card-price")
            elif self.page.product is not None and "price-large" in cls:
                self._start_capture("product-price")
        elif tag == "span" and "card-flag" in cls and self.card is not None:
            self.card.sold_out = True
        elif tag == "p" and "product-brand" in cls and self.page.product is not None:
            self._start_capture("product-brand")
        elif tag == "h1" and "product-title" in cls and self.page.product is not None:
            self._start_capture("product-title")
        elif tag == "strong" and "order-number" in cls:
            self._start_capture("order-number")
        elif tag == "form":
            self.form = Form(action=a.get("action") or self.page.url, method=(a.get("method") or "get").lower())
            if "buy-box" in cls and self.page.product is not None:
                self.page.product.in_stock = True
        elif tag in ("input", "textarea", "select") and self.form is not None and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.form.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if self.capture is not None and tag in ("p", "h3", "span", "h1", "strong", "a"):
            what = self.capture
            text = self._end_capture()
            if what == "card-brand" and self.card:
                self.card.brand = text
            elif what == "card-title" and self.card:
                self.card.name = text
            elif what == "card-price" and self.card:
                self.card.price = parse_price(text)
            elif what == "product-price" and self.page.product:
                self.page.product.price = parse_price(text)
            elif what == "product-brand" and self.page.product:
                self.page.product.brand = text
            elif what == "product-title" and self.page.product:
                self.page.product.name = text
            elif what == "order-number":
                self.page.order_number = text
            elif what == "nav" and self.nav_href:
                self.page.category_links.append((self.nav_href, text))
                self.nav_href = None
        if tag == "article" and self.card is not None:
            if self.card.href:
                self.page.cards.append(self.card)
            self.card = None
        elif tag == "nav" and self.in_category_nav:
            self.in_category_nav = False
        elif tag == "form" and self.form is not None:
            self.page.forms.append(self.form)
            self.form = None

    def handle_data(self, data):
        if self.capture is not None:
            self.buf.append(data)


def rail_cards(html: str) -> list[Card]:
    """The cards of a rail fetched after load (its ``<section>`` alone)."""
    return parse_page(html, url="", status=200).cards


def parse_page(html: str, *, url: str, status: int) -> Page:
    page = Page(url=url, status=status)
    parser = _Parser(page)
    parser.feed(html)
    parser.close()
    return page

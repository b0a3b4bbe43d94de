"""Run a population of shoppers against a storefront URL: sessions, choices, summary.

Each shopper gets hidden tastes and a plan (sessions spread over the run, an account or not) from
the seed; every random choice in a session comes from a generator seeded by (seed, shopper,
session), so with one worker the whole run is reproducible against the same site state.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from .browser import Browser, Counters
from .catalogue import Catalogue
from .page import Card, Page
from .shopper import (
    DEFAULT_PARAMS,
    ChoiceParams,
    ShopperPlan,
    Tastes,
    add_to_cart_probability,
    examined,
    mnl_choice,
    plan_draw,
    session_budget,
    tastes_draw,
)

DEVICE_MIX = (("desktop", 0.65), ("mobile", 0.3), ("tablet", 0.05))


@dataclass
class Config:
    url: str
    shoppers: int = 300
    minutes: float = 5.0  # sessions start spread over this many minutes (0: all at once)
    seed: int = 7
    concurrency: int = 8
    think_s: float = 0.3  # mean pause between pages (0 in tests)
    round: int = 0  # a later round of the same shoppers (same tastes, fresh session draws)
    params: ChoiceParams = DEFAULT_PARAMS


@dataclass
class Summary:
    shoppers: int = 0
    sessions: int = 0
    counters: Counters = field(default_factory=Counters)
    seconds: float = 0.0
    catalogue_requests: int = 0
    traces: dict[int, list[str]] = field(default_factory=dict)  # per shopper: what it did, in order


@dataclass
class _Shopper:
    plan: ShopperPlan
    tastes: Tastes
    browser: Browser
    username: str
    password: str
    logged_in: bool = False
    signed_up: bool = False
    cart: int = 0
    bought: set[int] = field(default_factory=set)
    trace: list[str] = field(default_factory=list)


def _device(seed: int, index: int) -> str:
    r = random.Random(f"device:{seed}:{index}").random()
    acc = 0.0
    for name, p in DEVICE_MIX:
        acc += p
        if r < acc:
            return name
    return "desktop"


def _credentials(seed: int, index: int) -> tuple[str, str]:
    h = hashlib.sha256(f"shopper:{seed}:{index}".encode()).hexdigest()
    return f"shopper{seed}x{index}", f"Lk-{h[:14]}-q9"


class _Session:
    """One visit: pages until the budget is spent or the shopper leaves; maybe a checkout."""

    def __init__(self, shopper: _Shopper, catalogue: Catalogue, departments: list[str], config: Config, number: int):
        self.s = shopper
        self.b = shopper.browser
        self.catalogue = catalogue
        self.departments = departments
        self.config = config
        self.p = config.params
        self.rng = random.Random(f"session:{config.seed}:{config.round}:{shopper.plan.index}:{number}")
        self.number = number

    def log(self, what: str) -> None:
        self.s.trace.append(what)

    def think(self) -> None:
        if self.config.think_s > 0:
            time.sleep(self.rng.expovariate(1.0 / self.config.think_s))

    # --- accounts ---------------------------------------------------------------------------------
    def sign_up(self) -> None:
        page = self.b.get("/accounts/signup/")
        form = next((f for f in page.forms if "password1" in f.fields), None)
        if form is None:
            return
        fields = dict(form.fields)
        fields.update(
            {
                "username": self.s.username,
                "email": f"{self.s.username}@example.com",
                "first_name": "Sam",
                "password1": self.s.password,
                "password2": self.s.password,
            }
        )
        page = self.b.submit("/accounts/signup/", fields)
        if page.url.rstrip("/").endswith("signup"):
            self.log_in()  # the name is taken: this person signed up in an earlier run
            return
        self.s.signed_up = self.s.logged_in = True
        self.b.counters.signups += 1
        self.log("signup")

    def log_in(self) -> None:
        page = self.b.get("/accounts/login/")
        form = next((f for f in page.forms if "password" in f.fields), None)
        if form is None:
            return
        fields = dict(form.fields)
        fields.update({"username": self.s.username, "password": self.s.password})
        page = self.b.submit("/accounts/login/", fields)
        if page.status == 200 and not page.url.startswith("/accounts/login"):
            self.s.logged_in = True
            self.b.counters.logins += 1
            self.log("login")

    # --- choosing ---------------------------------------------------------------------------------
    def _utility(self, card: Card) -> float | None:
        facts = self.catalogue.facts(card.product_id)
        if facts is None or card.sold_out:
            return None
        return self.s.tastes.utility(facts)

    def browse_lists(self, page: Page) -> Card | None:
        """Look at each list on the page (examination by position), then pick one card or none."""
        seen: list[Card] = []
        for cards in page.lists().values():
            positions = [c.position if c.position is not None else i for i, c in enumerate(cards)]
            for i in examined(positions, self.rng, self.p):
                card = cards[i]
                self.b.saw(card)
                if card.product_id in self.s.bought or (page.product and card.product_id == page.product.product_id):
                    continue
                seen.append(card)
        scored = [(c, u) for c in seen if (u := self._utility(c)) is not None]
        pick = mnl_choice([u for _, u in scored], self.rng, self.p)
        return None if pick is None else scored[pick][0]

    def consider_product(self, page: Page) -> bool:
        """On a product page: add it to the cart or not. True when added."""
        info = page.product
        if info is None or not info.in_stock:
            return False
        facts = self.catalogue.facts(info.product_id)
        if facts is None:
            return False
        if self.rng.random() >= add_to_cart_probability(self.s.tastes.utility(facts), self.p):
            return False
        form = page.form("/cart/add/")
        if form is None:
            return False
        self.b.submit(form.action, dict(form.fields))
        self.s.cart += 1
        self.b.counters.add_to_carts += 1
        self.log(f"cart:{info.product_id}")
        return True

    def checkout(self) -> None:
        if self.s.plan.has_account and not self.s.logged_in:
            self.sign_up() if not self.s.signed_up else self.log_in()
        page = self.b.get("/checkout/")
        form = next((f for f in page.forms if "full_name" in f.fields), None)
        if form is None:
            return
        total = self.b.checkout_total()
        fields = dict(form.fields)
        fields.update(
            {
                "full_name": f"Shopper {self.s.plan.index}",
                "email": fields.get("email") or f"{self.s.username}@example.com",
                "address_line": f"{self.s.plan.index} Simulation Street",
                "city": "Springfield",
                "postal_code": "12345",
                "country": fields.get("country") or "United States",
            }
        )
        page = self.b.submit(form.action or "/checkout/", fields)
        if page.order_number:
            self.b.counters.orders += 1
            self.b.counters.revenue += total or 0.0
            self.s.cart = 0
            self.log(f"order:{total}")

    def navigate(self) -> Page:
        """Move on without a card: a department the shopper likes, a search, or the home page."""
        r = self.rng.random()
        page = self.b.page
        if r < self.p.p_search:
            dept = self._pick_department()
            return self._search(dept)
        if r < 0.9 and page is not None and page.category_links:
            links = {href.strip("/").split("/")[-1]: href for href, _ in page.category_links}
            dept = self._pick_department(among=list(links))
            if dept in links:
                self.log(f"category:{dept}")
                return self.b.get(links[dept])
        self.log("home")
        return self.b.get("/")

    def _pick_department(self, among: list[str] | None = None) -> str:
        shares = self.s.tastes.departments
        names = [d for d in (among or list(shares)) if d in shares] or list(shares)
        return self.rng.choices(names, weights=[shares[d] for d in names])[0]

    def _search(self, dept: str) -> Page:
        words = [w for w in dept.replace("-", " ").split() if len(w) > 3 and w != "and"] or [dept]
        query = self.rng.choice(words)
        self.log(f"search:{query}")
        return self.b.get(f"/search/?q={query}")

    # --- the visit --------------------------------------------------------------------------------
    def run(self) -> None:
        s, b = self.s, self.b
        plan = s.plan
        if self.number > 0 and plan.new_device[self.number - 1]:
            b.new_device()
            s.logged_in = False
            s.cart = 0  # the cart belongs to the old device's visitor
        if plan.has_account and s.signed_up and not s.logged_in:
            self.log_in()
        entry = self.rng.random()
        if entry < 0.7:
            self.log("home")
            page = b.get("/")
        elif entry < 0.85 and self.departments:
            page = self._search(self._pick_department())
        else:
            page = b.get("/")
            page = self.navigate()
        budget = session_budget(self.rng, self.p)
        pages = 1
        while True:
            tempted = False
            if page.product is not None and self.consider_product(page):
                tempted = True
                if self.rng.random() < self.p.checkout_now:
                    self.checkout()
                    break
                page = b.get(page.url)  # back to the product page (its rails)
            card = self.browse_lists(page)
            self.think()
            if pages >= budget:
                break
            if card is not None:
                self.log(f"click:{card.placement}:{card.position}:{card.product_id}")
                page = b.follow(card)
            else:
                if self.rng.random() < self.p.leave_base + (0 if tempted else self.p.leave_bored):
                    break
                next_page = page.next_page if page.next_page and self.rng.random() < 0.3 else None
                page = b.get(next_page) if next_page else self.navigate()
            pages += 1
        if s.cart > 0 and self.rng.random() < self.p.checkout_at_end:
            self.checkout()
        b.leave_page()
        self.log("leave")


def simulate(
    config: Config,
    *,
    on_session_done: Callable[[], None] | None = None,
    browser_state: dict[int, dict] | None = None,
) -> Summary:
    """Run every shopper's sessions; returns the summary.

    ``browser_state`` carries each shopper's cookies (and whether it has signed up) from one round
    to the next, the way a person's browser keeps them between visits; it is updated in place.
    """
    started = time.monotonic()
    catalogue = Catalogue(base_url=config.url)
    departments = catalogue.departments()
    shoppers: list[_Shopper] = []
    schedule: list[tuple[float, int, int]] = []
    for i in range(config.shoppers):
        plan = plan_draw(seed=config.seed, shopper=i, params=config.params)
        username, password = _credentials(config.seed, i)
        shopper = _Shopper(
            plan=plan,
            tastes=tastes_draw(seed=config.seed, shopper=i, departments=departments, params=config.params),
            browser=Browser(base_url=config.url, device=_device(config.seed, i)),
            username=username,
            password=password,
        )
        if browser_state is not None and i in browser_state:
            state = browser_state[i]
            shopper.browser.cookies_load(state["cookies"])
            shopper.signed_up = state["signed_up"]
            shopper.logged_in = state["logged_in"]
        shoppers.append(shopper)
        for n, start in enumerate(plan.session_starts):
            schedule.append((start * config.minutes * 60.0, i, n))
    schedule.sort()

    summary = Summary(shoppers=config.shoppers)
    last: dict[int, Future] = {}
    lock = threading.Lock()

    def run_session(shopper: _Shopper, number: int, previous: Future | None) -> None:
        if previous is not None:
            previous.result()  # a shopper's visits never overlap (one browser)
        try:
            _Session(shopper, catalogue, departments, config, number).run()
        except Exception as exc:  # a broken page must not stop the other shoppers
            shopper.browser.counters.errors.append(f"session error: {exc!r}")
        with lock:
            summary.sessions += 1
        if on_session_done is not None:
            on_session_done()

    with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
        for due, i, n in schedule:
            wait = due - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            last[i] = pool.submit(run_session, shoppers[i], n, last.get(i))
    for shopper in shoppers:
        shopper.browser.close()
        if browser_state is not None:
            browser_state[shopper.plan.index] = {
                "cookies": shopper.browser.cookies_dump(),
                "signed_up": shopper.signed_up,
                "logged_in": shopper.logged_in,
            }
        summary.counters.add(shopper.browser.counters)
        summary.traces[shopper.plan.index] = shopper.trace
    summary.catalogue_requests = catalogue.requests
    catalogue.close()
    summary.seconds = time.monotonic() - started
    return summary


def session_count(config: Config) -> int:
    return sum(
        len(plan_draw(seed=config.seed, shopper=i, params=config.params).session_starts) for i in range(config.shoppers)
    )

"""Shoppers' hidden tastes and the choice model they browse with (pure functions, seeded).

Tastes are drawn from a seeded distribution that knows nothing of any recommender:

    department share   s ~ Dirichlet(DEPT_CONCENTRATION * 1_K) over the shop's top-level categories
    department utility w_dept * ln(K * s_d)           (0 for an average department, < 0 for disliked)
    leaf category      N(0, SD_LEAF^2)     per (shopper, leaf category)
    brand              N(0, SD_BRAND^2)    per (shopper, brand)
    product            N(0, SD_ITEM^2)     per (shopper, product): idiosyncratic, stable across sessions
    price              -beta_p * |ln(price / p*)|, p* ~ LogNormal(ln PRICE_MEDIAN, PRICE_SIGMA^2),
                       beta_p ~ U(BETA_PRICE_LOW, BETA_PRICE_HIGH)

Per-(shopper, x) draws come from a hash of (seed, shopper, x), so a shopper's taste for a product
does not depend on the order in which it meets products.

Browsing a list of cards (a rail, a category grid, search results):
1. Examination (position-based model): slot k (0-based) is looked at with probability
   (k + 1) ** -EXAMINE_DECAY; with 0.8, slot 1 is seen always and slot 8 about 19% of the time.
2. Choice (multinomial logit with a "none of these" option, as in RecSim): among the examined
   cards, P(j) = exp(u_j / TAU) / (exp(U_NONE / TAU) + sum_k exp(u_k / TAU)).
3. On a product page, add to cart with probability sigmoid((u - CART_THRESHOLD) / CART_SCALE).
4. Session budget ~ 1 + Poisson(MEAN_PAGES); after each page the shopper leaves with probability
   LEAVE_BASE, plus LEAVE_BORED when nothing on that page tempted it (KuaiSim's leave model).
5. With a full cart the shopper checks out at once with probability CHECKOUT_NOW, otherwise keeps
   browsing; at the end of a session it checks out with probability CHECKOUT_AT_END.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChoiceParams:
    dept_concentration: float = 0.5
    w_dept: float = 1.0
    sd_leaf: float = 0.4
    sd_brand: float = 0.6
    sd_item: float = 0.6
    price_median: float = 15.0
    price_sigma: float = 0.8
    beta_price_low: float = 0.2
    beta_price_high: float = 0.8
    examine_decay: float = 0.8
    tau: float = 1.0
    u_none: float = 2.0
    cart_threshold: float = 3.0
    cart_scale: float = 0.5
    mean_pages: float = 7.0
    leave_base: float = 0.05
    leave_bored: float = 0.12
    checkout_now: float = 0.35
    checkout_at_end: float = 0.5
    p_account: float = 0.3  # shoppers who sign up and log in on later visits
    p_new_device: float = 0.4  # a returning account holder arrives without its old cookies
    mean_extra_sessions: float = 0.7
    max_sessions: int = 4
    p_search: float = 0.25  # when moving on, search instead of opening a category


DEFAULT_PARAMS = ChoiceParams()


def _unit(*parts: object) -> float:
    """A uniform number in (0, 1) from a hash of ``parts`` (stable across runs and processes)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2.0**64


def _normal(*parts: object) -> float:
    u1, u2 = _unit(*parts, "a"), _unit(*parts, "b")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@dataclass(frozen=True)
class ProductFacts:
    """Public facts about a product (what its card, page or the public catalogue API show)."""

    product_id: int
    department: str  # top-level category slug
    leaf: str  # category slug
    brand: str
    price: float
    in_stock: bool = True


@dataclass(frozen=True)
class Tastes:
    seed: int
    shopper: int
    departments: dict[str, float]  # department slug -> share (sums to 1)
    price_pref: float
    beta_price: float
    params: ChoiceParams = DEFAULT_PARAMS

    def utility(self, p: ProductFacts) -> float:
        k = len(self.departments)
        share = self.departments.get(p.department, 1.0 / max(k, 1))
        u = self.params.w_dept * math.log(max(k * share, 1e-9))
        u += self.params.sd_leaf * _normal(self.seed, self.shopper, "leaf", p.leaf)
        u += self.params.sd_brand * _normal(self.seed, self.shopper, "brand", p.brand)
        u += self.params.sd_item * _normal(self.seed, self.shopper, "item", p.product_id)
        if p.price > 0:
            u -= self.beta_price * abs(math.log(p.price / self.price_pref))
        return u


def tastes_draw(
    *, seed: int, shopper: int, departments: Sequence[str], params: ChoiceParams = DEFAULT_PARAMS
) -> Tastes:
    rng = random.Random(f"tastes:{seed}:{shopper}")
    depts = sorted(departments)
    draws = [rng.gammavariate(params.dept_concentration, 1.0) for _ in depts]
    total = sum(draws) or 1.0
    return Tastes(
        seed=seed,
        shopper=shopper,
        departments={d: x / total for d, x in zip(depts, draws, strict=True)},
        price_pref=math.exp(rng.gauss(math.log(params.price_median), params.price_sigma)),
        beta_price=rng.uniform(params.beta_price_low, params.beta_price_high),
        params=params,
    )


def examine_probability(position: int, params: ChoiceParams = DEFAULT_PARAMS) -> float:
    """Position-based examination: slot ``position`` (0-based) is looked at with (k + 1) ** -decay."""
    return (position + 1) ** -params.examine_decay


def examined(positions: Sequence[int], rng: random.Random, params: ChoiceParams = DEFAULT_PARAMS) -> list[int]:
    """The indices (into ``positions``) the shopper looks at."""
    return [i for i, k in enumerate(positions) if rng.random() < examine_probability(k, params)]


def mnl_choice(utilities: Sequence[float], rng: random.Random, params: ChoiceParams = DEFAULT_PARAMS) -> int | None:
    """Index of the chosen item, or None for the "none of these" option."""
    if not utilities:
        return None
    scores = [params.u_none / params.tau, *(u / params.tau for u in utilities)]
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    r = rng.random() * sum(weights)
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if r < acc:
            return None if i == 0 else i - 1
    return len(utilities) - 1


def add_to_cart_probability(utility: float, params: ChoiceParams = DEFAULT_PARAMS) -> float:
    return 1.0 / (1.0 + math.exp(-(utility - params.cart_threshold) / params.cart_scale))


@dataclass(frozen=True)
class ShopperPlan:
    index: int
    has_account: bool
    session_starts: tuple[float, ...]  # fractions of the run's duration, increasing
    new_device: tuple[bool, ...]  # per session after the first: arrives without its old cookies


def plan_draw(*, seed: int, shopper: int, params: ChoiceParams = DEFAULT_PARAMS) -> ShopperPlan:
    rng = random.Random(f"plan:{seed}:{shopper}")
    has_account = rng.random() < params.p_account
    extra = 0
    # Poisson by inversion (few sessions: a handful of iterations)
    limit, prod = math.exp(-params.mean_extra_sessions), rng.random()
    while prod > limit and extra < params.max_sessions - 1:
        extra += 1
        prod *= rng.random()
    first = rng.random() * 0.6
    starts = [first]
    for _ in range(extra):
        starts.append(starts[-1] + rng.random() * (1.0 - starts[-1]) * 0.7)
    return ShopperPlan(
        index=shopper,
        has_account=has_account,
        session_starts=tuple(starts),
        new_device=tuple(rng.random() < params.p_new_device for _ in range(extra)),
    )


def session_budget(rng: random.Random, params: ChoiceParams = DEFAULT_PARAMS) -> int:
    # Poisson by inversion
    limit, k, prod = math.exp(-params.mean_pages), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return 1 + k

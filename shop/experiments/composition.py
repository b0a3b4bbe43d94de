"""What each arm's personalised rails showed, read back from the impression log (``manage.py experiment_report
--composition``; the closed loop prints it under the lift table).

Per arm, over its cards on the personalised rails (home, product page and cart; the trending rail is the
same in every arm) in the experiment's window:

- products shown: the distinct products among its cards (how much of the catalogue it reaches);
- the visitor's own products: cards of a product the visitor had viewed, clicked or put in its cart before the
  card was shown, and the click rate of those cards and of the others;
- the control's products: of the other cards, the share that are among the control arm's ``CONTROL_TOP``
  most-shown products (for a popularity control, its list).

A click counts once, for the latest card of that product on that placement shown to that visitor before it.
The lift table says whether an arm sells more; this says what its rails put in front of the shoppers.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Min, Q

from shop.events.models import Event, EventType
from shop.recs.live import PLACEMENTS, TRENDING

from .models import Experiment
from .selectors import experiment_spec_get

CONTROL_TOP = 40
PERSONAL_PLACEMENTS = tuple(p for p in PLACEMENTS if p != TRENDING)
ENGAGED = (EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART)


@dataclass(frozen=True, slots=True)
class ArmComposition:
    arm: str
    cards: int
    products: int  # distinct products among the cards
    own_cards: int  # cards of a product the visitor had engaged with before
    own_clicks: int
    other_cards: int
    other_clicks: int
    other_from_control: int  # other cards among the control's CONTROL_TOP most-shown products

    @staticmethod
    def _share(n: int, d: int) -> float | None:
        return n / d if d else None

    @property
    def own_share(self) -> float | None:
        return self._share(self.own_cards, self.cards)

    @property
    def own_ctr(self) -> float | None:
        return self._share(self.own_clicks, self.own_cards)

    @property
    def other_ctr(self) -> float | None:
        return self._share(self.other_clicks, self.other_cards)

    @property
    def other_control_share(self) -> float | None:
        return self._share(self.other_from_control, self.other_cards)


Key = tuple[object, int, str]  # (visitor, product, placement)


def composition_compute(
    *,
    arms: Sequence[str],
    control: str | None,
    cards: Iterable[tuple[object, int, str, str, dt.datetime]],
    clicks: Iterable[tuple[object, int, str, dt.datetime]],
    first_engaged: Mapping[tuple[object, int], dt.datetime],
    control_top: int = CONTROL_TOP,
) -> list[ArmComposition]:
    """``cards``: (visitor, product, placement, arm, shown at); ``clicks``: (visitor, product, placement, at);
    ``first_engaged``: (visitor, product) -> when the visitor first viewed, clicked or carted it. Pure."""
    shown: dict[Key, list[tuple[dt.datetime, int]]] = defaultdict(list)
    rows: list[tuple[str, int, bool]] = []  # per card: arm, product, the visitor's own
    for visitor, product, placement, arm, at in cards:
        if arm not in arms:
            continue
        first = first_engaged.get((visitor, product))
        shown[(visitor, product, placement)].append((at, len(rows)))
        rows.append((arm, product, first is not None and first < at))
    for times in shown.values():
        times.sort()
    clicked: set[int] = set()
    for visitor, product, placement, at in clicks:
        times = shown.get((visitor, product, placement))
        if not times:
            continue
        i = bisect.bisect_right(times, (at, len(rows))) - 1
        if i >= 0:
            clicked.add(times[i][1])
    top: set[int] = set()
    if control is not None:
        per_product = Counter(product for arm, product, _ in rows if arm == control)
        top = {product for product, _ in per_product.most_common(control_top)}
    out = []
    for arm in arms:
        mine = [(i, product, own) for i, (a, product, own) in enumerate(rows) if a == arm]
        own = [i for i, _, o in mine if o]
        other = [(i, product) for i, product, o in mine if not o]
        out.append(
            ArmComposition(
                arm=arm,
                cards=len(mine),
                products=len({product for _, product, _ in mine}),
                own_cards=len(own),
                own_clicks=sum(1 for i in own if i in clicked),
                other_cards=len(other),
                other_clicks=sum(1 for i, _ in other if i in clicked),
                other_from_control=0 if arm == control else sum(1 for _, product in other if product in top),
            )
        )
    return out


def experiment_composition(*, experiment: Experiment) -> list[ArmComposition]:
    """:func:`composition_compute` on the experiment's window (three queries; a report, not a page)."""
    spec = experiment_spec_get(experiment=experiment)
    arms, control = [a.key for a in spec.arms], spec.control
    if experiment.started_at is None:
        return composition_compute(arms=arms, control=control, cards=(), clicks=(), first_engaged={})
    window = Q(occurred_at__gte=experiment.started_at)
    before_end = Q()
    if experiment.stopped_at is not None:
        window &= Q(occurred_at__lt=experiment.stopped_at)
        before_end = Q(occurred_at__lt=experiment.stopped_at)
    card_qs = Event.objects.filter(window, type=EventType.IMPRESSION, arm__in=arms, placement__in=PERSONAL_PLACEMENTS)
    cards = card_qs.values_list("visitor_id", "product_id", "placement", "arm", "occurred_at")
    clicks = Event.objects.filter(window, type=EventType.CLICK, placement__in=PERSONAL_PLACEMENTS).values_list(
        "visitor_id", "product_id", "placement", "occurred_at"
    )
    first_engaged = {
        (v, p): first
        for v, p, first in Event.objects.filter(
            before_end, type__in=ENGAGED, visitor_id__in=card_qs.values("visitor_id")
        )
        .values("visitor_id", "product_id")
        .annotate(first=Min("occurred_at"))
        .values_list("visitor_id", "product_id", "first")
        .iterator(chunk_size=10_000)
    }
    return composition_compute(
        arms=arms,
        control=control,
        cards=cards.iterator(chunk_size=10_000),
        clicks=clicks.iterator(chunk_size=10_000),
        first_engaged=first_engaged,
    )

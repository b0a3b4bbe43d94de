"""Reads: the running experiment (cached in process memory) and a visitor's arm."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q

from shop.events.models import Event, EventType
from shop.orders.models import Order, OrderLine, OrderStatus

from .analysis import Results, VisitorRow, results_compute
from .assignment import ArmSpec, Assignment, ExperimentSpec, assign
from .models import Experiment

__all__ = [
    "Assignment",
    "assignment_for",
    "experiment_current_get",
    "experiment_exposed_count",
    "experiment_get",
    "experiment_results",
    "experiment_spec_get",
    "experiment_visitor_rows",
    "running_experiment_forget",
    "running_experiment_get",
]

_lock = threading.Lock()
_cached: tuple[float, ExperimentSpec | None] | None = None  # (monotonic expiry, value)


def experiment_spec_get(*, experiment: Experiment) -> ExperimentSpec:
    arms = tuple(
        ArmSpec(key=a.key, weight=a.weight, is_control=a.is_control)
        for a in sorted(experiment.arms.all(), key=lambda a: (not a.is_control, a.id))  # keeps the prefetch
    )
    return ExperimentSpec(key=experiment.key, salt=experiment.salt, arms=arms, id=experiment.pk)


def _running_experiment_load() -> ExperimentSpec | None:
    experiment = (
        Experiment.objects.filter(status=Experiment.Status.RUNNING)
        .prefetch_related("arms")
        .order_by("-started_at")
        .first()
    )
    return None if experiment is None else experiment_spec_get(experiment=experiment)


def running_experiment_get() -> ExperimentSpec | None:
    """The running experiment as plain data; read from the database at most once per TTL per process."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and cached[0] > now:
        return cached[1]
    with _lock:
        cached = _cached
        if cached is not None and cached[0] > now:
            return cached[1]
        value = _running_experiment_load()
        _cached = (time.monotonic() + settings.EXPERIMENTS_CACHE_TTL_S, value)
        return value


def running_experiment_forget() -> None:
    """Drop this process's cached copy (other processes pick changes up within the TTL)."""
    global _cached
    _cached = None


def assignment_for(*, visitor_id: uuid.UUID) -> Assignment:
    """The visitor's experiment and arm; sticky for as long as the experiment's salt and weights hold."""
    return assign(experiment=running_experiment_get(), visitor_id=visitor_id)


def experiment_get(*, key: str) -> Experiment | None:
    return Experiment.objects.prefetch_related("arms").filter(key=key).first()


def experiment_current_get() -> Experiment | None:
    """The running experiment, else the one that stopped last."""
    qs = Experiment.objects.prefetch_related("arms")
    running = qs.filter(status=Experiment.Status.RUNNING).order_by("-started_at").first()
    if running is not None:
        return running
    return qs.exclude(started_at=None).order_by(F("stopped_at").desc(nulls_last=True), "-started_at").first()


def experiment_visitor_rows(*, experiment: Experiment) -> tuple[list[VisitorRow], int]:
    """One row per visitor exposed to the experiment (grouped queries: events, orders, then the orders
    holding a product their visitor had clicked on a rail first).

    Returns the rows and the number of visitors seen under more than one arm (left out).
    """
    if experiment.started_at is None:
        return [], 0
    arm_keys = [a.key for a in experiment.arms.all()]
    window = Q(occurred_at__gte=experiment.started_at)
    if experiment.stopped_at is not None:
        window &= Q(occurred_at__lt=experiment.stopped_at)
    armed = Q(arm__in=arm_keys)
    # A rail click is a click on a placement where the experiment's rails were rendered. (A click on a
    # served card also carries that card's arm, looked up when it arrives; clicks logged before that did
    # not, so they are counted by placement.)
    rail_placements = list(
        Event.objects.filter(window, armed, type=EventType.IMPRESSION).values_list("placement", flat=True).distinct()
    )
    per_visitor = (
        Event.objects.filter(window)
        .values("visitor_id")
        .annotate(
            arm_min=Min("arm", filter=armed),
            arm_max=Max("arm", filter=armed),
            first_seen=Min("occurred_at", filter=armed),
            model_version=Max("model_version", filter=armed),
            impressions=Count("id", filter=armed & Q(type=EventType.IMPRESSION)),
            clicks=Count("id", filter=Q(type=EventType.CLICK, placement__in=rail_placements)),
            carts=Count("id", filter=Q(type=EventType.ADD_TO_CART)),
        )
        .filter(first_seen__isnull=False)
        .values_list(
            "visitor_id", "arm_min", "arm_max", "first_seen", "model_version", "impressions", "clicks", "carts"
        )
    )
    orders_window = Q(placed_at__gte=experiment.started_at)
    if experiment.stopped_at is not None:
        orders_window &= Q(placed_at__lt=experiment.stopped_at)
    orders: dict[uuid.UUID, list[tuple]] = {}
    for visitor_id, placed_at, total in (
        Order.objects.filter(orders_window)
        .exclude(status=OrderStatus.CANCELLED)
        .values_list("visitor_id", "placed_at", "total")
        .iterator(chunk_size=5000)
    ):
        orders.setdefault(visitor_id, []).append((placed_at, total))
    # an order "through a rail": one of its lines is a product its visitor clicked on a rail placement in the
    # window before the order was placed (the click's product and visitor, not the arm: the beacon's clicks of
    # older releases carry none)
    rail_click = Event.objects.filter(
        window,
        type=EventType.CLICK,
        placement__in=rail_placements,
        visitor_id=OuterRef("order__visitor_id"),
        product_id=OuterRef("product_id"),
        occurred_at__lt=OuterRef("order__placed_at"),
    )
    through_rail: dict[uuid.UUID, list] = {}
    for visitor_id, placed_at, _order in (
        OrderLine.objects.filter(Exists(rail_click), order__placed_at__gte=experiment.started_at)
        .filter(**({"order__placed_at__lt": experiment.stopped_at} if experiment.stopped_at is not None else {}))
        .exclude(order__status=OrderStatus.CANCELLED)
        .values_list("order__visitor_id", "order__placed_at", "order_id")
        .distinct()
        .iterator(chunk_size=5000)
    ):
        through_rail.setdefault(visitor_id, []).append(placed_at)

    rows: list[VisitorRow] = []
    crossovers = 0
    for visitor_id, arm_min, arm_max, first_seen, version, impressions, clicks, carts in per_visitor.iterator(
        chunk_size=5000
    ):
        if arm_min != arm_max:
            crossovers += 1
            continue
        mine = [total for placed_at, total in orders.get(visitor_id, ()) if placed_at >= first_seen]
        via_rail = sum(1 for placed_at in through_rail.get(visitor_id, ()) if placed_at >= first_seen)
        rows.append(
            VisitorRow(
                arm=arm_min,
                first_seen=first_seen,
                model_version=version or "",
                orders=len(mine),
                revenue=float(sum(mine, Decimal(0))),
                added_to_cart=carts > 0,
                impressions=impressions,
                clicks=clicks,
                rail_orders=via_rail,
            )
        )
    return rows, crossovers


def experiment_results(*, experiment: Experiment) -> Results:
    rows, crossovers = experiment_visitor_rows(experiment=experiment)
    return results_compute(
        experiment=experiment_spec_get(experiment=experiment),
        rows=rows,
        crossovers=crossovers,
        tuning=settings.EXPERIMENTS_SEQUENTIAL_TUNING,
        revenue_cap_percentile=settings.EXPERIMENTS_REVENUE_CAP_PERCENTILE,
    )


def experiment_exposed_count(*, experiment: Experiment) -> int:
    """Visitors with at least one event carrying one of the experiment's arms in its window (one query)."""
    if experiment.started_at is None:
        return 0
    qs = Event.objects.filter(occurred_at__gte=experiment.started_at, arm__in=[a.key for a in experiment.arms.all()])
    if experiment.stopped_at is not None:
        qs = qs.filter(occurred_at__lt=experiment.stopped_at)
    return qs.values("visitor_id").distinct().count()

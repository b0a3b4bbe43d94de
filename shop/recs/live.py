"""The one recommendation service behind every personalised placement (rails and the API).

Per request: the visitor's experiment arm (``shop.experiments``), then the sources in order

1. **live**: the serving model (:mod:`.serving`) re-ranks candidates for this visitor from the snapshot
   history merged with the visitor's events since the snapshot, read from the database (the newest
   RECS_FRESH_EVENTS that are not impressions, through the (visitor, occurred_at) index of those, under a
   statement timeout);
2. **batch**: the visitor's list from the serving score set (``dlrm`` arm only: that list is the model's);
3. **popularity**: the shop's popular list.

Arms: ``popularity`` serves the popular list (source ``popularity``); ``heuristic`` runs the pipeline's
stage 1 without the model (the serving model's stage 1, or while no model serves, stage 1 fitted on the
latest snapshot: the arm never waits for a DLRM to pass the gate); ``dlrm`` (and no running experiment) the
full pipeline. When a source cannot serve, the next one does and the response says why (``reason``): no
active model (``no_model``), the model still loading, the artifact missing,
the scorer raising, the latency budget (RECS_LATENCY_BUDGET_MS) spent, the database slow. Every request is
counted with its source and reason (:mod:`.stats`). Items in the cart or bought since the snapshot, the
product on the page and products sold out since their list was ranked (``shop.catalog.stock``) are never
recommended.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, ProgrammingError, connection, transaction

from shop.catalog.rails import RailContext, popular_ids, trending_ids
from shop.catalog.stock import sold_out_ids
from shop.events.models import Event, EventType
from shop.experiments.selectors import assignment_for
from shop.orders.models import CartItem

from . import keys
from .models import ServingPointer
from .selectors import recommendations_for_visitor
from .serving import (
    ServingModel,
    serving_model,
    serving_stage1,
    serving_stage1_error,
    serving_start,
    serving_status,
)
from .stats import serving_record

#: placement -> what it is; ``product.recommended`` seeds stage 1 with the product on the page.
PLACEMENTS = {
    "home.recommended": "Recommended for you",
    "product.recommended": "You may also like",
    "cart.recommended": "Complete your order",
    "home.trending": "Trending now",
}
TRENDING = "home.trending"
ARMS = ("popularity", "heuristic", "dlrm")
DEFAULT_ARM = "dlrm"  # no running experiment: the full pipeline

#: how many more than asked each source ranks, so that sold-out products (``shop.catalog.stock``) can be left out
SOLD_OUT_SLACK = 8

T = TypeVar("T")

LIVE, BATCH, POPULARITY, FALLBACK = "live", "batch", "popularity", "fallback"


@dataclass(frozen=True)
class Served:
    """One recommendation answer: product ids best first, their scores (None when the source has none),
    who ranked them and how long each stage took (milliseconds)."""

    placement: str
    product_ids: list[int]
    scores: list[float | None]
    arm: str | None
    experiment: str | None
    model_version: str | None
    source: str  # live | batch | popularity | fallback
    reason: str  # why an earlier source did not serve ("" when the intended one did)
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Unserved(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


def _executor() -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
    """Scoring threads of this process; at most four requests per thread scoring or queued (beyond
    that a request does not queue behind others: it falls back at once, reason ``busy``)."""
    global _pool, _slots
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                n = settings.RECS_SERVING_THREADS  # > 0 here (0 scores on the request's thread)
                _slots = threading.BoundedSemaphore(4 * n)
                _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="recs-score")
    return _pool, _slots


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def checked_by_use(run: Callable[[], T]) -> T:
    """``run()`` (statements on ``connection``), standing in for the connection's health check.

    With CONN_HEALTH_CHECKS, Django checks a persistent connection at its first use in each request with a
    ``SELECT 1`` of its own: one more round trip, the price of a statement on this path under load (a wait
    for a core at each end). When that check is still due, the request's first statement is the check
    instead: if it fails on a connection that turns out dead (the server restarted, an idle connection
    cut), the connection is closed and ``run()`` goes again once on a new one, as Django's check would
    have reconnected. Inside a transaction, Django's own rules apply.
    """
    due = (
        connection.connection is not None
        and connection.health_check_enabled
        and not connection.health_check_done
        and not connection.in_atomic_block
    )
    if not due:
        return run()
    connection.health_check_done = True
    try:
        return run()
    except (InterfaceError, OperationalError):
        if connection.is_usable():
            raise  # the statement failed, not the connection (a timeout): the caller falls back
        connection.close()
    return run()


UNKNOWN_PREPARED_STATEMENT = "26000"  # PostgreSQL's SQLSTATE for "prepared statement does not exist"

_CART_SQL = (
    "SELECT ci.product_id FROM orders_cartitem ci JOIN orders_cart c ON c.id = ci.cart_id WHERE c.visitor_id = {vid}"
)


def cart_product_ids(*, visitor_id: uuid.UUID) -> list[int]:
    """The products in this visitor's cart (one indexed statement; no query compiling on PostgreSQL)."""
    if connection.vendor != "postgresql":
        return list(CartItem.objects.filter(cart__visitor_id=visitor_id).values_list("product_id", flat=True))

    def run() -> list[int]:
        with connection.cursor() as cur:
            cur.execute(_CART_SQL.format(vid="%s"), [uuid.UUID(str(visitor_id))])
            return [r[0] for r in cur.fetchall()]

    return checked_by_use(run)


@dataclass
class _Reads:
    """What one request read about its visitor: the cart (None until read) and the fresh event rows."""

    cart: list[int] | None = None
    rows: list[tuple] = field(default_factory=list)


def _fresh_sql(who: str) -> str:
    """The newest events of one visitor (``who`` compares ``e.visitor_id`` or ``e.user_id`` with $1) since the
    snapshot ($2: its last event id) that are not impressions, newest first, at most $3."""
    return (  # served by the (visitor, occurred_at) / (user, occurred_at) index without impressions, newest first
        "SELECT e.product_id, e.type, CAST(FLOOR(EXTRACT(EPOCH FROM e.occurred_at)) AS BIGINT) AS ts, e.device "
        f"FROM events_event e WHERE {who} AND e.type <> '{EventType.IMPRESSION.value}' "  # nosec B608  # fixed text
        "AND e.id > $2 ORDER BY e.occurred_at DESC LIMIT $3"
    )


#: The visitor read's statements, prepared once per database connection (``PREPARE`` lasts as long as the
#: session): planning each read took longer than running it (0.1 ms against 0.02 on a warm connection, more
#: after a pause), and the plan does not change from one visitor to the next.
PREPARED = {
    "shop_recs_cart": f"(uuid) AS {_CART_SQL.format(vid='$1')}",
    "shop_recs_fresh_visitor": f"(uuid, bigint, int) AS {_fresh_sql('e.visitor_id = $1')}",
    "shop_recs_fresh_user": f"(int, bigint, int) AS {_fresh_sql('e.user_id = $1')}",
}
_prepared_on: weakref.WeakSet = weakref.WeakSet()  # the psycopg connections that hold them


def statements_prepare(cur, *, timeout_ms: int = 0) -> None:
    """Prepare the visitor read's statements on ``cur``'s connection, unless this process already did.

    Once per connection: it asks which of them the session has (``pg_prepared_statements``) and prepares the
    others, so a session that has some already (``PREPARE`` outlives a rolled-back transaction) is completed
    rather than refused. Preparing reads the tables' definitions, so behind a lock on them (a migration, a
    ``VACUUM FULL``) it waits as the read itself would: at most ``timeout_ms`` (0: no limit), then it raises
    and the read falls back. Inside a transaction it runs under a savepoint, so a failure leaves the caller's
    transaction usable.
    """
    raw = connection.connection
    if raw in _prepared_on:
        return
    nested = connection.in_atomic_block
    with transaction.atomic() if nested else nullcontext():
        cur.execute("SELECT name FROM pg_prepared_statements WHERE name = ANY(%s)", [list(PREPARED)])
        have = {row[0] for row in cur.fetchall()}
        missing = [f"PREPARE {name} {body}" for name, body in PREPARED.items() if name not in have]
        if missing:
            if timeout_ms > 0:  # one message: one implicit transaction, which the timeout ends with
                missing.insert(0, f"SET LOCAL statement_timeout = {int(timeout_ms)}")
                if nested:
                    missing.append("SET LOCAL statement_timeout = DEFAULT")
            cur.execute("; ".join(missing))
    _prepared_on.add(raw)


def _reads_sql(*, model: ServingModel, visitor_id: uuid.UUID, user_id: int | None, cart: bool) -> list[str]:
    """The statements of the visitor read: the cart (when wanted) and the newest events since the snapshot.

    The events are the newest RECS_FRESH_EVENTS that are not impressions: impressions are exposure, not
    interest (no model's history holds them), and a page records a few dozen beside its one view. They are
    read through the partial indexes that leave impressions out (``event_visitor_interest_idx``,
    ``event_user_interest_idx``), so the walk is as long as what it returns, however many impressions lie
    between a visitor's views; a visitor with fewer interests since the snapshot walks on through its older
    ones (its own interests, never the log's).

    They run the statements of :data:`PREPARED` (:func:`statements_prepare` first), and every value is typed here
    (ints, a UUID's hex digits), so they can travel together in one simple-protocol message (which takes no
    bind parameters): one round trip instead of one per statement.
    """
    vid = uuid.UUID(str(visitor_id)).hex
    out = []
    if cart:
        out.append(f"EXECUTE shop_recs_cart('{vid}')")
    since, limit = int(model.max_event_id), int(settings.RECS_FRESH_EVENTS)
    if user_id is not None:
        out.append(f"EXECUTE shop_recs_fresh_user({int(user_id)}, {since}, {limit})")
    else:
        out.append(f"EXECUTE shop_recs_fresh_visitor('{vid}', {since}, {limit})")
    return out


def _visitor_read(*, model: ServingModel, visitor_id: uuid.UUID, user_id: int | None, reads: _Reads) -> None:
    """The visitor's cart (unless the caller has it) and newest events since the snapshot, into ``reads``.

    On PostgreSQL: one round trip, no explicit transaction: ``SET LOCAL statement_timeout`` and the prepared
    SELECTs go as one message, which PostgreSQL runs as one implicit transaction (the timeout ends with it).
    Inside a caller's transaction the same message runs under a savepoint, and the timeout is given back.
    Raises :class:`_Unserved` when the database is slow or failing.
    """
    want_cart = reads.cart is None
    try:
        if connection.vendor != "postgresql":
            if want_cart:
                reads.cart = cart_product_ids(visitor_id=visitor_id)
            # impressions are exposure, not interest (no model's history holds them); see _reads_sql
            qs = Event.objects.filter(id__gt=model.max_event_id).exclude(type=EventType.IMPRESSION)
            qs = qs.filter(user_id=user_id) if user_id is not None else qs.filter(visitor_id=visitor_id)
            qs = qs.order_by("-occurred_at").values_list(
                "product_id", "type", keys.epoch_seconds("occurred_at"), "device"
            )
            reads.rows = list(qs[: settings.RECS_FRESH_EVENTS])
            return
        statements = _reads_sql(model=model, visitor_id=visitor_id, user_id=user_id, cart=want_cart)
        timeout = int(settings.RECS_DB_TIMEOUT_MS)
        nested = connection.in_atomic_block
        if timeout > 0:
            statements.insert(0, f"SET LOCAL statement_timeout = {timeout}")
            if nested:  # SET LOCAL lasts until the outer transaction ends: give it its timeout back
                statements.append("SET LOCAL statement_timeout = DEFAULT")

        def read() -> None:
            with transaction.atomic() if nested else nullcontext(), connection.cursor() as cur:
                statements_prepare(cur, timeout_ms=timeout)
                cur.execute("; ".join(statements))  # nosec B608: typed values only (see _reads_sql)
                if timeout > 0:
                    cur.nextset()
                if want_cart:
                    reads.cart = [r[0] for r in cur.fetchall()]
                    cur.nextset()
                reads.rows = cur.fetchall()

        def run() -> None:
            try:
                read()
            except ProgrammingError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != UNKNOWN_PREPARED_STATEMENT:
                    raise
                _prepared_on.discard(connection.connection)  # deallocated behind this process's back (the
                read()  # failed message changed nothing): prepared again, then read

        checked_by_use(run)
    except DatabaseError as exc:
        raise _Unserved("db_timeout" if "timeout" in str(exc).lower() else "db_error") from exc


def _fresh_interactions(*, rows: list[tuple], visitor_id: uuid.UUID, user_id: int | None):
    """The fresh event rows (newest first) as plain recommender data, oldest first."""
    from recommender.data import Interactions

    rows = rows[::-1]
    n = len(rows)
    user = keys.user_key(visitor_id=visitor_id, user_id=user_id)
    return Interactions(  # str arrays, as the recommender keeps them (object arrays would be converted)
        user_id=np.full(n, user),  # dtype from the value (dtype=str would truncate to one character)
        item_id=np.array([str(r[0]) for r in rows], dtype=str),
        event_type=np.array([r[1] for r in rows], dtype=str),
        timestamp=np.array([r[2] for r in rows], dtype=np.int64),
        placement=None,
        position=None,
        device=np.array([r[3] or "" for r in rows], dtype=str),
    )


def _snapshot_history(pipe, user: str) -> bool:
    """Whether the snapshot holds events of ``user``: stage 1's users are those of the training log, which
    may be older than the snapshot (a visitor seen since the model was trained has a history to rank on)."""
    index = getattr(getattr(pipe, "features", None), "index", None)
    if index is None:
        return False
    start, end = index.user_slice(user, int(time.time()) + 1)
    return end > start


def _on_scoring_thread(recommend: Callable[[], T], *, budget_ns: int) -> T:
    """``recommend()`` on this process's scoring threads, given up once ``budget_ns`` has passed (a job still
    queued is cancelled; one running stops at its next stage once the deadline ``recommend`` was given has
    passed, so an abandoned request does not go on to run the model)."""
    from recommender.pipeline import DeadlineExceeded  # torch loads with the model, not with this module

    pool, slots = _executor()
    if not slots.acquire(blocking=False):
        raise _Unserved("busy")

    def run():
        try:
            return recommend()
        finally:
            slots.release()

    future = pool.submit(run)
    try:
        return future.result(timeout=budget_ns / 1e9)
    except FutureTimeout:
        if future.cancel():  # still queued: it will never run, so its ``finally`` will not give the slot back
            slots.release()
        raise _Unserved("over_budget") from None
    except DeadlineExceeded:
        raise _Unserved("over_budget") from None
    except Exception as exc:
        raise _Unserved("scorer_error") from exc


def _live(
    *,
    model: ServingModel,
    arm: str,
    visitor_id: uuid.UUID,
    user_id: int | None,
    k: int,
    exclude: set[int],
    product_id: int | None,
    device: str,
    t_start: int,
    timings: dict[str, float],
    reads: _Reads,
) -> tuple[list[int], list[float | None]]:
    t0 = time.perf_counter_ns()
    _visitor_read(model=model, visitor_id=visitor_id, user_id=user_id, reads=reads)
    timings["db"] = timings.get("db", 0.0) + _ms(time.perf_counter_ns() - t0)
    rows = reads.rows
    exclude = exclude | set(reads.cart or ()) | {pid for pid, kind, _, _ in rows if kind == EventType.PURCHASE}
    pipe = model.pipeline
    user = keys.user_key(visitor_id=visitor_id, user_id=user_id)
    if not rows and product_id is None and user not in pipe.user_index and not _snapshot_history(pipe, user):
        raise _Unserved("no_activity")  # nothing personal to rank on: a popular list says as much
    fresh = _fresh_interactions(rows=rows, visitor_id=visitor_id, user_id=user_id)
    deadline_ns = t_start + int(settings.RECS_LATENCY_BUDGET_MS * 1e6)
    budget_ns = deadline_ns - time.perf_counter_ns()
    if budget_ns <= 0:
        raise _Unserved("over_budget")

    def recommend(**deadline):
        return pipe.recommend(
            user,
            now=int(time.time()) + 1,  # events of this very second count (the pipeline takes those before now)
            k=k,
            n_candidates=settings.RECS_LIVE_CANDIDATES,
            exclude_item_ids=[str(i) for i in exclude],
            session_item_ids=[str(product_id)] if product_id is not None else (),
            device_name=device,
            fresh_events=fresh,
            use_model=arm == "dlrm",
            **deadline,
        )

    if settings.RECS_SERVING_THREADS == 0:
        from recommender.pipeline import DeadlineExceeded  # torch loads with the model, not with this module

        # on the request's own thread: no hand-over to a scoring thread and back (each one a wait for the
        # interpreter while another thread of the process computes); the budget is checked between stages
        try:
            rec = recommend(deadline_ns=deadline_ns)
        except DeadlineExceeded:
            raise _Unserved("over_budget") from None
        except Exception as exc:
            raise _Unserved("scorer_error") from exc
    else:
        rec = _on_scoring_thread(lambda: recommend(deadline_ns=deadline_ns), budget_ns=budget_ns)
    t = rec.timings
    timings.update(retrieve=_ms(t.retrieve_ns), features=_ms(t.features_ns), rank=_ms(t.rank_ns), rules=_ms(t.rules_ns))
    ids = list(map(int, np.asarray(rec.item_ids).tolist()))
    # Python floats first (one C call): np.isnan and float() on each numpy scalar cost 10x as much
    scores = [None if s != s else round(s, 6) for s in np.asarray(rec.scores, dtype=np.float64).tolist()]
    return ids, scores


_batch: tuple[float, bool, str | None] | None = None  # (monotonic expiry, a score set serves, its model version)


def _batch_serving() -> tuple[bool, str | None]:
    """Whether a batch score set serves, and its model version: read at most once per RECS_SERVING_POLL_S per
    process (the pointer flips once per batch score), so a fallback does not query for lists that do not exist."""
    global _batch
    held = _batch
    now = time.monotonic()
    if held is None or held[0] <= now:
        row = (
            ServingPointer.objects.filter(id=1).values_list("score_set_id", "score_set__model_version__version").first()
        )
        serves = row is not None and row[0] is not None
        held = _batch = (now + settings.RECS_SERVING_POLL_S, serves, row[1] if serves else None)
    return held[1], held[2]


def batch_serving_forget() -> None:
    """Drop this process's view of the serving score set (tests; processes re-read it within the poll)."""
    global _batch
    _batch = None


def _no_model_reason(arm: str) -> str:
    """Why the arm's ranking has nothing to rank with: no active version (``no_model``), the active one
    cannot be loaded (``model_unavailable``), or the loader has not published it yet (``model_loading``);
    for the heuristic arm, no snapshot to fit stage 1 on (``no_snapshot``) or stage 1 not fitted yet."""
    error = serving_status().error
    if arm == "heuristic":
        stage1 = serving_stage1_error()
        if stage1 == "no snapshot":
            return "no_snapshot"
        return "stage1_unavailable" if "unavailable" in stage1 else "stage1_loading"
    if error == "no active model version":
        return "no_model"
    return "model_unavailable" if "unavailable" in error else "model_loading"


def _without(ids: Iterable[int], exclude: set[int], k: int) -> list[int]:
    out = [i for i in ids if i not in exclude]
    return out[:k]


def recommendations_serve(
    *,
    visitor_id: uuid.UUID,
    user_id: int | None = None,
    placement: str,
    k: int,
    exclude_ids: Sequence[int] = (),
    product_id: int | None = None,
    device: str = "",
    cart_ids: Iterable[int] | None = None,
    arm_override: str | None = None,
) -> Served:
    """The list for one visitor and placement (see the module docstring). Never raises for a serving
    fault: the next source answers and ``reason`` says why. ``cart_ids``: the cart when the caller has
    read it already (else it is read here). ``arm_override``: what another arm would show this visitor (a
    staff preview: served, but not counted in the serving figures)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}")
    serving_start()  # the loader thread, once per process; never waits for the model
    t_start = time.perf_counter_ns()
    timings: dict[str, float] = {}
    assignment = assignment_for(visitor_id=visitor_id)
    arm = assignment.arm if assignment.arm in ARMS else DEFAULT_ARM
    if arm_override is not None:
        if arm_override not in ARMS:
            raise ValueError(f"unknown arm {arm_override!r}")
        arm = arm_override
    t = time.perf_counter_ns()
    timings["assign"] = _ms(t - t_start)
    # what sold out after its list was ranked is left out (a read every SOLD_OUT_TTL_S: database time); each
    # source ranks a few more to fill k without it
    sold_out, want = sold_out_ids(), k
    k += SOLD_OUT_SLACK
    timings["db"] = _ms(time.perf_counter_ns() - t)
    exclude = set(exclude_ids)
    if product_id is not None:
        exclude.add(product_id)
    reads = _Reads(cart=None if cart_ids is None else list(cart_ids))
    model = serving_model()
    version = None
    ids: list[int] = []
    scores: list[float | None] = []
    source, reason = POPULARITY, ""
    if placement != TRENDING and arm != "popularity":
        try:
            if model is None and arm == "heuristic":
                model = serving_stage1()
            if model is None:
                raise _Unserved(_no_model_reason(arm))
            ids, scores = _live(
                model=model,
                arm=arm,
                visitor_id=visitor_id,
                user_id=user_id,
                k=k,
                exclude=exclude,
                product_id=product_id,
                device=device,
                t_start=t_start,
                timings=timings,
                reads=reads,
            )
            source, version = LIVE, model.version if arm == "dlrm" else None
        except _Unserved as e:
            reason = e.reason
    if reads.cart is None:  # the popular lists, or the live read did not get that far
        t = time.perf_counter_ns()
        try:
            reads.cart = cart_product_ids(visitor_id=visitor_id)
        except DatabaseError:
            reads.cart, reason = [], reason or "db_error"
        timings["db"] = timings.get("db", 0.0) + _ms(time.perf_counter_ns() - t)
    exclude |= set(reads.cart)
    if placement == TRENDING:
        t = time.perf_counter_ns()
        ids = _without(trending_ids(RailContext()), exclude, k)
        timings["popularity"] = _ms(time.perf_counter_ns() - t)
    elif arm != "popularity":
        # An anonymous visitor with nothing to rank on has no batch list either (batch lists are scored
        # for visitors with events, and every event after the snapshot is a fresh one): skip that query.
        if source != LIVE and arm == "dlrm" and not (reason == "no_activity" and user_id is None):
            t = time.perf_counter_ns()
            try:
                serves, batch_version = _batch_serving()
                batch = recommendations_for_visitor(visitor_id=visitor_id, limit=k + len(exclude)) if serves else []
            except DatabaseError:
                batch, batch_version, reason = [], None, reason or "db_error"
            timings["batch"] = _ms(time.perf_counter_ns() - t)
            ids = _without(batch, exclude, k)
            if ids:
                source, scores = BATCH, [None] * len(ids)
                version = batch_version
        if source not in (LIVE, BATCH):
            source = FALLBACK
    if source in (POPULARITY, FALLBACK) and placement != TRENDING:
        t = time.perf_counter_ns()
        ids = _without(popular_ids(RailContext(), at_least=k + len(exclude)), exclude, k)
        scores = [None] * len(ids)
        timings["popularity"] = _ms(time.perf_counter_ns() - t)
    if not scores or len(scores) != len(ids):
        scores = [None] * len(ids)
    if sold_out and not sold_out.isdisjoint(ids):
        keep = [n for n, i in enumerate(ids) if i not in sold_out]
        ids, scores = [ids[n] for n in keep], [scores[n] for n in keep]
    ids, scores = ids[:want], scores[:want]
    timings["total"] = _ms(time.perf_counter_ns() - t_start)
    served = Served(
        placement=placement,
        product_ids=ids,
        scores=scores,
        arm=arm,
        experiment=assignment.experiment,
        model_version=version,
        source=source,
        reason=reason,
        timings_ms=timings,
    )
    if arm_override is None:
        serving_record(
            placement=placement,
            arm=arm,
            source=source,
            reason=reason,
            model_version=version,
            timings_ms=timings,
            # the experiment that chose the arm; none when the default arm served (no experiment ran)
            experiment_id=assignment.experiment_id if assignment.arm in ARMS else None,
        )
    return served

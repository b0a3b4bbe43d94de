"""Importing a real retail purchase log (Ta Feng format) into the shop's tables.

The format is parsed by the shared, Django-free ``recommender.retail_log`` (one parser for the
shop and the recommender); this module only maps parsed rows to rows of our tables:

======================  ===================================================================
log                     shop
======================  ===================================================================
PRODUCT_SUBCLASS        Category "Ta Feng" > "Department 10" > "Group 1004" > "Sub-class 100407"
PRODUCT_ID              Product ``tafeng:<PRODUCT_ID>`` (sku and external_id), name "Item <id>",
                        price = unit price on the latest day it was sold, stock = DEFAULT_STOCK
CUSTOMER_ID             Visitor ``tafeng:<CUSTOMER_ID>``, attributes {age_group, pin_code}
(customer, day)         Order ``tafeng:<CUSTOMER_ID>:<YYYY-MM-DD>``, placed that day at noon
                        (shop time zone); total = sum of its lines
each line               OrderLine ``tafeng:line:<line>`` and a purchase Event ``tafeng:<line>``
                        (source "import", placement "import", same day and quantity)
======================  ===================================================================

How it stays fast and safe on 800k lines:

* **Validate first.** A first pass parses the whole file (~55k rows/s) and stops at the first
  malformed line, so a bad file writes nothing at all.
* **Streaming, constant memory.** The second pass reads chunks of ``chunk_size`` rows; per chunk
  it looks up the ids it needs with ``external_id IN (...)`` queries and writes in one
  transaction: ``bulk_create(ignore_conflicts=True)`` for categories, products, customers and
  orders; for the two tables that take a row per line (order lines, events) on PostgreSQL a COPY
  into a staging table then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (same semantics,
  ~10x less Python per row; ``bulk_create`` on other databases). Only small maps persist across
  chunks (product, customer and category ids, the latest price per product): they grow with the
  catalog and the customer base, not with the number of lines.
* **Idempotent.** Every row has a unique external id / idempotency key; rows already present are
  skipped (and ON CONFLICT DO NOTHING covers a concurrent importer). Order totals are recomputed
  from their lines in the database, so a re-run, or a basket split across chunks, never
  double-counts. A second run of the same file adds nothing. Prices are set once at the end.
* **Cheap commits.** On PostgreSQL each chunk commits with ``synchronous_commit off``: a crash may
  lose the last chunks but never corrupts them, and re-running restores them (idempotent).

If the file changes between the two passes and the import pass meets a malformed line, the
chunk holding it is rolled back; earlier chunks stay (re-running after fixing the file completes
the import, idempotently).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.db import connection, transaction
from django.db.models import DecimalField, ExpressionWrapper, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from recommender.retail_log import RetailLogError, RetailLogRow, iter_retail_log
from shop.events.models import Event, EventSource, EventType, Visitor
from shop.orders.models import Order, OrderLine

from .models import Category, Product

__all__ = [
    "DEFAULT_STOCK",
    "ImportStats",
    "RetailLogError",
    "retail_log_import",
    "retail_log_validate",
]

PREFIX = "tafeng"
DEFAULT_STOCK = 100  # the log has no stock levels; enough that imported items can be bought
IMPORT_PLACEMENT = "import"
# Deterministic visitor ids: the same customer gets the same uuid in every database.
VISITOR_NAMESPACE = uuid.UUID("6f1c2a8e-7c1e-4d0a-9a53-7d3f2f5b8a11")

Progress = Callable[[int], None]
MAX_CUSTOMER_ID = 20  # order number "TF<YYYYMMDD>-<customer>" is at most 32 characters
MAX_CODE = 40  # "tafeng:subclass:<code>" fits the 64-character external ids


@dataclass
class ImportStats:
    rows: int = 0
    categories_created: int = 0
    products_created: int = 0
    customers_created: int = 0
    orders_created: int = 0
    lines_created: int = 0
    events_created: int = 0
    prices_updated: int = 0
    validate_seconds: float = 0.0
    import_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.validate_seconds + self.import_seconds

    @property
    def rows_per_second(self) -> float:
        """Rows per second over the whole command (validation pass included)."""
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def nothing_added(self) -> bool:
        return not (
            self.categories_created
            or self.products_created
            or self.customers_created
            or self.orders_created
            or self.lines_created
            or self.events_created
            or self.prices_updated
        )


def _chunks(rows: Iterable[RetailLogRow], size: int) -> Iterator[list[RetailLogRow]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def retail_log_validate(*, path: str | Path, limit: int | None = None, progress: Progress | None = None) -> int:
    """Parse the file (or its first ``limit`` rows) without writing; returns the row count.

    Raises :class:`RetailLogError` naming the first malformed line.
    """
    count = 0
    step = 0
    for row in iter_retail_log(path, limit=limit):
        # codes end up in our unique external ids and order numbers: refuse what would not fit
        if len(row.customer_id) > MAX_CUSTOMER_ID or len(row.product_id) > MAX_CODE or len(row.subclass) > MAX_CODE:
            raise RetailLogError(
                f"CUSTOMER_ID (max {MAX_CUSTOMER_ID} characters), PRODUCT_ID or PRODUCT_SUBCLASS "
                f"(max {MAX_CODE}) is too long",
                line=row.line,
                path=str(path),
            )
        count += 1
        step += 1
        if step == 10_000:
            if progress is not None:
                progress(step)
            step = 0
    if progress is not None and step:
        progress(step)
    return count


# ---------------------------------------------------------------------------------------------
# External ids
# ---------------------------------------------------------------------------------------------
def product_external_id(code: str) -> str:
    return f"{PREFIX}:{code}"


def visitor_external_id(code: str) -> str:
    return f"{PREFIX}:{code}"


def order_external_id(customer: str, day: dt.date) -> str:
    return f"{PREFIX}:{customer}:{day.isoformat()}"


def order_number(customer: str, day: dt.date) -> str:
    return f"TF{day:%Y%m%d}-{customer}"


def line_external_id(line: int) -> str:
    return f"{PREFIX}:line:{line}"


def event_key(line: int) -> str:
    return f"{PREFIX}:{line}"


def _category_levels(subclass: str) -> list[tuple[str, str, str, str]]:
    """(external_id, name, slug, description) from the root down to the sub-class."""
    levels = [(f"{PREFIX}:root", "Ta Feng", "ta-feng", "Products from the Ta Feng grocery purchase log.")]
    for width, label, kind in ((2, "Department", "dept"), (4, "Group", "group")):
        if len(subclass) > width:
            code = subclass[:width]
            levels.append(
                (
                    f"{PREFIX}:{kind}:{code}",
                    f"{label} {code}",
                    f"ta-feng-{kind}-{code}",
                    f"Ta Feng {label.lower()} {code}.",
                )
            )
    levels.append(
        (
            f"{PREFIX}:subclass:{subclass}",
            f"Sub-class {subclass}",
            f"ta-feng-subclass-{subclass}",
            f"Ta Feng product sub-class {subclass}.",
        )
    )
    return levels


# ---------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------
@dataclass
class _State:
    """What persists across chunks: maps bounded by the number of categories, products, customers."""

    category_ids: dict[str, int] = field(default_factory=dict)  # by external id
    subclass_category: dict[str, int] = field(default_factory=dict)  # sub-class code -> category pk
    products: dict[str, list] = field(default_factory=dict)  # product code -> [pk, price in the DB]
    visitors: dict[str, uuid.UUID] = field(default_factory=dict)  # customer code -> visitor pk
    latest_price: dict[str, tuple[dt.date, int, Decimal]] = field(default_factory=dict)  # code -> (day, line, price)
    noon: dict[dt.date, dt.datetime] = field(default_factory=dict)

    def noon_of(self, day: dt.date) -> dt.datetime:
        when = self.noon.get(day)
        if when is None:
            when = self.noon[day] = dt.datetime.combine(day, dt.time(12), tzinfo=timezone.get_default_timezone())
        return when


class _Importer:
    def __init__(self, *, batch_size: int):
        self.batch_size = batch_size
        self.now = timezone.now()  # received_at of the imported events
        self.state = _State()
        self.stats = ImportStats()

    # --- categories -------------------------------------------------------------------------
    def _categories(self, subclasses: set[str]) -> None:
        st = self.state
        new = [s for s in subclasses if s not in st.subclass_category]
        if not new:
            return
        levels = {s: _category_levels(s) for s in new}
        wanted = {ext for lv in levels.values() for ext, *_ in lv if ext not in st.category_ids}
        if wanted:
            st.category_ids.update(Category.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
        for depth in range(max(len(lv) for lv in levels.values())):
            todo: dict[str, Category] = {}
            for lv in levels.values():
                if depth >= len(lv):
                    continue
                ext, name, slug, description = lv[depth]
                if ext in st.category_ids or ext in todo:
                    continue
                parent = st.category_ids[lv[depth - 1][0]] if depth else None
                todo[ext] = Category(
                    name=name, slug=slug, parent_id=parent, depth=depth, external_id=ext, description=description
                )
            if not todo:
                continue
            Category.objects.bulk_create(list(todo.values()), ignore_conflicts=True)
            found = dict(Category.objects.filter(external_id__in=list(todo)).values_list("external_id", "pk"))
            if len(found) != len(todo):
                clash = sorted(set(todo) - set(found))
                raise RetailLogError(f"category slug already taken by another category: {clash[0]}")
            st.category_ids.update(found)
            self.stats.categories_created += len(todo)
        for s, lv in levels.items():
            st.subclass_category[s] = st.category_ids[lv[-1][0]]

    # --- products ---------------------------------------------------------------------------
    def _products(self, chunk: list[RetailLogRow]) -> None:
        st = self.state
        first: dict[str, RetailLogRow] = {}
        for row in chunk:
            code = row.product_id
            latest = st.latest_price.get(code)
            if latest is None or (row.date, row.line) >= latest[:2]:
                st.latest_price[code] = (row.date, row.line, row.unit_price)
            if code not in st.products and code not in first:
                first[code] = row
        if not first:
            return
        for ext, pk, price in Product.objects.filter(
            external_id__in=[product_external_id(c) for c in first]
        ).values_list("external_id", "pk", "price"):
            st.products[ext.split(":", 1)[1]] = [pk, price]
        new = [c for c in first if c not in st.products]
        if not new:
            return
        objs = []
        for code in new:
            row = first[code]
            ext = product_external_id(code)
            price = st.latest_price[code][2]
            objs.append(
                Product(
                    sku=ext,
                    external_id=ext,
                    name=f"Item {code}",
                    slug=f"item-{code}",
                    description=f"Ta Feng product {code} (sub-class {row.subclass}).",
                    category_id=st.subclass_category[row.subclass],
                    price=price,
                    stock=DEFAULT_STOCK,
                    image_seed=zlib.crc32(code.encode()) & 0x7FFFFFFF,
                    created_at=st.noon_of(row.date),
                )
            )
        Product.objects.bulk_create(objs, batch_size=self.batch_size, ignore_conflicts=True)
        for ext, pk, price in Product.objects.filter(external_id__in=[product_external_id(c) for c in new]).values_list(
            "external_id", "pk", "price"
        ):
            st.products[ext.split(":", 1)[1]] = [pk, price]
        self.stats.products_created += len(new)

    # --- customers --------------------------------------------------------------------------
    def _visitors(self, chunk: list[RetailLogRow]) -> None:
        st = self.state
        first: dict[str, RetailLogRow] = {}
        for row in chunk:
            if row.customer_id not in st.visitors and row.customer_id not in first:
                first[row.customer_id] = row
        if not first:
            return
        exts = [visitor_external_id(c) for c in first]
        for ext, pk in Visitor.objects.filter(external_id__in=exts).values_list("external_id", "pk"):
            st.visitors[ext.split(":", 1)[1]] = pk
        new = [c for c in first if c not in st.visitors]
        if not new:
            return
        Visitor.objects.bulk_create(
            [
                Visitor(
                    id=uuid.uuid5(VISITOR_NAMESPACE, visitor_external_id(c)),
                    external_id=visitor_external_id(c),
                    attributes={"age_group": first[c].age_group, "pin_code": first[c].pin_code},
                )
                for c in new
            ],
            batch_size=self.batch_size,
            ignore_conflicts=True,
        )
        for ext, pk in Visitor.objects.filter(external_id__in=[visitor_external_id(c) for c in new]).values_list(
            "external_id", "pk"
        ):
            st.visitors[ext.split(":", 1)[1]] = pk
        self.stats.customers_created += len(new)

    # --- orders -----------------------------------------------------------------------------
    def _orders(self, chunk: list[RetailLogRow]) -> dict[tuple[str, dt.date], int]:
        """Order pk per (customer, day) basket in this chunk (baskets may span chunks)."""
        st = self.state
        baskets = {(row.customer_id, row.date) for row in chunk}
        ext_of = {b: order_external_id(*b) for b in baskets}
        found = dict(Order.objects.filter(external_id__in=list(ext_of.values())).values_list("external_id", "pk"))
        new = [b for b in baskets if ext_of[b] not in found]
        if new:
            Order.objects.bulk_create(
                [
                    Order(
                        number=order_number(c, d),
                        visitor_id=st.visitors[c],
                        external_id=ext_of[(c, d)],
                        total=Decimal("0"),
                        placed_at=st.noon_of(d),
                    )
                    for c, d in new
                ],
                batch_size=self.batch_size,
                ignore_conflicts=True,
            )
            found.update(
                Order.objects.filter(external_id__in=[ext_of[b] for b in new]).values_list("external_id", "pk")
            )
            missing = [ext_of[b] for b in new if ext_of[b] not in found]
            if missing:
                raise RetailLogError(f"order number {order_number(*new[0])} is already used by another order")
            self.stats.orders_created += len(new)
        return {b: found[ext_of[b]] for b in baskets}

    # --- lines, events, totals --------------------------------------------------------------
    def _lines_and_events(self, chunk: list[RetailLogRow], order_ids: dict[tuple[str, dt.date], int]) -> None:
        st = self.state
        line_exts = [line_external_id(r.line) for r in chunk]
        have_lines = set(OrderLine.objects.filter(external_id__in=line_exts).values_list("external_id", flat=True))
        keys = [event_key(r.line) for r in chunk]
        have_events = set(Event.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))

        # Plain tuples, not model instances: these two tables take one row per log line.
        lines, events, touched = [], [], set()
        purchase, placement, source, now = str(EventType.PURCHASE), IMPORT_PLACEMENT, str(EventSource.IMPORT), self.now
        for row, line_ext, key in zip(chunk, line_exts, keys, strict=True):
            order_id = order_ids[(row.customer_id, row.date)]
            product_id = st.products[row.product_id][0]
            if line_ext not in have_lines:
                lines.append((order_id, product_id, row.quantity, row.unit_price, line_ext))
                touched.add(order_id)
            if key not in have_events:
                events.append(
                    (
                        key,
                        st.visitors[row.customer_id],
                        product_id,
                        purchase,
                        placement,
                        row.quantity,
                        order_id,
                        source,
                        "",
                        st.noon_of(row.date),
                        now,
                    )
                )
        if lines:
            _insert_ignoring_conflicts(OrderLine, LINE_COLUMNS, lines, batch_size=self.batch_size)
            self.stats.lines_created += len(lines)
        if events:
            _insert_ignoring_conflicts(Event, EVENT_COLUMNS, events, batch_size=self.batch_size)
            self.stats.events_created += len(events)
        if touched:
            _order_totals_recompute(order_ids=touched)

    def import_chunk(self, chunk: list[RetailLogRow]) -> None:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Don't wait for the WAL flush at each chunk's commit. A crash can lose the last
                # chunks (never corrupt them); the import is idempotent, so re-running restores them.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            self._categories({r.subclass for r in chunk})
            self._products(chunk)
            self._visitors(chunk)
            order_ids = self._orders(chunk)
            self._lines_and_events(chunk, order_ids)
        self.stats.rows += len(chunk)

    def prices_finish(self) -> None:
        """Set each product's price to its unit price on the latest day it sold (one pass at the end)."""
        st = self.state
        changed = [
            Product(pk=st.products[code][0], price=price)
            for code, (_, _, price) in st.latest_price.items()
            if st.products[code][1] != price
        ]
        with transaction.atomic():
            for start in range(0, len(changed), self.batch_size):
                Product.objects.bulk_update(changed[start : start + self.batch_size], ["price"])
        for code, (_, _, price) in st.latest_price.items():
            st.products[code][1] = price
        self.stats.prices_updated += len(changed)


LINE_COLUMNS = ("order_id", "product_id", "quantity", "unit_price", "external_id")
EVENT_COLUMNS = (
    "idempotency_key",
    "visitor_id",
    "product_id",
    "type",
    "placement",
    "quantity",
    "order_id",
    "source",
    "device",
    "occurred_at",
    "received_at",
)


def _insert_ignoring_conflicts(model, columns: tuple[str, ...], rows: list[tuple], *, batch_size: int) -> None:
    """INSERT ... ON CONFLICT DO NOTHING of ``rows`` (tuples in ``columns`` order; attnames).

    On PostgreSQL the rows are streamed with COPY into a session-local staging table and moved
    over in one INSERT ... SELECT: about ten times faster than ``bulk_create`` (no model
    instances, no per-value Python adaptation), with the same conflict semantics. Elsewhere it is
    ``bulk_create(ignore_conflicts=True)``.
    """
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            [model(**dict(zip(columns, row, strict=True))) for row in rows],
            batch_size=batch_size,
            ignore_conflicts=True,
        )
        return
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    stage = qn(f"import_stage_{model._meta.db_table}")
    cols = ", ".join(qn(model._meta.get_field(c).column) for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {table} WITH NO DATA")  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters
        cursor.execute(f"TRUNCATE {stage}")
        with cursor.cursor.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")  # nosec B608  # identifiers from model meta through quote_name; values are bound parameters


def _order_totals_recompute(*, order_ids: Iterable[int]) -> None:
    """total = sum of the order's lines, computed by the database (so re-runs never double)."""
    line_total = ExpressionWrapper(
        F("unit_price") * F("quantity"), output_field=DecimalField(max_digits=12, decimal_places=2)
    )
    sums = (
        OrderLine.objects.filter(order=OuterRef("pk"))
        .order_by()
        .values("order")
        .annotate(s=Sum(line_total))
        .values("s")
    )
    Order.objects.filter(pk__in=list(order_ids)).update(
        total=Coalesce(Subquery(sums), Value(Decimal("0")), output_field=DecimalField(max_digits=12, decimal_places=2))
    )


def retail_log_import(
    *,
    path: str | Path,
    limit: int | None = None,
    chunk_size: int = 5000,
    batch_size: int = 2000,
    on_validated: Callable[[int], None] | None = None,
    validate_progress: Progress | None = None,
    progress: Progress | None = None,
) -> ImportStats:
    """Import a Ta Feng-format log (``.csv`` or ``.zip``); see the module docstring for the mapping.

    The whole file (or its first ``limit`` rows) is validated before anything is written: a
    malformed file raises :class:`RetailLogError` naming the line and leaves the database as it
    was. Then rows are imported in chunks of ``chunk_size``, one transaction per chunk, written
    with ``bulk_create`` in batches of ``batch_size``. Re-running adds nothing.

    ``on_validated(rows)`` is called between the passes; ``validate_progress(n)`` and
    ``progress(n)`` after each step of the respective pass, with the rows just done.
    """
    if chunk_size < 1 or batch_size < 1:
        raise ValueError("chunk_size and batch_size must be >= 1")
    started = time.perf_counter()
    rows = retail_log_validate(path=path, limit=limit, progress=validate_progress)
    validated = time.perf_counter()
    if on_validated is not None:
        on_validated(rows)

    importer = _Importer(batch_size=batch_size)
    for chunk in _chunks(iter_retail_log(path, limit=limit), chunk_size):
        importer.import_chunk(chunk)
        if progress is not None:
            progress(len(chunk))
    importer.prices_finish()
    stats = importer.stats
    stats.validate_seconds = validated - started
    stats.import_seconds = time.perf_counter() - validated
    return stats

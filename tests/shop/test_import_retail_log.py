"""``manage.py import_retail_log`` on the real Ta Feng log: right counts, idempotent, strict.

Expected figures are computed here straight from the CSV with the ``csv`` module, not with the
shared parser the importer uses, so a parser bug cannot hide behind itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import resource
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from shop.catalog.importer import retail_log_import
from shop.catalog.models import Category, Product
from shop.events.models import Event, EventSource, EventType, Visitor
from shop.orders.models import Order, OrderLine
from tests.shared_data import ta_feng_zip

REPO = Path(__file__).resolve().parents[2]
SLICE = 20_000
HEADER = "TRANSACTION_DT,CUSTOMER_ID,AGE_GROUP,PIN_CODE,PRODUCT_SUBCLASS,PRODUCT_ID,AMOUNT,ASSET,SALES_PRICE"


@dataclass
class Expected:
    rows: int = 0
    quantity: int = 0
    sales: Decimal = Decimal("0")
    customers: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (age, pin) first seen
    products: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)
    baskets: dict[tuple[str, dt.date], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    basket_quantity: dict[tuple[str, dt.date], int] = field(default_factory=lambda: defaultdict(int))
    latest: dict[str, tuple[dt.date, int, Decimal, int]] = field(
        default_factory=dict
    )  # product -> day, line, sales, qty


def expected_from_csv(path: Path, limit: int) -> Expected:
    exp = Expected()
    with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
        for n, rec in enumerate(reader):
            if n >= limit:
                break
            line = n + 2  # the header is line 1 and the file has no quoted newlines
            m, d, y = rec["TRANSACTION_DT"].split("/")
            day = dt.date(int(y), int(m), int(d))
            qty, sales = int(rec["AMOUNT"]), Decimal(rec["SALES_PRICE"])
            exp.rows += 1
            exp.quantity += qty
            exp.sales += sales
            exp.customers.setdefault(rec["CUSTOMER_ID"], (rec["AGE_GROUP"].strip(), rec["PIN_CODE"].strip()))
            exp.products.add(rec["PRODUCT_ID"])
            exp.subclasses.add(rec["PRODUCT_SUBCLASS"])
            exp.baskets[(rec["CUSTOMER_ID"], day)] += sales
            exp.basket_quantity[(rec["CUSTOMER_ID"], day)] += qty
            prev = exp.latest.get(rec["PRODUCT_ID"])
            if prev is None or (day, line) > prev[:2]:
                exp.latest[rec["PRODUCT_ID"]] = (day, line, sales, qty)
    return exp


@pytest.fixture(scope="module")
def real_log() -> Path:
    return ta_feng_zip()


@pytest.fixture(scope="module")
def expected_slice(real_log) -> Expected:
    return expected_from_csv(real_log, SLICE)


def _import(path, **options) -> str:
    out = StringIO()
    call_command("import_retail_log", str(path), stdout=out, verbosity=0, **options)
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {
        "categories": Category.objects.count(),
        "products": Product.objects.count(),
        "visitors": Visitor.objects.count(),
        "orders": Order.objects.count(),
        "lines": OrderLine.objects.count(),
        "events": Event.objects.count(),
        "total": Order.objects.aggregate(s=Sum("total"))["s"],
    }


@pytest.mark.django_db
def test_a_slice_of_the_real_log_imports_with_the_right_counts_and_a_second_run_adds_nothing(real_log, expected_slice):
    exp = expected_slice
    out = _import(real_log, limit=SLICE)
    assert f"Imported {SLICE:,} rows" in out
    assert "rows/s" in out and "peak memory" in out

    assert Product.objects.filter(external_id__startswith="tafeng:").count() == len(exp.products)
    assert Visitor.objects.filter(external_id__startswith="tafeng:").count() == len(exp.customers)
    assert Order.objects.filter(external_id__startswith="tafeng:").count() == len(exp.baskets)
    assert OrderLine.objects.count() == exp.rows
    purchases = Event.objects.filter(type=EventType.PURCHASE, source=EventSource.IMPORT, placement="import")
    assert purchases.count() == exp.rows
    assert purchases.aggregate(q=Sum("quantity"))["q"] == exp.quantity
    assert Category.objects.filter(external_id__startswith="tafeng:subclass:").count() == len(exp.subclasses)

    # the tree has depth: Ta Feng > Department 11 > Group 1104 > Sub-class 110411
    leaf = Category.objects.select_related("parent__parent__parent").get(external_id="tafeng:subclass:110411")
    assert leaf.depth == 3
    assert [leaf.parent.name, leaf.parent.parent.name, leaf.parent.parent.parent.name] == [
        "Group 1104",
        "Department 11",
        "Ta Feng",
    ]
    assert leaf.parent.parent.parent.parent_id is None

    # the first line of the file: customer 01104905 bought 2 x 4710199010372 on 2000-11-01
    product = Product.objects.get(external_id="tafeng:4710199010372")
    assert product.sku == "tafeng:4710199010372" and product.name == "Item 4710199010372"
    assert product.category.external_id == "tafeng:subclass:110411" and product.stock > 0
    visitor = Visitor.objects.get(external_id="tafeng:01104905")
    assert visitor.attributes == {"age_group": "45-49", "pin_code": "115"}
    order = Order.objects.get(external_id="tafeng:01104905:2000-11-01")
    assert order.visitor == visitor
    placed = timezone.localtime(order.placed_at, timezone.get_default_timezone())
    assert (placed.date(), placed.hour, placed.minute) == (dt.date(2000, 11, 1), 12, 0)
    event = Event.objects.get(idempotency_key="tafeng:2")
    assert (event.visitor_id, event.product_id, event.quantity, event.order_id) == (visitor.pk, product.pk, 2, order.pk)
    assert timezone.localtime(event.occurred_at, timezone.get_default_timezone()).date() == dt.date(2000, 11, 1)
    assert OrderLine.objects.get(external_id="tafeng:line:2").order == order

    # every customer's attributes as first seen
    attrs = {v.external_id[7:]: v.attributes for v in Visitor.objects.filter(external_id__startswith="tafeng:")}
    assert attrs == {c: {"age_group": a or None, "pin_code": p or None} for c, (a, p) in exp.customers.items()}

    # order totals: equal to their lines, and to the log's SALES_PRICE up to per-line rounding to cents
    totals = dict(Order.objects.values_list("external_id", "total"))
    line_sums = dict(
        OrderLine.objects.values("order__external_id")
        .annotate(s=Sum(F("unit_price") * F("quantity")))
        .values_list("order__external_id", "s")
    )
    assert totals == line_sums
    for (customer, day), sales in exp.baskets.items():
        tolerance = Decimal("0.005") * exp.basket_quantity[(customer, day)]
        assert abs(totals[f"tafeng:{customer}:{day.isoformat()}"] - sales) <= tolerance

    # product price = unit price on the latest day it sold
    prices = dict(Product.objects.filter(external_id__startswith="tafeng:").values_list("external_id", "price"))
    want = {f"tafeng:{p}": (sales / qty).quantize(Decimal("0.01")) for p, (_, _, sales, qty) in exp.latest.items()}
    assert prices == want

    # second run: nothing added, nothing changed
    before = _counts()
    out = _import(real_log, limit=SLICE)
    assert "Already imported" in out and "nothing added" in out
    assert _counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("copy_path", [True, False], ids=["postgresql-copy", "bulk-create"])
def test_baskets_split_across_chunks_and_runs_keep_correct_totals(real_log, copy_path, monkeypatch):
    if not copy_path:
        # what other databases (SQLite) get: plain bulk_create(ignore_conflicts=True)
        monkeypatch.setattr(connection, "vendor", "other")
    n = 3000
    exp = expected_from_csv(real_log, n)
    _import(real_log, limit=1200, chunk_size=250, batch_size=100)  # a first, partial run
    _import(real_log, limit=n, chunk_size=333, batch_size=70)  # then the rest, in other chunks
    assert OrderLine.objects.count() == Event.objects.count() == n
    assert Order.objects.count() == len(exp.baskets)
    totals = dict(Order.objects.values_list("external_id", "total"))
    line_sums = dict(
        OrderLine.objects.values("order__external_id")
        .annotate(s=Sum(F("unit_price") * F("quantity")))
        .values_list("order__external_id", "s")
    )
    assert totals == line_sums
    assert abs(sum(totals.values()) - exp.sales) <= Decimal("0.005") * exp.quantity


GOOD = [
    "11/1/2000,01104905,45-49,115,110411,4710199010372,2,24,30",
    "11/1/2000,00418683,45-49,115,120107,4710857472535,1,48,46",
    "11/2/2000,01057331,35-39,115,100407,4710043654103,2,142,166",
    "11/2/2000,01849332,45-49,Others,120108,4710126092129,1,32,38",
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad", "line", "why"),
    [
        ("11/31/2000,01104905,45-49,115,110411,4710199010372,2,24,30", 6, "TRANSACTION_DT"),
        ("2000-11-03,01104905,45-49,115,110411,4710199010372,2,24,30", 6, "TRANSACTION_DT"),
        ("11/3/2000,01104905,45-49,115,110411,4710199010372,2.5,24,30", 6, "AMOUNT"),
        ("11/3/2000,01104905,45-49,115,110411,4710199010372,two,24,30", 6, "AMOUNT"),
        ("11/3/2000,01104905,45-49,115,110411,4710199010372,2,24", 6, "columns"),
        ("11/3/2000,01104905,45-49,115,110411,4710199010372,2,24,30,7", 6, "columns"),
        ("11/3/2000,01104905,45-49,115,110411,4710199010372,1,24,-3", 6, "SALES_PRICE"),
        ("11/3/2000,01104905,45-49,115,110411," + "9" * 41 + ",1,24,30", 6, "too long"),
    ],
)
def test_a_malformed_file_is_rejected_naming_the_line_and_nothing_is_written(tmp_path, bad, line, why):
    path = tmp_path / "log.csv"
    # good rows first, spanning several chunks: validation-first means even those are not written
    path.write_text("\n".join([HEADER, *GOOD, bad, *GOOD]) + "\n", encoding="utf-8")
    with pytest.raises(CommandError) as info:
        _import(path, chunk_size=2)
    message = str(info.value)
    assert f"line {line}" in message and why in message and "nothing was imported" in message
    assert _counts() == {
        **dict.fromkeys(["categories", "products", "visitors", "orders", "lines", "events"], 0),
        "total": None,
    }


@pytest.mark.django_db
def test_a_missing_column_is_rejected_at_the_header(tmp_path):
    path = tmp_path / "log.csv"
    header = HEADER.replace(",SALES_PRICE", "")
    path.write_text("\n".join([header, *(g.rsplit(",", 1)[0] for g in GOOD)]) + "\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"line 1: .*SALES_PRICE"):
        _import(path)
    assert Product.objects.count() == 0


@pytest.mark.django_db
def test_a_small_zip_imports(tmp_path):
    path = tmp_path / "log.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("log.csv", "\n".join([HEADER, *GOOD]) + "\n")
    _import(path)
    assert Event.objects.count() == 4 and Visitor.objects.count() == 4 and Order.objects.count() == 4


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.django_db(transaction=True)
def test_the_whole_real_log_imports(real_log, capsys):
    """The whole file, committed chunk by chunk as in production; reports rows/s."""
    stats = retail_log_import(path=real_log)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    assert stats.rows == 817_741
    assert Event.objects.filter(type=EventType.PURCHASE, source=EventSource.IMPORT).count() == 817_741
    assert Visitor.objects.filter(external_id__startswith="tafeng:").count() == 32_266
    assert Product.objects.filter(external_id__startswith="tafeng:").count() == 23_812
    assert Order.objects.filter(external_id__startswith="tafeng:").count() == 119_578
    assert Category.objects.filter(external_id__startswith="tafeng:subclass:").count() == 2_012

    report = {
        "rows": stats.rows,
        "seconds": round(stats.seconds, 1),
        "validate_seconds": round(stats.validate_seconds, 1),
        "import_seconds": round(stats.import_seconds, 1),
        "rows_per_second": round(stats.rows_per_second),
        "peak_rss_mib_test_process": round(peak_mib),
        "products": stats.products_created,
        "customers": stats.customers_created,
        "orders": stats.orders_created,
        "events": stats.events_created,
        "database": "postgresql",
        "measured_at": timezone.now().isoformat(timespec="seconds"),
    }
    bench = REPO / "var" / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "import_retail_log.json").write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():
        print(
            f"\nimport_retail_log, whole Ta Feng file: {stats.rows:,} rows in {stats.seconds:.0f} s "
            f"= {stats.rows_per_second:,.0f} rows/s (validation {stats.validate_seconds:.0f} s), "
            f"peak RSS {peak_mib:.0f} MiB"
        )

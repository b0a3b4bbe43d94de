"""Parser for retail purchase logs in the Ta Feng format.

One parser serves both the shop's importer (``manage.py import_retail_log``) and the
recommender's data adapter, so the format is understood in exactly one place. It streams: rows
are yielded one at a time from a ``.csv`` or a ``.zip`` holding one CSV, in constant memory.

Columns (header required, any order, quotes optional, UTF-8 with or without BOM)::

    TRANSACTION_DT  m/d/YYYY (day resolution)
    CUSTOMER_ID     customer code (kept as text: leading zeros matter)
    AGE_GROUP       "<25", "25-29", ... ">65" or empty
    PIN_CODE        postal area or "Others"
    PRODUCT_SUBCLASS product sub-class code
    PRODUCT_ID      product code (EAN)
    AMOUNT          quantity, integer >= 1
    ASSET           cost of the line, number >= 0
    SALES_PRICE     price paid for the line (not per unit), number >= 0
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

REQUIRED_COLUMNS = (
    "TRANSACTION_DT",
    "CUSTOMER_ID",
    "AGE_GROUP",
    "PIN_CODE",
    "PRODUCT_SUBCLASS",
    "PRODUCT_ID",
    "AMOUNT",
    "ASSET",
    "SALES_PRICE",
)


class RetailLogError(ValueError):
    """A malformed retail log; ``line`` is the 1-based line number in the CSV (header is line 1)."""

    def __init__(self, message: str, *, line: int | None = None, path: str | None = None):
        self.reason = message
        self.line = line
        self.path = path
        where = f"{path}: " if path else ""
        where += f"line {line}: " if line is not None else ""
        super().__init__(where + message)


@dataclass(frozen=True, slots=True)
class RetailLogRow:
    line: int
    date: dt.date
    customer_id: str
    age_group: str | None
    pin_code: str | None
    subclass: str
    product_id: str
    quantity: int
    cost: Decimal
    sales_price: Decimal

    @property
    def unit_price(self) -> Decimal:
        """Price of one unit, rounded to cents."""
        return (self.sales_price / self.quantity).quantize(Decimal("0.01"))


@contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOBase]:
    if not path.exists():
        raise RetailLogError("file not found", path=str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.lower().endswith(".csv") and not m.startswith("__MACOSX")]
            if len(members) != 1:
                raise RetailLogError(f"zip must contain exactly one .csv file, found {len(members)}", path=str(path))
            with zf.open(members[0]) as raw:
                yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    else:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            yield fh


def _parse_date(value: str, line: int) -> dt.date:
    try:
        month, day, year = (int(p) for p in value.split("/"))
        return dt.date(year, month, day)
    except (ValueError, TypeError):
        raise RetailLogError(f"TRANSACTION_DT {value!r} is not a m/d/YYYY date", line=line) from None


def _parse_decimal(name: str, value: str, line: int) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise RetailLogError(f"{name} {value!r} is not a number", line=line) from None
    if not number.is_finite() or number < 0:
        raise RetailLogError(f"{name} {value!r} must be a number >= 0", line=line)
    return number


def parse_row(record: dict[str, str], line: int) -> RetailLogRow:
    """Validate one CSV record (already split into columns) into a typed row."""
    customer = (record.get("CUSTOMER_ID") or "").strip()
    product = (record.get("PRODUCT_ID") or "").strip()
    subclass = (record.get("PRODUCT_SUBCLASS") or "").strip()
    for name, value in (("CUSTOMER_ID", customer), ("PRODUCT_ID", product), ("PRODUCT_SUBCLASS", subclass)):
        if not value:
            raise RetailLogError(f"{name} is empty", line=line)
    amount_text = (record.get("AMOUNT") or "").strip()
    try:
        quantity = int(amount_text)
    except ValueError:
        raise RetailLogError(f"AMOUNT {amount_text!r} is not an integer", line=line) from None
    if quantity < 1:
        raise RetailLogError(f"AMOUNT {quantity} must be >= 1", line=line)
    age = (record.get("AGE_GROUP") or "").strip() or None
    pin = (record.get("PIN_CODE") or "").strip() or None
    return RetailLogRow(
        line=line,
        date=_parse_date((record.get("TRANSACTION_DT") or "").strip(), line),
        customer_id=customer,
        age_group=age,
        pin_code=pin,
        subclass=subclass,
        product_id=product,
        quantity=quantity,
        cost=_parse_decimal("ASSET", (record.get("ASSET") or "").strip(), line),
        sales_price=_parse_decimal("SALES_PRICE", (record.get("SALES_PRICE") or "").strip(), line),
    )


def iter_retail_log(path: str | Path, *, limit: int | None = None) -> Iterator[RetailLogRow]:
    """Yield validated rows of a Ta Feng-format log, streaming.

    Raises :class:`RetailLogError` naming the line of the first malformed record. ``limit`` stops
    after that many data rows (for slices in tests and quick demos).
    """
    path = Path(path)
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise RetailLogError("file is empty (no header line)", path=str(path)) from None
        header = [h.strip().upper() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise RetailLogError(f"header is missing column(s) {', '.join(missing)}", line=1, path=str(path))
        index = {name: header.index(name) for name in REQUIRED_COLUMNS}
        width = len(header)
        count = 0
        try:
            for values in reader:
                line = reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue
                if len(values) != width:
                    raise RetailLogError(f"expected {width} columns, found {len(values)}", line=line, path=str(path))
                record = {name: values[i] for name, i in index.items()}
                try:
                    yield parse_row(record, line)
                except RetailLogError as exc:
                    raise RetailLogError(exc.reason, line=line, path=str(path)) from None
                count += 1
                if limit is not None and count >= limit:
                    return
        except csv.Error as exc:
            raise RetailLogError(f"CSV syntax error: {exc}", line=reader.line_num, path=str(path)) from None
        except UnicodeDecodeError as exc:
            raise RetailLogError(f"not UTF-8 text: {exc.reason}", line=reader.line_num + 1, path=str(path)) from None

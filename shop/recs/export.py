"""Export: every event and the catalogue into a versioned Parquet snapshot, the recommender's plain input.

The recommender never touches the database, so everything it trains and serves on is exported first.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from shop.catalog.models import Product
from shop.events.models import Event

from . import keys
from .runs import task_run_progress

INTERACTION_SCHEMA_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "placement", "position", "device")
ITEM_SCHEMA_COLUMNS = ("item_id", "category", "brand", "price", "created", "in_stock")


def _snapshot_root() -> Path:
    return Path(settings.SNAPSHOT_DIR)


def snapshot_latest() -> Path | None:
    """The newest complete snapshot directory (``snap-<n>-<time>``), or None."""
    root = _snapshot_root()
    if not root.is_dir():
        return None
    snaps = sorted((p for p in root.glob("snap-*") if (p / "manifest.json").is_file()), key=lambda p: p.name)
    return snaps[-1] if snaps else None


def snapshot_manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def training_data_export(*, run_id: uuid.UUID | str | None = None, chunk_size: int | None = None) -> dict:
    """Stream every event into a new versioned Parquet snapshot, in constant memory.

    Rows come through a server-side cursor (``.iterator(chunk_size=...)`` over ``values_list``: tuples, not
    model instances) and are written with pyarrow's ParquetWriter one row group at a time, so 10M events
    never need 10M objects. The snapshot is cut at the largest event id seen at the start (events arriving
    meanwhile go to the next one), written into a temporary directory and renamed into place atomically.
    Columns are those ``recommender.data.load_parquet`` reads.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk = chunk_size or settings.RECS_EXPORT_ROW_GROUP
    t0 = time.perf_counter()
    root = _snapshot_root()
    root.mkdir(parents=True, exist_ok=True)
    max_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    total = Event.objects.filter(id__lte=max_id).count() if run_id else 0
    tmp = root / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        schema = pa.schema(
            [
                ("user_id", pa.string()),
                ("item_id", pa.string()),
                ("event_type", pa.string()),
                ("timestamp", pa.int64()),
                ("placement", pa.string()),
                ("position", pa.int32()),
                ("device", pa.string()),
            ]
        )
        rows = (
            Event.objects.filter(id__lte=max_id)
            .order_by("id")
            .values_list(
                keys.event_user_key(),
                "product_id",
                "type",
                keys.epoch_seconds("occurred_at"),
                "placement",
                "position",
                "device",
            )
            .iterator(chunk_size=min(chunk, 20_000))
        )
        n = 0
        with pq.ParquetWriter(tmp / "interactions.parquet", schema, compression="zstd") as writer:
            buf: list[tuple] = []
            for row in rows:
                buf.append(row)
                if len(buf) >= chunk:
                    writer.write_table(_interactions_table(buf, schema))
                    n += len(buf)
                    buf = []
                    if run_id:
                        task_run_progress(run_id=run_id, stage="exporting events", percent=90.0 * n / max(total, 1))
            if buf:
                writer.write_table(_interactions_table(buf, schema))
                n += len(buf)
        n_items = _export_items(tmp / "items.parquet")
        number = _next_snapshot_number(root)
        name = f"snap-{number:06d}-{timezone.now():%Y%m%dT%H%M%S}"
        manifest = {
            "name": name,
            "events": n,
            "items": n_items,
            "max_event_id": max_id,
            "created_at": timezone.now().isoformat(),
            "interactions": "interactions.parquet",
            "items_file": "items.parquet",
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _snapshots_prune(root)
    return {"snapshot": name, "path": str(root / name), "events": n, "items": n_items, "max_event_id": max_id,
            "seconds": manifest["seconds"]}  # fmt: skip


def _interactions_table(buf: list[tuple], schema):
    import pyarrow as pa

    user, item, kind, ts, placement, position, device = zip(*buf, strict=True)
    return pa.Table.from_arrays(
        [
            pa.array(user, pa.string()),
            pa.array(item, pa.int64()).cast(pa.string()),
            pa.array(kind, pa.string()),
            pa.array(ts, pa.int64()),
            pa.array(placement, pa.string()),
            pa.array([-1 if p is None else p for p in position], pa.int32()),
            pa.array(device, pa.string()),
        ],
        schema=schema,
    )


def _export_items(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = Product.objects.order_by("id").values_list(
        "id", "category_id", "brand_id", "price", keys.epoch_seconds("created_at"), "stock", "is_active"
    )
    cols: dict[str, list] = {c: [] for c in ITEM_SCHEMA_COLUMNS}
    for pid, cat, brand, price, created, stock, active in rows.iterator(chunk_size=10_000):
        cols["item_id"].append(str(pid))
        cols["category"].append(str(cat))
        cols["brand"].append("" if brand is None else str(brand))
        cols["price"].append(float(price))
        cols["created"].append(int(created or 0))
        cols["in_stock"].append(bool(active and stock > 0))
    table = pa.table(
        {
            "item_id": pa.array(cols["item_id"], pa.string()),
            "category": pa.array(cols["category"], pa.string()),
            "brand": pa.array(cols["brand"], pa.string()),
            "price": pa.array(cols["price"], pa.float64()),
            "created": pa.array(cols["created"], pa.int64()),
            "in_stock": pa.array(cols["in_stock"], pa.bool_()),
        }
    )
    pq.write_table(table, path, compression="zstd")
    return table.num_rows


def _next_snapshot_number(root: Path) -> int:
    numbers = []
    for p in root.glob("snap-*"):
        try:
            numbers.append(int(p.name.split("-")[1]))
        except (IndexError, ValueError):
            continue
    return max(numbers, default=0) + 1


def _snapshots_prune(root: Path) -> None:
    snaps = sorted(p for p in root.glob("snap-*") if p.is_dir())
    for old in snaps[: max(0, len(snaps) - settings.SNAPSHOTS_KEEP)]:
        shutil.rmtree(old, ignore_errors=True)


def export_run(*, run_id: uuid.UUID) -> dict:
    task_run_progress(run_id=run_id, stage="exporting events", percent=0)
    return training_data_export(run_id=run_id)

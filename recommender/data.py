"""Typed input API: interactions and items in, labelled examples with past-only features out.

Everything here is columnar numpy (ids as ``str`` arrays, timestamps as int64 seconds since the epoch).
The shop exports Parquet snapshots with the columns of :class:`Interactions` and :class:`ItemTable`;
the Ta Feng purchase log comes in through :func:`interactions_from_retail_log`.

No leakage, by construction: every statistic attached to an example (the user's recent items, counts,
recencies) is answered by :class:`HistoryIndex` from events *strictly earlier* than the example's
timestamp, and the same index answers the serving-time queries, so training and serving cannot drift.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.config import DAY, DataConfig, FeatureConfig
from recommender.retrieval import SIGNALS, absent_signals

EVENT_TYPES = ("impression", "view", "click", "add_to_cart", "remove_from_cart", "purchase")
INTERACTION_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "placement", "position", "device")
ITEM_COLUMNS = ("item_id", "category", "brand", "price", "created", "in_stock")


# At most this many ids are looked up through a dict instead of pandas: pandas 3 builds an Arrow array on
# every get_indexer call, and a dict stays faster up to a few thousand ids (one process, 5,000 known ids:
# 100 ids 9.8 against 80.8 us, 500 ids 50 against 166, 4,096 ids 415 against 830). A live request looks up
# its candidates (up to RECS_LIVE_CANDIDATES) and its fresh events (up to RECS_FRESH_EVENTS) this way; at
# the old bound of 64 both went through pandas. Longer arrays (training, batch scoring) are factorized first.
SMALL_LOOKUP = 4096


def dict_lookup(positions: dict[str, int], values: np.ndarray) -> np.ndarray:
    """Position of each value in ``positions`` (-1 when absent), as int64."""
    return np.fromiter((positions.get(v, -1) for v in values.tolist()), np.int64, len(values))


def _str_array(values, n: int | None = None, default: str = "") -> np.ndarray:
    if values is None:
        return np.full(n or 0, default, dtype=str if default else "<U1")
    arr = np.asarray(values)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "O":
        arr = np.where(pd.isna(arr), default, arr)
    return arr.astype(str)


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class Interactions:
    """One row per event. Arrays all have the same length N.

    user_id (N,) str, item_id (N,) str, event_type (N,) str in :data:`EVENT_TYPES`,
    timestamp (N,) int64 seconds, placement (N,) str (rail/page that showed the item, "" unknown),
    position (N,) int32 (slot in the rail, -1 unknown), device (N,) str ("" unknown).
    """

    user_id: np.ndarray
    item_id: np.ndarray
    event_type: np.ndarray
    timestamp: np.ndarray
    placement: np.ndarray
    position: np.ndarray
    device: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.user_id)
        self.user_id = _str_array(self.user_id)
        self.item_id = _str_array(self.item_id)
        self.event_type = _str_array(self.event_type)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        self.placement = _str_array(self.placement, n)
        self.position = np.asarray(self.position if self.position is not None else np.full(n, -1), dtype=np.int32)
        self.device = _str_array(self.device, n)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"column {f.name} has {len(getattr(self, f.name))} rows, user_id has {n}")
        if n <= SMALL_LOOKUP:  # a live request's few events: a set (np.isin sorts the strings, 60x slower here)
            unknown = set(self.event_type.tolist()).difference(EVENT_TYPES)
        else:
            unknown = set(self.event_type[~np.isin(self.event_type, EVENT_TYPES)].tolist())
        if unknown:
            raise ValueError(f"unknown event types: {sorted(unknown)[:5]}")

    @classmethod
    def from_columns(
        cls,
        *,
        user_id: Sequence,
        item_id: Sequence,
        event_type: Sequence,
        timestamp: Sequence,
        placement: Sequence | None = None,
        position: Sequence | None = None,
        device: Sequence | None = None,
    ) -> Interactions:
        return cls(user_id, item_id, event_type, timestamp, placement, position, device)

    def __len__(self) -> int:
        return len(self.user_id)

    def take(self, index: np.ndarray) -> Interactions:
        return Interactions(*(getattr(self, f.name)[index] for f in fields(self)))

    def sorted_by_time(self) -> Interactions:
        return self.take(np.argsort(self.timestamp, kind="stable"))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({c: getattr(self, c) for c in INTERACTION_COLUMNS})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Interactions:
        missing = {"user_id", "item_id", "event_type", "timestamp"} - set(frame.columns)
        if missing:
            raise ValueError(f"interactions are missing column(s) {sorted(missing)}")
        ts = frame["timestamp"]
        if pd.api.types.is_datetime64_any_dtype(ts):
            # pandas 3 keeps second/microsecond resolution: convert explicitly, never astype(int64)
            ts = (ts.dt.tz_localize(None) if ts.dt.tz is not None else ts).to_numpy("datetime64[s]").astype(np.int64)
        get = lambda c: frame[c].to_numpy() if c in frame.columns else None  # noqa: E731
        return cls.from_columns(
            user_id=get("user_id"),
            item_id=get("item_id"),
            event_type=get("event_type"),
            timestamp=np.asarray(ts, dtype=np.int64),
            placement=get("placement"),
            position=get("position"),
            device=get("device"),
        )

    @classmethod
    def from_parquet(cls, path: str | Path) -> Interactions:
        return cls.from_frame(pd.read_parquet(path))

    def to_parquet(self, path: str | Path) -> None:
        self.to_frame().to_parquet(path, index=False)


@dataclass
class ItemTable:
    """The catalogue. item_id (M,) str, category (M,) str, brand (M,) str, price (M,) float64 (NaN unknown),
    created (M,) int64 seconds, in_stock (M,) bool."""

    item_id: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    created: np.ndarray
    in_stock: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.item_id)
        self.item_id = _str_array(self.item_id)
        self.category = _str_array(self.category, n)
        self.brand = _str_array(self.brand, n)
        self.price = np.asarray(self.price, dtype=np.float64)
        self.created = np.asarray(self.created if self.created is not None else np.zeros(n), dtype=np.int64)
        self.in_stock = np.asarray(self.in_stock if self.in_stock is not None else np.ones(n), dtype=bool)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"column {f.name} has {len(getattr(self, f.name))} rows, item_id has {n}")
        self._index = pd.Index(self.item_id)
        if not self._index.is_unique:
            raise ValueError("item_id must be unique in the item table")

    def __len__(self) -> int:
        return len(self.item_id)

    def lookup(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each id in this table, -1 where absent."""
        item_ids = _str_array(item_ids)
        if len(item_ids) <= SMALL_LOOKUP:
            return dict_lookup(self._positions, item_ids)
        return self._index.get_indexer(item_ids)

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return dict(zip(self.item_id.tolist(), range(len(self.item_id)), strict=True))

    def attributes(self, item_ids: np.ndarray) -> dict[str, np.ndarray]:
        """category, brand, price, created for each id (""/NaN/0 where the item is not in the table)."""
        rows = self.lookup(item_ids)
        known = rows >= 0
        safe = np.where(known, rows, 0)
        return {
            "category": np.where(known, self.category[safe] if len(self) else "", ""),
            "brand": np.where(known, self.brand[safe] if len(self) else "", ""),
            "price": np.where(known, self.price[safe] if len(self) else np.nan, np.nan),
            "created": np.where(known, self.created[safe] if len(self) else 0, 0),
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({c: getattr(self, c) for c in ITEM_COLUMNS})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ItemTable:
        if "item_id" not in frame.columns:
            raise ValueError("item table is missing column item_id")
        created = frame["created"] if "created" in frame.columns else None
        if created is not None and pd.api.types.is_datetime64_any_dtype(created):
            created = created.dt.tz_localize(None) if created.dt.tz is not None else created
            created = created.to_numpy("datetime64[s]").astype(np.int64)
        get = lambda c: frame[c].to_numpy() if c in frame.columns else None  # noqa: E731
        n = len(frame)
        return cls(
            item_id=get("item_id"),
            category=get("category"),
            brand=get("brand"),
            price=get("price") if "price" in frame.columns else np.full(n, np.nan),
            created=created,
            in_stock=get("in_stock"),
        )

    @classmethod
    def from_parquet(cls, path: str | Path) -> ItemTable:
        return cls.from_frame(pd.read_parquet(path))

    def to_parquet(self, path: str | Path) -> None:
        self.to_frame().to_parquet(path, index=False)


@dataclass
class ShopData:
    """Interactions plus the catalogue they refer to."""

    interactions: Interactions
    items: ItemTable


def load_parquet(interactions_path: str | Path, items_path: str | Path) -> ShopData:
    """Load the shop's Parquet export (one file of interactions, one of items)."""
    return ShopData(Interactions.from_parquet(interactions_path), ItemTable.from_parquet(items_path))


def interactions_from_retail_log(path: str | Path, limit: int | None = None) -> ShopData:
    """Ta Feng-format purchase log -> interactions (one purchase per line) and an item table.

    category = product sub-class, price = mean unit price over the item's lines, created = first day seen,
    brand unknown (""), placement "store", device "" (unknown, like a pipeline request that names none: a device
    seen only in training would leave the serving value on an untrained OOV row), timestamps at midnight UTC.
    """
    from recommender.retail_log import iter_retail_log

    users, items, days, subclasses, prices = [], [], [], [], []
    epoch = dt.date(1970, 1, 1)
    day_cache: dict[dt.date, int] = {}
    for row in iter_retail_log(path, limit=limit):
        users.append(row.customer_id)
        items.append(row.product_id)
        d = day_cache.get(row.date)
        if d is None:
            d = day_cache[row.date] = (row.date - epoch).days * DAY
        days.append(d)
        subclasses.append(row.subclass)
        prices.append(float(row.sales_price) / row.quantity)
    n = len(users)
    interactions = Interactions.from_columns(
        user_id=np.array(users, dtype=str),
        item_id=np.array(items, dtype=str),
        event_type=np.full(n, "purchase"),
        timestamp=np.array(days, dtype=np.int64),
        placement=np.full(n, "store"),
        position=np.full(n, -1, dtype=np.int32),
        device=np.full(n, ""),
    ).sorted_by_time()
    frame = pd.DataFrame({"item_id": items, "category": subclasses, "price": prices, "ts": days})
    agg = frame.groupby("item_id", sort=True).agg(
        category=("category", "first"), price=("price", "mean"), created=("ts", "min")
    )
    table = ItemTable(
        item_id=agg.index.to_numpy(),
        category=agg["category"].to_numpy(),
        brand=np.full(len(agg), ""),
        price=agg["price"].to_numpy(),
        created=agg["created"].to_numpy(),
        in_stock=np.ones(len(agg), dtype=bool),
    )
    return ShopData(interactions, table)


# ------------------------------------------------------------------------------------- history index


class _GroupedTimes:
    """Sorted (group, time) pairs answering "how many events of group g before time t" in O(log N).

    Groups are int64 keys; they are compacted to ranks so ``rank * span + time`` never overflows.
    """

    def __init__(self, groups: np.ndarray, times: np.ndarray, t0: int, span: int):
        self.t0, self.span = t0, span
        self.keys_unique, inverse = np.unique(groups, return_inverse=True)
        composite = inverse.astype(np.int64) * span + (times - t0)
        self.order = np.argsort(composite, kind="stable")
        self.composite = composite[self.order]
        self.times = times[self.order]

    def _rank(self, groups: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.keys_unique, groups)
        pos = np.minimum(pos, max(len(self.keys_unique) - 1, 0))
        found = len(self.keys_unique) > 0
        ok = (self.keys_unique[pos] == groups) if found else np.zeros(len(groups), bool)
        return np.where(ok & (groups >= 0), pos, -1)

    def bounds(self, groups: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start of group, first position at or after ``times``) in the sorted order; equal when none before."""
        rank = self._rank(groups)
        known = rank >= 0
        r = np.where(known, rank, 0).astype(np.int64)
        offset = np.clip(np.asarray(times, dtype=np.int64) - self.t0, 0, self.span - 1)
        start = np.searchsorted(self.composite, r * self.span)
        end = np.searchsorted(self.composite, r * self.span + offset)
        start = np.where(known, start, 0)
        end = np.where(known, end, 0)
        return start, end

    def count_before(self, groups: np.ndarray, times: np.ndarray) -> np.ndarray:
        start, end = self.bounds(groups, times)
        return end - start

    def last_before(self, groups: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Timestamp of the group's latest event strictly before ``times``; -1 when none."""
        start, end = self.bounds(groups, times)
        return self.last_in(start, end)

    def last_in(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """:meth:`last_before` from already computed :meth:`bounds`."""
        has = end > start
        return np.where(has, self.times[np.maximum(end - 1, 0)] if len(self.times) else -1, -1)


def _indexer(index: pd.Index, values: np.ndarray) -> np.ndarray:
    """``index.get_indexer(values)`` for long arrays with few distinct values: hash each distinct value once
    (pandas 3 would otherwise convert every row to an Arrow string)."""
    values = np.asarray(values)
    if len(values) < 4096:
        return index.get_indexer(values).astype(np.int64)
    codes, uniq = pd.factorize(values)
    return index.get_indexer(uniq).astype(np.int64)[codes]


def _attributes(items: ItemTable, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``items.attributes`` computed once per distinct id."""
    item_ids = np.asarray(item_ids)
    if len(item_ids) < 4096:
        return items.attributes(item_ids)
    codes, uniq = pd.factorize(item_ids)
    return {k: v[codes] for k, v in items.attributes(np.asarray(uniq, dtype=str)).items()}


_EVENT_TYPE_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}


def _event_type_codes(event_type: np.ndarray) -> np.ndarray:
    """Event type names -> int8 positions in :data:`EVENT_TYPES`."""
    event_type = np.asarray(event_type, dtype=str)
    if len(event_type) <= SMALL_LOOKUP:
        return dict_lookup(_EVENT_TYPE_CODE, event_type).astype(np.int8)
    return _indexer(pd.Index(EVENT_TYPES), event_type).astype(np.int8)


@dataclass(frozen=True)
class UserHistory:
    """One user's history events before a time, oldest first (the snapshot's plus fresh ones).

    item_id (h,) str, timestamp (h,) int64, category (h,) int32 (:meth:`HistoryIndex.category_codes`),
    event_type (h,) int8 (position in :data:`EVENT_TYPES`), rows (h,) int64 (catalogue rows).
    """

    item_id: np.ndarray
    timestamp: np.ndarray
    category: np.ndarray
    event_type: np.ndarray
    rows: np.ndarray  # (h,) int64 catalogue row of each item, -1 when not in the catalogue

    def __len__(self) -> int:
        return len(self.item_id)


class HistoryIndex:
    """Answers past-only questions about users and items at any time t (strictly before t).

    Built once from the interactions whose types are in ``history_types``. The same index computes the
    features of training examples and of serving requests.
    """

    def __init__(
        self,
        interactions: Interactions,
        items: ItemTable,
        *,
        history_types: Sequence[str] = DataConfig().history_types,
        recent_items: int = FeatureConfig().recent_items,
        trend_window_s: int = FeatureConfig().trend_window_s,
    ):
        keep = np.isin(interactions.event_type, list(history_types))
        ev = interactions.take(np.flatnonzero(keep))
        self.history_types = tuple(history_types)
        self.items = items
        self.recent_k = recent_items
        self.trend_window_s = trend_window_s
        ts = ev.timestamp
        self.t0 = int(ts.min()) - 2 * trend_window_s - 1 if len(ts) else 0
        self.span = (int(ts.max()) - self.t0 + 2) if len(ts) else 2
        self.user_index = pd.Index(pd.unique(ev.user_id))
        self.item_index = pd.Index(pd.unique(ev.item_id))
        self.category_index = pd.Index(pd.unique(items.category)) if len(items) else pd.Index([])
        u = _indexer(self.user_index, ev.user_id)
        i = _indexer(self.item_index, ev.item_id)
        c = self.category_index.get_indexer(_attributes(items, ev.item_id)["category"]).astype(np.int64)
        n_items, n_cat = max(len(self.item_index), 1), max(len(self.category_index), 1) + 1
        self._users = _GroupedTimes(u, ts, self.t0, self.span)
        self._items = _GroupedTimes(i, ts, self.t0, self.span)
        self._pairs = _GroupedTimes(u * n_items + i, ts, self.t0, self.span)
        self._user_cats = _GroupedTimes(u * n_cat + np.where(c >= 0, c, n_cat - 1), ts, self.t0, self.span)
        self._n_items, self._n_cat = n_items, n_cat
        # the user's events in (user, time) order: the recent-items bag is a slice of this array
        self.history_items: np.ndarray = ev.item_id[self._users.order]
        # ... and, in the same order, what a live request needs to rebuild one user's statistics from that
        # user's slice alone (never touching arrays as long as the log): time, category code, event type code
        self.history_times: np.ndarray = self._users.times
        self.history_category: np.ndarray = np.where(c >= 0, c, n_cat - 1).astype(np.int32)[self._users.order]
        self.history_type: np.ndarray = _event_type_codes(ev.event_type)[self._users.order]
        self.num_events = len(ev)

    def category_codes(self, item_ids: np.ndarray) -> np.ndarray:
        """The category code :meth:`query` counts ``user_category_count`` under, for each item id."""
        rows = self.items.lookup(_str_array(item_ids))
        return np.where(rows >= 0, self._row_category_code[np.maximum(rows, 0)], self._unknown_category_code)

    @functools.cached_property
    def _row_category_code(self) -> np.ndarray:
        c = self.category_index.get_indexer(self.items.category) if len(self.items) else np.zeros(0, np.int64)
        return np.where(c >= 0, c, self._n_cat - 1).astype(np.int32)

    @functools.cached_property
    def _unknown_category_code(self) -> np.int32:  # an item outside the catalogue has category ""
        c = int(self.category_index.get_indexer([""])[0]) if len(self.category_index) else -1
        return np.int32(c if c >= 0 else self._n_cat - 1)

    @functools.cached_property
    def _user_positions(self) -> dict[str, int]:
        return dict(zip(self.user_index.tolist(), range(len(self.user_index)), strict=True))

    def user_slice(self, user_id: str, timestamp: int) -> tuple[int, int]:
        """[start, end) of ``user_id``'s events strictly before ``timestamp`` in the ``history_*`` arrays
        (two binary searches: O(log N), no allocation proportional to the log)."""
        u = self._user_positions.get(str(user_id), -1)
        if u < 0:
            return 0, 0
        start, end = self._users.bounds(np.array([u], np.int64), np.array([timestamp], np.int64))
        return int(start[0]), int(end[0])

    def warm(self) -> None:
        """Build the lookups the live path uses (so no request pays for them)."""
        _ = self.history_rows, self._row_category_code, self._unknown_category_code, self._user_positions
        _ = self.items._positions

    def user_history(self, user_id: str, timestamp: int, fresh: Interactions | None = None) -> UserHistory:
        """One user's history events strictly before ``timestamp``, oldest first, as a :class:`UserHistory`;
        ``fresh``: that user's events since the snapshot (all rows are taken as this user's; types outside the
        index's history types and rows at or after ``timestamp`` are ignored; a row identical to a snapshot
        row (item, time, type) is counted once). Cost: this user's events, not the log."""
        s, e = self.user_slice(user_id, timestamp)
        items = self.history_items[s:e]
        times = self.history_times[s:e]
        cats = self.history_category[s:e]
        types = self.history_type[s:e]
        rows = self.history_rows[s:e]
        if fresh is not None and len(fresh):
            keep = np.isin(fresh.event_type, self.history_types) & (fresh.timestamp < timestamp)
            if keep.any():
                f_items = fresh.item_id[keep]
                f_times = fresh.timestamp[keep]
                f_types = _event_type_codes(fresh.event_type[keep])
                # drop rows the snapshot already holds (a fresh window that overlaps it): only the snapshot's
                # rows at or after the earliest fresh one can match (the slice is in time order)
                lo = int(np.searchsorted(times, f_times.min(), side="left"))
                if lo < len(times):
                    seen = set(zip(items[lo:].tolist(), times[lo:].tolist(), types[lo:].tolist(), strict=True))
                    new = np.array(
                        [
                            (i, t, y) not in seen
                            for i, t, y in zip(f_items.tolist(), f_times.tolist(), f_types.tolist(), strict=True)
                        ],
                        dtype=bool,
                    )
                    f_items, f_times, f_types = f_items[new], f_times[new], f_types[new]
                if len(f_items):
                    items = np.concatenate([items, f_items])
                    times = np.concatenate([times, f_times])
                    cats = np.concatenate([cats, self.category_codes(f_items)])
                    types = np.concatenate([types, f_types])
                    rows = np.concatenate([rows, self.items.lookup(f_items).astype(np.int64)])
                    order = np.argsort(times, kind="stable")  # snapshot rows first among equal times
                    items, times, cats, types, rows = items[order], times[order], cats[order], types[order], rows[order]
        return UserHistory(item_id=items, timestamp=times, category=cats, event_type=types, rows=rows)

    @functools.cached_property
    def history_rows(self) -> np.ndarray:
        """Catalogue row of every ``history_items`` entry (-1 when not in the catalogue); computed on first use
        (serving builds it once, training never needs it)."""
        return _indexer(self.items._index, self.history_items)

    def query(self, user_id: np.ndarray, item_id: np.ndarray, timestamp: np.ndarray) -> dict[str, np.ndarray]:
        """Past-only statistics for each (user, item, t) row; all arrays have the query's length.

        Returns int64 arrays: user_activity, item_popularity, item_trend, user_item_count, user_category_count,
        item_last_ts / user_item_last_ts (-1 when never), hist_start / hist_end (the user's recent-items bag
        is ``history_items[hist_start:hist_end]``, at most ``recent_items`` long, oldest first).
        """
        user_id, item_id = _str_array(user_id), _str_array(item_id)
        t = np.asarray(timestamp, dtype=np.int64)
        if t.ndim == 0:
            t = np.full(len(user_id), int(t))
        u = _indexer(self.user_index, user_id)
        i = _indexer(self.item_index, item_id)
        c = self.category_index.get_indexer(_attributes(self.items, item_id)["category"]).astype(np.int64)
        pair = np.where((u >= 0) & (i >= 0), u * self._n_items + i, -1)
        ucat = np.where(u >= 0, u * self._n_cat + np.where(c >= 0, c, self._n_cat - 1), -1)
        ustart, uend = self._users.bounds(u, t)
        istart, iend = self._items.bounds(i, t)
        _, iend_w = self._items.bounds(i, t - self.trend_window_s)
        pstart, pend = self._pairs.bounds(pair, t)
        return {
            "user_activity": uend - ustart,
            "item_popularity": iend - istart,
            "item_trend": iend - iend_w,
            "item_last_ts": self._items.last_in(istart, iend),
            "user_item_count": pend - pstart,
            "user_item_last_ts": self._pairs.last_in(pstart, pend),
            "user_category_count": self._user_cats.count_before(ucat, t),
            "hist_start": np.maximum(ustart, uend - self.recent_k),
            "hist_end": uend,
        }

    def user_items(self, user_id: str, timestamp: int) -> np.ndarray:
        """All history item ids of one user strictly before ``timestamp``, oldest first."""
        u = self.user_index.get_indexer(np.array([user_id]))
        start, end = self._users.bounds(u.astype(np.int64), np.array([timestamp]))
        return self.history_items[start[0] : end[0]]


# ------------------------------------------------------------------------------------------- examples


@dataclass
class Examples:
    """Labelled (user, item, time) rows with their past-only statistics. All per-row arrays have length N.

    Raw ids are kept (str) so vocabularies can be fitted on the training part only; ``history`` is the
    shared array that ``hist_start``/``hist_end`` slice into (the recent-items bag of each row).
    """

    user_id: np.ndarray
    item_id: np.ndarray
    timestamp: np.ndarray
    label: np.ndarray  # float32, 1 positive / 0 negative
    weight: np.ndarray  # float32 loss weight
    device: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray  # float64, NaN unknown
    user_activity: np.ndarray
    item_popularity: np.ndarray
    item_trend: np.ndarray
    item_last_ts: np.ndarray
    user_item_count: np.ndarray
    user_item_last_ts: np.ndarray
    user_category_count: np.ndarray
    hist_start: np.ndarray
    hist_end: np.ndarray
    signals: np.ndarray  # (N, len(SIGNALS)) float32: stage 1's view of each row (absent_signals when none)
    history: np.ndarray  # shared, not per row

    def __len__(self) -> int:
        return len(self.user_id)

    def take(self, index: np.ndarray) -> Examples:
        kw = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "history"}
        return Examples(**kw, history=self.history)

    @property
    def positive_rate(self) -> float:
        return float(self.label.mean()) if len(self) else 0.0


def concat_examples(parts: Sequence[Examples]) -> Examples:
    """Rows of several :class:`Examples` built on the same history index (they share ``history``)."""
    parts = [p for p in parts if len(p)] or list(parts[:1])
    if len(parts) == 1:
        return parts[0]
    if any(p.history is not parts[0].history for p in parts[1:]):
        raise ValueError("examples built on different history indexes cannot be concatenated")
    kw = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Examples) if f.name != "history"}
    return Examples(**kw, history=parts[0].history)


def examples_for(
    index: HistoryIndex,
    user_id: np.ndarray,
    item_id: np.ndarray,
    timestamp: np.ndarray,
    *,
    device: np.ndarray | str = "",
    label: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    signals: np.ndarray | None = None,
) -> Examples:
    """Feature rows for arbitrary (user, item, t) triples, e.g. a serving request (label 0). ``signals``:
    stage 1's signals of each row (:data:`recommender.retrieval.SIGNALS`); none: as for an item no source
    ranked."""
    user_id, item_id = _str_array(user_id), _str_array(item_id)
    n = len(user_id)
    t = np.asarray(timestamp, dtype=np.int64)
    if t.ndim == 0:
        t = np.full(n, int(t), dtype=np.int64)
    stats = index.query(user_id, item_id, t)
    attrs = _attributes(index.items, item_id)
    dev = np.full(n, device) if isinstance(device, str) else _str_array(device)
    return Examples(
        user_id=user_id,
        item_id=item_id,
        timestamp=t,
        label=np.zeros(n, np.float32) if label is None else np.asarray(label, np.float32),
        weight=np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32),
        device=dev,
        category=attrs["category"],
        brand=attrs["brand"],
        price=attrs["price"],
        **stats,
        signals=absent_signals(n) if signals is None else np.asarray(signals, np.float32).reshape(n, len(SIGNALS)),
        history=index.history_items,
    )


def _pair_time_keys(user_id: np.ndarray, item_id: np.ndarray, ts: np.ndarray) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([user_id, item_id, ts])


def _engaged_at(
    user_id: np.ndarray, item_id: np.ndarray, ts: np.ndarray, q_user: np.ndarray, q_item: np.ndarray, q_ts: np.ndarray
) -> np.ndarray:
    """For each query row, whether (user, item, time) occurs among the given events (integer keys: fast)."""
    n = len(user_id)
    ucodes, _ = pd.factorize(np.concatenate([user_id, q_user]))
    icodes, _ = pd.factorize(np.concatenate([item_id, q_item]))
    tcodes, _ = pd.factorize(np.concatenate([np.asarray(ts, np.int64), np.asarray(q_ts, np.int64)]))
    key = pd.MultiIndex.from_arrays([ucodes, icodes, tcodes])
    return key[n:].isin(key[:n])


def build_examples(
    interactions: Interactions,
    items: ItemTable,
    config: DataConfig | None = None,
    *,
    features: FeatureConfig | None = None,
    seed: int = 0,
    index: HistoryIndex | None = None,
) -> Examples:
    """Positives, exposure-aware negatives and sampled negatives, each with past-only features; sorted by time.

    * positives: events whose type has a weight in ``config.positive_weights`` (one row per user/item/time,
      the largest weight kept);
    * impression negatives: an impression with no positive by the user on that item in the next
      ``click_window_s`` seconds;
    * sampled negatives: ``negatives_ratio`` per positive, same user/time/device, item drawn from the catalogue
      (uniform or by popularity), never an item the user engaged with at that time.
    """
    config = config or DataConfig()
    features = features or FeatureConfig()
    rng = np.random.default_rng(seed)
    index = index or HistoryIndex(
        interactions,
        items,
        history_types=config.history_types,
        recent_items=features.recent_items,
        trend_window_s=features.trend_window_s,
    )
    weights = np.zeros(len(interactions), np.float32)
    for kind, w in config.positive_weights.items():
        weights[interactions.event_type == kind] = w
    pos_mask = weights > 0
    pos = pd.DataFrame(
        {
            "user_id": interactions.user_id[pos_mask],
            "item_id": interactions.item_id[pos_mask],
            "timestamp": interactions.timestamp[pos_mask],
            "device": interactions.device[pos_mask],
            "weight": weights[pos_mask],
        }
    )
    pos = pos.sort_values("weight", ascending=False, kind="stable").drop_duplicates(["user_id", "item_id", "timestamp"])
    parts = [pos.assign(label=np.float32(1.0))]

    if config.impression_negatives:
        imp_mask = interactions.event_type == "impression"
        if imp_mask.any():
            imp = interactions.take(np.flatnonzero(imp_mask))
            # first positive of the same (user, item) at or after the impression
            pos_all = interactions.take(np.flatnonzero(pos_mask))
            pairs = pd.Index(pd.unique(np.char.add(np.char.add(pos_all.user_id, "\x1f"), pos_all.item_id)))
            pos_pair = pairs.get_indexer(np.char.add(np.char.add(pos_all.user_id, "\x1f"), pos_all.item_id))
            imp_pair = pairs.get_indexer(np.char.add(np.char.add(imp.user_id, "\x1f"), imp.item_id))
            tmin = min(int(interactions.timestamp.min()), 0)
            span = int(interactions.timestamp.max()) - tmin + config.click_window_s + 2
            g = _GroupedTimes(pos_pair.astype(np.int64), pos_all.timestamp, tmin, span)
            clicked = g.count_before(imp_pair.astype(np.int64), imp.timestamp + config.click_window_s + 1) - (
                g.count_before(imp_pair.astype(np.int64), imp.timestamp)
            )
            neg = ~(clicked > 0)
            imp_df = pd.DataFrame(
                {
                    "user_id": imp.user_id[neg],
                    "item_id": imp.item_id[neg],
                    "timestamp": imp.timestamp[neg],
                    "device": imp.device[neg],
                    "weight": np.float32(config.impression_negative_weight),
                    "label": np.float32(0.0),
                }
            ).drop_duplicates(["user_id", "item_id", "timestamp"])
            parts.append(imp_df)

    sampled_parts = []
    if config.negatives_ratio > 0 and len(pos) and len(items):
        r = config.negatives_ratio
        n = len(pos) * r
        catalogue = items.item_id
        counts = pd.Series(pos["item_id"].to_numpy()).value_counts()
        pop = counts.reindex(catalogue, fill_value=0).to_numpy(np.float64) + 1.0
        by_pop = rng.random(n) < config.popularity_mix
        sampled = np.where(
            by_pop,
            rng.choice(len(catalogue), size=n, p=pop / pop.sum()),
            rng.integers(0, len(catalogue), size=n),
        )
        rep = np.repeat(np.arange(len(pos)), r)
        sampled_parts.append(_negatives_frame(pos, rep, catalogue[sampled], config.negative_weight))
    if sampled_parts:
        neg = pd.concat(sampled_parts, ignore_index=True)
        # never label as negative an item the user engaged with at that very time (e.g. the same basket)
        clash = _engaged_at(
            interactions.user_id,
            interactions.item_id,
            interactions.timestamp,
            neg["user_id"].to_numpy(),
            neg["item_id"].to_numpy(),
            neg["timestamp"].to_numpy(),
        )
        parts.append(neg[~clash])

    frame = pd.concat(parts, ignore_index=True)
    frame = frame.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")]
    return examples_for(
        index,
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        frame["timestamp"].to_numpy(),
        device=frame["device"].to_numpy(),
        label=frame["label"].to_numpy(np.float32),
        weight=frame["weight"].to_numpy(np.float32),
    )


def _negatives_frame(pos: pd.DataFrame, rep: np.ndarray, item_ids: np.ndarray, weight: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pos["user_id"].to_numpy()[rep],
            "item_id": item_ids,
            "timestamp": pos["timestamp"].to_numpy()[rep],
            "device": pos["device"].to_numpy()[rep],
            "weight": np.float32(weight),
            "label": np.float32(0.0),
        }
    )


def split_by_time(examples: Examples, valid_fraction: float = 0.2) -> tuple[Examples, Examples, int]:
    """Train = rows before the cutoff, validation = rows at or after it. Returns (train, valid, cutoff).

    The cutoff is a timestamp, so rows sharing a timestamp (one basket) never straddle the split.
    """
    ts = examples.timestamp
    if len(ts) == 0:
        raise ValueError("no examples to split")
    cutoff = int(np.quantile(ts, 1.0 - valid_fraction, method="higher"))
    if cutoff <= ts.min():
        later = ts[ts > ts.min()]
        cutoff = int(later.min()) if len(later) else int(ts.max()) + 1
    train = np.flatnonzero(ts < cutoff)
    valid = np.flatnonzero(ts >= cutoff)
    return examples.take(train), examples.take(valid), cutoff


# --------------------------------------------------------------------------------------- next basket


@dataclass
class NextBasketSplit:
    """Each customer's last shopping day is the test; everything before it (all customers) is history.

    history: the interactions left for training (every customer's last day removed);
    users (U,) str, times (U,) int64 (the test day), baskets: list of U arrays of item ids bought that day.
    Only customers with at least two shopping days are tested (the first day is their history).
    """

    history: Interactions
    users: np.ndarray
    times: np.ndarray
    baskets: list[np.ndarray]


def next_basket_split(interactions: Interactions, *, positive_types: Sequence[str] = ("purchase",)) -> NextBasketSplit:
    frame = pd.DataFrame(
        {
            "user": interactions.user_id,
            "item": interactions.item_id,
            "ts": interactions.timestamp,
            "pos": np.isin(interactions.event_type, list(positive_types)),
        }
    )
    day = frame["ts"] // DAY
    frame["day"] = day
    buys = frame[frame["pos"]]
    last_day = buys.groupby("user")["day"].max()
    n_days = buys.groupby("user")["day"].nunique()
    is_last = frame["day"].to_numpy() >= last_day.reindex(frame["user"]).fillna(np.inf).to_numpy()
    history = interactions.take(np.flatnonzero(~is_last))
    tested = n_days[n_days >= 2].index
    test = buys[buys["user"].isin(tested) & (buys["day"].to_numpy() == last_day.reindex(buys["user"]).to_numpy())]
    grouped = test.groupby("user", sort=True)
    users = np.array(list(grouped.groups.keys()), dtype=str)
    times = grouped["ts"].min().to_numpy(np.int64)
    baskets = [np.unique(g.to_numpy().astype(str)) for _, g in grouped["item"]]
    return NextBasketSplit(history=history, users=users, times=times, baskets=baskets)


def time_split(
    interactions: Interactions,
    *,
    positive_types: Sequence[str],
    history_types: Sequence[str] = DataConfig().history_types,
    test_fraction: float = 0.2,
) -> NextBasketSplit:
    """The shop's own traffic as a :class:`NextBasketSplit`: its log spans minutes to days of sessions, not
    months of shopping days, so the test is a time cut. The cutoff sits at the ``1 - test_fraction`` quantile
    of positive times; history is every event before it; tested users are those with a history event before
    it and a positive at or after it; each one's basket is the items of those positives, ranked as of the
    cutoff (``times``), as the promotion gate's holdout does (:mod:`recommender.holdout`)."""
    pos = np.isin(interactions.event_type, list(positive_types))
    ts = interactions.timestamp[pos]
    if len(ts) == 0:
        raise ValueError("no positive events to split")
    cutoff = int(np.quantile(ts, 1.0 - test_fraction, method="higher"))
    before = interactions.timestamp < cutoff
    history = interactions.take(np.flatnonzero(before))
    known = np.unique(history.user_id[np.isin(history.event_type, list(history_types))])
    after = pos & ~before & np.isin(interactions.user_id, known)
    test = pd.DataFrame({"user": interactions.user_id[after], "item": interactions.item_id[after]})
    grouped = test.groupby("user", sort=True)["item"]
    users = np.array(list(grouped.groups.keys()), dtype=str)
    baskets = [np.unique(g.to_numpy().astype(str)) for _, g in grouped]
    return NextBasketSplit(history=history, users=users, times=np.full(len(users), cutoff, np.int64), baskets=baskets)


# ------------------------------------------------------------------------------------------ synthetic


def synthetic_shop(
    *,
    n_users: int = 300,
    n_items: int = 200,
    n_categories: int = 8,
    sessions_per_user: int = 6,
    impressions_per_session: int = 10,
    seed: int = 0,
) -> ShopData:
    """A small shop with a planted signal: each user prefers one category and clicks its items far more.

    Sessions show ``impressions_per_session`` random items; the user clicks with probability 0.5 when the item
    is in the favourite category (0.04 otherwise); clicks lead to add-to-cart and purchase sometimes.
    """
    rng = np.random.default_rng(seed)
    item_ids = np.array([f"i{j}" for j in range(n_items)])
    item_cat = rng.integers(0, n_categories, n_items)
    items = ItemTable(
        item_id=item_ids,
        category=np.array([f"c{c}" for c in item_cat]),
        brand=np.array([f"b{b}" for b in rng.integers(0, 12, n_items)]),
        price=np.round(rng.lognormal(3.0, 0.8, n_items), 2),
        created=np.full(n_items, 1_700_000_000 - 30 * DAY, dtype=np.int64),
        in_stock=rng.random(n_items) > 0.05,
    )
    fav = rng.integers(0, n_categories, n_users)
    devices = np.array(["mobile", "desktop", "tablet"])
    rows: dict[str, list] = {c: [] for c in INTERACTION_COLUMNS}
    t_start = 1_700_000_000
    horizon = 28 * DAY
    for u in range(n_users):
        starts = np.sort(rng.integers(0, horizon, sessions_per_user))
        dev = devices[rng.integers(0, 3)]
        for s in starts:
            shown = rng.choice(n_items, impressions_per_session, replace=False)
            ts = t_start + int(s)
            for pos, j in enumerate(shown):
                base = dict(user_id=f"u{u}", item_id=item_ids[j], placement="home", position=pos, device=dev)
                _append(rows, base, "impression", ts)
                p = 0.5 if item_cat[j] == fav[u] else 0.04
                if rng.random() < p:
                    _append(rows, base, "click", ts + 5 + pos)
                    if rng.random() < 0.4:
                        _append(rows, base, "add_to_cart", ts + 60 + pos)
                        if rng.random() < 0.6:
                            _append(rows, base, "purchase", ts + 300 + pos)
    inter = Interactions.from_columns(**{c: np.array(v) for c, v in rows.items()}).sorted_by_time()
    return ShopData(inter, items)


def _append(rows: dict[str, list], base: dict, kind: str, ts: int) -> None:
    for k, v in base.items():
        rows[k].append(v)
    rows["event_type"].append(kind)
    rows["timestamp"].append(ts)


def synthetic_event_log(
    n_events: int,
    *,
    n_items: int = 5_000,
    events_per_user: int = 50,
    n_categories: int = 200,
    days: int = 90,
    seed: int = 0,
) -> ShopData:
    """A large shop-shaped log built without Python loops (millions of events in seconds), for
    benchmarks whose cost must not depend on what is in the log, only on its size.

    Users (``n_events // events_per_user`` of them, activity skewed: a few heavy, many light) mostly view
    and click items of one favourite category; 70% views, 15% clicks, 9% add to cart, 6% purchases;
    timestamps uniform over ``days`` days; devices desktop / mobile / tablet.
    """
    rng = np.random.default_rng(seed)
    n_users = max(1, n_events // events_per_user)
    item_cat = rng.integers(0, n_categories, n_items)
    items = ItemTable(
        item_id=np.array([f"p{j}" for j in range(n_items)]),
        category=np.array([f"c{c}" for c in range(n_categories)])[item_cat],
        brand=np.array([f"b{b}" for b in range(300)])[rng.integers(0, 300, n_items)],
        price=np.round(rng.lognormal(3.0, 0.8, n_items), 2),
        created=np.full(n_items, 1_700_000_000 - 120 * DAY, dtype=np.int64),
        in_stock=rng.random(n_items) > 0.03,
    )
    activity = rng.pareto(1.5, n_users) + 1.0
    user = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    fav = rng.integers(0, n_categories, n_users)
    by_cat = np.argsort(item_cat, kind="stable")
    cat_start = np.searchsorted(item_cat[by_cat], np.arange(n_categories + 1))
    c = fav[user]
    size = np.maximum(cat_start[c + 1] - cat_start[c], 1)
    in_fav = by_cat[np.minimum(cat_start[c] + (rng.random(n_events) * size).astype(np.int64), n_items - 1)]
    item = np.where(rng.random(n_events) < 0.7, in_fav, rng.integers(0, n_items, n_events))
    kind = np.array(["view", "click", "add_to_cart", "purchase"])[
        np.searchsorted([0.70, 0.85, 0.94], rng.random(n_events), side="right")
    ]
    ts = np.sort(1_700_000_000 + rng.integers(0, days * DAY, n_events))
    user_names = np.array([f"u{i}" for i in range(n_users)])
    devices = np.array(["desktop", "mobile", "tablet"])
    inter = Interactions(
        user_id=user_names[user],
        item_id=items.item_id[item],
        event_type=kind,
        timestamp=ts,
        placement=np.full(n_events, "home"),
        position=np.full(n_events, -1, np.int32),
        device=devices[user % 3],
    )
    return ShopData(inter, items)

"""Examples -> tensors: vocabularies with hashed out-of-vocabulary buckets, and `Batch`es of
(dense tensor, torchrec KeyedJaggedTensor, labels, weights).

Feature sides (so serving can compute a user's side once and reuse it across that user's candidates):

=================  ==========================================================================
user side sparse   ``user_id``, ``recent_items`` (jagged bag, shares the item table),
                   ``hour_of_day``, ``weekday``, ``device`` (request context travels with the user)
item side sparse   ``item_id``, ``category``, ``brand``, ``price_bucket``
user side dense    ``user_activity``
item side dense    ``log_price``, ``item_popularity``, ``item_recency``, ``item_trend``
user x item dense  ``user_item_count``, ``user_item_recency``, ``user_category_count``, ``user_item_share``
=================  ==========================================================================

Dense columns are all ``log1p`` of counts / days (recency capped at ``recency_cap_days`` when never seen),
so no scaler state is needed. Everything a `FeatureSpace` holds round-trips through
:meth:`FeatureSpace.to_state` as plain python + numpy (the registry stores it beside the weights).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recommender.config import DAY, FeatureConfig
from recommender.data import SMALL_LOOKUP, Examples, dict_lookup
from recommender.retrieval import SIGNALS

USER_SPARSE_KEYS: tuple[str, ...] = ("user_id", "recent_items", "hour_of_day", "weekday", "device")
ITEM_SPARSE_KEYS: tuple[str, ...] = ("item_id", "category", "brand", "price_bucket")
# KJT key order. Tables: item_id and recent_items share the "item" table, so the interaction layer's
# dot product between the user's bag and the candidate is an item-to-item similarity.
SPARSE_KEYS: tuple[str, ...] = ("user_id", "item_id", "recent_items", "category", "brand", "price_bucket",
                                "hour_of_day", "weekday", "device")  # fmt: skip
TABLE_OF_KEY: dict[str, str] = {
    "user_id": "user", "item_id": "item", "recent_items": "item", "category": "category", "brand": "brand",
    "price_bucket": "price_bucket", "hour_of_day": "hour_of_day", "weekday": "weekday", "device": "device",
}  # fmt: skip
USER_DENSE: tuple[str, ...] = ("user_activity",)
ITEM_DENSE: tuple[str, ...] = ("log_price", "item_popularity", "item_recency", "item_trend")
PAIR_DENSE: tuple[str, ...] = (
    "user_item_count", "user_item_recency", "user_category_count", "user_item_share", *SIGNALS,
)  # fmt: skip
DENSE_FEATURES: tuple[str, ...] = USER_DENSE + ITEM_DENSE + PAIR_DENSE
# The dense column the ranker's stage-1 prior reads (recommender.model.Ranker): log1p of the candidate's place
# in stage 1's merged order.
PRIOR_FEATURE = "s1_position"


def context_codes(timestamp):
    """(hour of day 0..23, weekday 0..6 with Monday = 0) of UTC seconds: the request context training saw."""
    return (timestamp // 3600) % 24, (timestamp // DAY + 3) % 7  # 1970-01-01 was a Thursday


def _stable_hash(value: str) -> int:
    return zlib.crc32(value.encode("utf-8"))


class Vocab:
    """id (str) -> row. Known ids get 0..n-1; unseen ids hash into ``oov_buckets`` rows n..n+oov-1,
    so a cold user or item still gets a (trained, shared) embedding row."""

    def __init__(self, ids, oov_buckets: int):
        if oov_buckets < 1:
            raise ValueError("oov_buckets must be >= 1")
        self.ids = np.asarray(ids, dtype=str)
        self.oov_buckets = int(oov_buckets)
        self._index = pd.Index(self.ids)

    @classmethod
    def fit(cls, values: np.ndarray, *, oov_buckets: int, min_count: int = 1) -> Vocab:
        counts = pd.Series(np.asarray(values, dtype=str)).value_counts(sort=False)
        keep = counts[counts >= min_count].index.to_numpy().astype(str)
        return cls(np.sort(keep), oov_buckets)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        """Rows of the embedding table: known ids + OOV buckets."""
        return len(self.ids) + self.oov_buckets

    def encode(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=str)
        if len(values) >= 4096:  # hash each distinct id once (pandas 3 converts every row to Arrow otherwise)
            codes, uniq = pd.factorize(values)
            return self._encode(np.asarray(uniq, dtype=str))[codes]
        return self._encode(values)

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return dict(zip(self.ids.tolist(), range(len(self.ids)), strict=True))

    def _encode(self, values: np.ndarray) -> np.ndarray:
        if len(values) <= SMALL_LOOKUP:
            rows = dict_lookup(self._positions, values)
        else:
            rows = self._index.get_indexer(values).astype(np.int64)
        unseen = rows < 0
        if unseen.any():
            uniq, inv = np.unique(values[unseen], return_inverse=True)
            hashed = np.array([_stable_hash(v) % self.oov_buckets for v in uniq], dtype=np.int64)
            rows[unseen] = len(self.ids) + hashed[inv]
        return rows

    def is_known(self, values: np.ndarray) -> np.ndarray:
        return self._index.get_indexer(np.asarray(values, dtype=str)) >= 0

    def to_state(self) -> dict:
        return {"ids": self.ids.tolist(), "oov_buckets": self.oov_buckets}

    @classmethod
    def from_state(cls, state: dict) -> Vocab:
        return cls(state["ids"], state["oov_buckets"])


@dataclass
class Batch:
    """A model input. B rows.

    dense_features: (B, len(DENSE_FEATURES)) float32; sparse_features: KeyedJaggedTensor with keys
    :data:`SPARSE_KEYS` (stride B; every key one value per row except the ``recent_items`` bag);
    labels: (B,) float32; weights: (B,) float32.
    """

    dense_features: torch.Tensor
    sparse_features: KeyedJaggedTensor
    labels: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.dense_features.to(device, non_blocking=non_blocking),
            self.sparse_features.to(device=torch.device(device), non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.weights.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Batch:
        return Batch(
            self.dense_features.pin_memory(),
            self.sparse_features.pin_memory(),
            self.labels.pin_memory(),
            self.weights.pin_memory(),
        )


@dataclass
class EncodedExamples:
    """Examples as row indices and a dense matrix, ready to slice into batches.

    sparse: key -> (N,) int64 row indices for the single-valued keys; history: (H,) int64 item rows shared by
    all rows, row r's bag being ``history[hist_start[r]:hist_end[r]]``; dense (N, F_dense) float32.
    """

    sparse: dict[str, np.ndarray]
    history: np.ndarray
    hist_start: np.ndarray
    hist_end: np.ndarray
    dense: np.ndarray
    labels: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray | slice) -> Batch:
        """One `Batch` from the given rows (an index array or a slice)."""
        lengths_bag = (self.hist_end[rows] - self.hist_start[rows]).astype(np.int64)
        B = len(lengths_bag)
        total = int(lengths_bag.sum())
        if total:
            # values of row r: history[start_r : start_r + len_r], gathered in one vectorised step
            offsets = np.cumsum(lengths_bag) - lengths_bag
            gather = np.repeat(self.hist_start[rows] - offsets, lengths_bag) + np.arange(total)
            bag = self.history[gather]
        else:
            bag = np.zeros(0, np.int64)
        values, lengths = [], []
        ones = np.ones(B, np.int32)
        for key in SPARSE_KEYS:
            if key == "recent_items":
                values.append(bag)
                lengths.append(lengths_bag.astype(np.int32))
            else:
                values.append(self.sparse[key][rows])
                lengths.append(ones)
        kjt = KeyedJaggedTensor(
            keys=list(SPARSE_KEYS),
            values=torch.from_numpy(np.concatenate(values)),
            lengths=torch.from_numpy(np.concatenate(lengths)),
            stride=B,
        )
        return Batch(
            dense_features=torch.from_numpy(np.ascontiguousarray(self.dense[rows])),
            sparse_features=kjt,
            labels=torch.from_numpy(np.ascontiguousarray(self.labels[rows])),
            weights=torch.from_numpy(np.ascontiguousarray(self.weights[rows])),
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Batches in order (or shuffled with ``seed``); with ``world_size`` > 1 each rank gets every
        ``world_size``-th batch (and all ranks the same number of batches)."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else None
        starts = list(range(0, n, batch_size))
        if drop_last and starts and n - starts[-1] < batch_size:
            starts.pop()
        if world_size > 1:
            usable = len(starts) - len(starts) % world_size
            starts = starts[:usable][rank::world_size]
        for s in starts:
            rows = order[s : s + batch_size] if order is not None else slice(s, min(s + batch_size, n))
            yield self.batch(rows)


class FeatureSpace:
    """Vocabularies + price buckets: turns `Examples` into `EncodedExamples` / `Batch`es."""

    def __init__(self, config: FeatureConfig, vocabs: dict[str, Vocab], price_edges: np.ndarray):
        self.config = config
        self.vocabs = vocabs  # "user", "item", "category", "brand", "device"
        self.price_edges = np.asarray(price_edges, dtype=np.float64)

    @classmethod
    def fit(cls, examples: Examples, config: FeatureConfig | None = None) -> FeatureSpace:
        """Fit on training examples only (validation ids then fall into the OOV buckets, as at serving)."""
        config = config or FeatureConfig()
        oov = config.oov_buckets
        hist_items = examples.history[_bag_rows(examples)] if len(examples) else np.zeros(0, str)
        vocabs = {
            "user": Vocab.fit(examples.user_id, oov_buckets=oov, min_count=config.min_user_count),
            "item": Vocab.fit(
                np.concatenate([examples.item_id, hist_items]), oov_buckets=oov, min_count=config.min_item_count
            ),
            "category": Vocab.fit(examples.category, oov_buckets=max(oov // 8, 1)),
            "brand": Vocab.fit(examples.brand, oov_buckets=max(oov // 8, 1)),
            "device": Vocab.fit(examples.device, oov_buckets=4),
        }
        prices = examples.price[np.isfinite(examples.price)]
        if len(prices):
            qs = np.linspace(0, 1, config.price_buckets + 1)[1:-1]
            edges = np.unique(np.quantile(prices, qs))
        else:
            edges = np.zeros(0)
        return cls(config, vocabs, edges)

    # --- tables -----------------------------------------------------------------------------------
    def table_sizes(self) -> dict[str, int]:
        """Embedding table name -> rows."""
        return {
            "user": self.vocabs["user"].size,
            "item": self.vocabs["item"].size,
            "category": self.vocabs["category"].size,
            "brand": self.vocabs["brand"].size,
            "price_bucket": self.config.price_buckets + 1,  # + 1: unknown price
            "hour_of_day": 24,
            "weekday": 7,
            "device": self.vocabs["device"].size,
        }

    def table_features(self) -> dict[str, list[str]]:
        """Embedding table name -> feature keys that look it up (order follows :data:`SPARSE_KEYS`)."""
        out: dict[str, list[str]] = {}
        for key in SPARSE_KEYS:
            out.setdefault(TABLE_OF_KEY[key], []).append(key)
        return out

    @property
    def num_dense(self) -> int:
        return len(DENSE_FEATURES)

    # --- encoding ---------------------------------------------------------------------------------
    def price_bucket(self, price: np.ndarray) -> np.ndarray:
        price = np.asarray(price, dtype=np.float64)
        b = np.searchsorted(self.price_edges, np.nan_to_num(price, nan=0.0), side="right")
        return np.where(np.isfinite(price), b, self.config.price_buckets).astype(np.int64)

    def dense(self, ex: Examples) -> np.ndarray:
        """(N, len(DENSE_FEATURES)) float32, columns in :data:`DENSE_FEATURES` order."""
        cap = self.config.recency_cap_days

        def days_since(last: np.ndarray) -> np.ndarray:
            d = (ex.timestamp - last) / DAY
            return np.log1p(np.where(last >= 0, np.clip(d, 0, cap), cap))

        cols = {
            "user_activity": np.log1p(ex.user_activity.astype(np.float64)),
            "log_price": np.log1p(np.nan_to_num(ex.price, nan=0.0).clip(min=0)),
            "item_popularity": np.log1p(ex.item_popularity),
            "item_recency": days_since(ex.item_last_ts),
            "item_trend": np.log1p(ex.item_trend),
            **self._pair_columns(
                ex.timestamp, ex.user_activity, ex.user_item_count, ex.user_item_last_ts, ex.user_category_count
            ),
            **{name: ex.signals[:, j] for j, name in enumerate(SIGNALS)},
        }
        return np.stack([cols[c] for c in DENSE_FEATURES], axis=1).astype(np.float32)

    def _pair_columns(self, timestamp, user_activity, user_item_count, user_item_last_ts, user_category_count) -> dict:
        cap = self.config.recency_cap_days
        d = (timestamp - user_item_last_ts) / DAY
        act = np.asarray(user_activity, dtype=np.float64)
        return {
            "user_item_count": np.log1p(user_item_count),
            "user_item_recency": np.log1p(np.where(user_item_last_ts >= 0, np.clip(d, 0, cap), cap)),
            "user_category_count": np.log1p(user_category_count),
            "user_item_share": user_item_count / np.maximum(act, 1.0),
        }

    def pair_dense(
        self,
        *,
        timestamp: int,
        user_activity: int,
        user_item_count: np.ndarray,
        user_item_last_ts: np.ndarray,
        user_category_count: np.ndarray,
        signals: np.ndarray,
    ) -> np.ndarray:
        """(N, len(PAIR_DENSE)) float32 for one user's N candidates: the same transform as :meth:`dense`
        (the live serving path computes the raw counts from that user's events alone)."""
        cols = self._pair_columns(
            np.int64(timestamp), user_activity, user_item_count, user_item_last_ts, user_category_count
        )
        cols.update({name: signals[:, j] for j, name in enumerate(SIGNALS)})
        return np.stack([cols[c] for c in PAIR_DENSE], axis=1).astype(np.float32)

    def user_dense(self, user_activity: int) -> np.ndarray:
        """(len(USER_DENSE),) float32, as :meth:`dense` computes it."""
        return np.array([np.log1p(float(user_activity))], dtype=np.float32)

    def encode(self, ex: Examples) -> EncodedExamples:
        hours, weekday = context_codes(ex.timestamp)
        sparse = {
            "user_id": self.vocabs["user"].encode(ex.user_id),
            "item_id": self.vocabs["item"].encode(ex.item_id),
            "category": self.vocabs["category"].encode(ex.category),
            "brand": self.vocabs["brand"].encode(ex.brand),
            "price_bucket": self.price_bucket(ex.price),
            "hour_of_day": hours.astype(np.int64),
            "weekday": weekday.astype(np.int64),
            "device": self.vocabs["device"].encode(ex.device),
        }
        history, start, end = self._encode_history(ex)
        return EncodedExamples(
            sparse=sparse,
            history=history,
            hist_start=start,
            hist_end=end,
            dense=self.dense(ex),
            labels=ex.label.astype(np.float32),
            weights=ex.weight.astype(np.float32),
        )

    def _encode_history(self, ex: Examples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Only encode the part of the shared history array the rows use: keeps encoding O(rows * bag).
        if len(ex) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        used = _bag_rows(ex)
        if len(used) == 0:
            z = np.zeros(len(ex), np.int64)
            return np.zeros(0, np.int64), z, z
        uniq, inverse = np.unique(used, return_inverse=True)
        encoded = self.vocabs["item"].encode(ex.history[uniq])
        # remap each row's [start, end) into the compacted array; positions are contiguous per row
        lengths = ex.hist_end - ex.hist_start
        pos = np.searchsorted(uniq, ex.hist_start)
        return encoded, pos.astype(np.int64), (pos + lengths).astype(np.int64)

    def batch(self, ex: Examples) -> Batch:
        return self.encode(ex).batch(slice(0, len(ex)))

    def id_dropout(self, encoded: EncodedExamples, ex: Examples, *, rate: float, seed: int = 0) -> EncodedExamples:
        """Training copy of ``encoded`` where a ``rate`` share of the users and of the items (whole ids, all
        their rows) look up their out-of-vocabulary bucket instead of their own row, so the buckets a cold
        user or a new item falls into at serving are trained rows. The recent-items bag keeps its rows."""
        if rate <= 0 or not len(ex):
            return encoded
        rng = np.random.default_rng(seed)
        sparse = dict(encoded.sparse)
        for key, vocab_name, ids in (("user_id", "user", ex.user_id), ("item_id", "item", ex.item_id)):
            vocab = self.vocabs[vocab_name]
            codes, uniq = pd.factorize(np.asarray(ids, dtype=str))
            drop = rng.random(len(uniq)) < rate
            if not drop.any():
                continue
            bucket = np.array([len(vocab) + _stable_hash(v) % vocab.oov_buckets for v in np.asarray(uniq, str)[drop]])
            per_id = np.full(len(uniq), -1, np.int64)
            per_id[np.flatnonzero(drop)] = bucket
            row = per_id[codes]
            sparse[key] = np.where(row >= 0, row, encoded.sparse[key])
        return dataclasses.replace(encoded, sparse=sparse)

    # --- state ------------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain python + numpy: {"config": {...}, "vocabs": {name: {"ids": [...], "oov_buckets": n}},
        "price_edges": [...], "schema": feature_schema(), "versions": {...}} (JSON-serialisable)."""
        from dataclasses import asdict

        return {
            "config": asdict(self.config),
            "vocabs": {k: v.to_state() for k, v in self.vocabs.items()},
            "price_edges": self.price_edges.tolist(),
            "schema": feature_schema(),
            "versions": library_versions(),
        }

    @classmethod
    def from_state(cls, state: dict) -> FeatureSpace:
        """Raises :class:`SchemaMismatch` when the state was written for other features than this code builds."""
        check_schema(state.get("schema"), state.get("versions"))
        known = {f.name for f in dataclasses.fields(FeatureConfig)}
        return cls(
            FeatureConfig(**{k: v for k, v in state["config"].items() if k in known}),
            {k: Vocab.from_state(v) for k, v in state["vocabs"].items()},
            np.asarray(state["price_edges"], dtype=np.float64),
        )


class SchemaMismatch(ValueError):
    """A saved feature space (or model) was built for features other than the ones this code builds."""


def feature_schema() -> dict[str, list[str]]:
    """Names and order of every model input this code builds (what a saved model must have been trained on)."""
    return {
        "sparse": list(SPARSE_KEYS),
        "user_dense": list(USER_DENSE),
        "item_dense": list(ITEM_DENSE),
        "pair_dense": list(PAIR_DENSE),
        "dense": list(DENSE_FEATURES),
    }


def library_versions() -> dict[str, str]:
    import importlib.metadata

    out = {"torch": torch.__version__}
    for dist in ("torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def check_schema(saved: dict | None, versions: dict | None = None) -> None:
    """Raise :class:`SchemaMismatch` naming the difference when ``saved`` is not :func:`feature_schema`."""
    built_with = f" (saved with {', '.join(f'{k} {v}' for k, v in (versions or {}).items())})" if versions else ""
    if saved is None:
        raise SchemaMismatch(
            "the saved features carry no schema: they come from an older build of the recommender; retrain"
        )
    current = feature_schema()
    for part, names in current.items():
        old = list(saved.get(part, []))
        if old != names:
            missing, extra = [n for n in names if n not in old], [n for n in old if n not in names]
            detail = f"missing {missing}" if missing else ""
            detail += ("; " if detail and extra else "") + (f"unknown {extra}" if extra else "")
            raise SchemaMismatch(
                f"feature schema differs in {part}: {detail or 'same names, other order'}{built_with}; "
                "retrain, or roll back to the code that built it"
            )


def _bag_rows(ex: Examples) -> np.ndarray:
    """Sorted unique positions of ``ex.history`` used by any row's bag."""
    lengths = (ex.hist_end - ex.hist_start).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    # bags of one user at successive times overlap heavily: mark covered positions with a difference array
    marks = np.zeros(len(ex.history) + 1, np.int64)
    np.add.at(marks, ex.hist_start, 1)
    np.add.at(marks, ex.hist_end, -1)
    return np.flatnonzero(np.cumsum(marks[:-1]) > 0)

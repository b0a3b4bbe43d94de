"""Interactions -> examples: labels, negatives, past-only features, splits."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.config import DataConfig
from recommender.data import (
    SMALL_LOOKUP,
    HistoryIndex,
    Interactions,
    ItemTable,
    build_examples,
    next_basket_split,
    split_by_time,
    synthetic_shop,
)


@pytest.fixture(scope="module")
def shop():
    return synthetic_shop(n_users=80, n_items=60, sessions_per_user=5, seed=3)


def _tiny():
    inter = Interactions.from_columns(
        user_id=["u1", "u1", "u1", "u1", "u2", "u2"],
        item_id=["a", "b", "a", "b", "a", "c"],
        event_type=["impression", "impression", "click", "purchase", "impression", "purchase"],
        timestamp=[100, 100, 110, 5000, 200, 300],
        device=["mobile"] * 6,
    )
    items = ItemTable(
        item_id=["a", "b", "c", "d"],
        category=["x", "x", "y", "y"],
        brand=["p", "q", "p", "q"],
        price=[1.0, 2.0, 3.0, np.nan],
        created=[0, 0, 0, 0],
        in_stock=[True, True, True, False],
    )
    return inter, items


@pytest.mark.parametrize("n", [1, 5, SMALL_LOOKUP + 1])  # a set below the bound, np.isin above it
def test_unknown_event_type_is_refused(n):
    types = ["view"] * (n - 1) + ["like"]
    with pytest.raises(ValueError, match=r"unknown event types: \['like'\]"):
        Interactions.from_columns(user_id=["u"] * n, item_id=["i"] * n, event_type=types, timestamp=[1] * n)
    types[-1] = "purchase"
    assert (
        len(Interactions.from_columns(user_id=["u"] * n, item_id=["i"] * n, event_type=types, timestamp=[1] * n)) == n
    )


def test_parquet_round_trip(tmp_path, shop):
    shop.interactions.to_parquet(tmp_path / "i.parquet")
    shop.items.to_parquet(tmp_path / "items.parquet")
    back = Interactions.from_parquet(tmp_path / "i.parquet")
    items = ItemTable.from_parquet(tmp_path / "items.parquet")
    assert len(back) == len(shop.interactions)
    assert (back.user_id == shop.interactions.user_id).all()
    assert back.timestamp.dtype == np.int64 and (back.timestamp == shop.interactions.timestamp).all()
    np.testing.assert_allclose(items.price, shop.items.price)


def test_impression_negatives_skip_clicked_items_and_sampled_ratio():
    inter, items = _tiny()
    cfg = DataConfig(negatives_ratio=0)
    ex = build_examples(inter, items, cfg)
    rows = {
        (u, i, int(t), float(lab)) for u, i, t, lab in zip(ex.user_id, ex.item_id, ex.timestamp, ex.label, strict=True)
    }
    # u1 clicked "a" 10 s after the impression: that impression is not a negative; "b" was not clicked in time
    assert ("u1", "a", 100, 0.0) not in rows
    assert ("u1", "b", 100, 0.0) in rows
    assert ("u1", "a", 110, 1.0) in rows and ("u1", "b", 5000, 1.0) in rows
    assert ex.weight[(ex.item_id == "b") & (ex.label == 1)][0] == pytest.approx(3.0)  # purchase weight
    ex4 = build_examples(inter, items, DataConfig(negatives_ratio=4, impression_negatives=False), seed=1)
    n_pos = int(ex4.label.sum())
    sampled = len(ex4) - n_pos
    assert n_pos == 3 and 0 < sampled <= 4 * n_pos
    # a sampled negative is never the item the user engaged with at that time
    for u, i, t in zip(
        ex4.user_id[ex4.label == 0], ex4.item_id[ex4.label == 0], ex4.timestamp[ex4.label == 0], strict=True
    ):
        assert not ((inter.user_id == u) & (inter.item_id == i) & (inter.timestamp == t)).any()


def test_features_use_only_the_strict_past(shop):
    """Recount every statistic by brute force from events strictly before each example."""
    inter = shop.interactions
    ex = build_examples(inter, shop.items, seed=0)
    hist = np.isin(inter.event_type, DataConfig().history_types)
    rng = np.random.default_rng(0)
    for r in rng.choice(len(ex), 300, replace=False):
        u, i, t = ex.user_id[r], ex.item_id[r], ex.timestamp[r]
        before = hist & (inter.timestamp < t)
        assert ex.user_activity[r] == (before & (inter.user_id == u)).sum()
        assert ex.item_popularity[r] == (before & (inter.item_id == i)).sum()
        pair = before & (inter.user_id == u) & (inter.item_id == i)
        assert ex.user_item_count[r] == pair.sum()
        assert ex.user_item_last_ts[r] == (inter.timestamp[pair].max() if pair.any() else -1)
        bag = ex.history[ex.hist_start[r] : ex.hist_end[r]]
        past_items = inter.item_id[before & (inter.user_id == u)]
        assert len(bag) == min(len(past_items), 20)
        if len(bag):
            assert list(bag) == list(
                past_items[np.argsort(inter.timestamp[before & (inter.user_id == u)], kind="stable")][-len(bag) :]
            )


def test_time_split_has_no_overlap_and_validation_is_later(shop):
    ex = build_examples(shop.interactions, shop.items, seed=0)
    tr, va, cutoff = split_by_time(ex, 0.25)
    assert len(tr) + len(va) == len(ex)
    assert tr.timestamp.max() < cutoff <= va.timestamp.min()
    assert 0.1 < len(va) / len(ex) < 0.4


def test_history_index_answers_for_unknown_users_and_items(shop):
    idx = HistoryIndex(shop.interactions, shop.items)
    q = idx.query(np.array(["nobody", "u1"]), np.array(["i0", "never-seen"]), np.array([2_000_000_000, 2_000_000_000]))
    assert q["user_activity"][0] == 0 and q["user_item_count"][1] == 0 and q["item_popularity"][1] == 0
    assert q["hist_end"][0] - q["hist_start"][0] == 0


def test_next_basket_split_holds_out_each_customers_last_day():
    day = 86_400
    inter = Interactions.from_columns(
        user_id=["a", "a", "a", "b", "c", "c"],
        item_id=["x", "y", "z", "x", "y", "y"],
        event_type=["purchase"] * 6,
        timestamp=[day, day, 3 * day, 2 * day, 2 * day, 5 * day],
    )
    split = next_basket_split(inter)
    assert list(split.users) == ["a", "c"]  # b shopped once: nothing to predict from
    assert [list(b) for b in split.baskets] == [["z"], ["y"]]
    assert list(split.times) == [3 * day, 5 * day]
    # history keeps everything before each customer's last day, and b's only day is dropped too
    assert sorted(zip(split.history.user_id, split.history.timestamp, strict=True)) == [
        ("a", day),
        ("a", day),
        ("c", 2 * day),
    ]


@pytest.mark.parametrize("n", [10, 64, 65, 500, 4096, 5000])
def test_a_lookup_answers_the_same_through_a_dict_or_pandas(n):
    """Up to SMALL_LOOKUP ids go through a dict (a live request's candidates and fresh events), longer arrays
    through pandas: both give each id's row, and -1 (a vocabulary: its out-of-vocabulary row) for an unknown."""
    import pandas as pd

    from recommender.data import EVENT_TYPES, _event_type_codes
    from recommender.features import Vocab

    rng = np.random.default_rng(n)
    known = np.array([f"p{i}" for i in range(6000)])
    m = len(known)
    table = ItemTable(
        item_id=known, category=np.full(m, "c"), brand=np.full(m, "b"), price=np.ones(m),
        created=np.zeros(m, np.int64), in_stock=np.ones(m, bool),
    )  # fmt: skip
    ids = np.where(rng.random(n) < 0.2, np.char.add("x", rng.integers(0, 50, n).astype(str)), rng.choice(known, n))
    expected = pd.Index(known).get_indexer(ids)
    assert (table.lookup(ids) == expected).all()
    assert (table.lookup(ids) >= 0).sum() == (expected >= 0).sum() > 0
    vocab = Vocab(known, oov_buckets=7)
    codes = vocab.encode(ids)
    assert (codes[expected >= 0] == expected[expected >= 0]).all()
    assert ((codes[expected < 0] >= m) & (codes[expected < 0] < m + 7)).all()
    types = rng.choice(np.array([*EVENT_TYPES, "refund"]), n)
    assert (_event_type_codes(types) == pd.Index(EVENT_TYPES).get_indexer(types)).all()
    assert SMALL_LOOKUP >= 500  # a live request's 500 candidates and 100 fresh events take the dict

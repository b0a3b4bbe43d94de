"""Vocabularies (OOV buckets, state round trip) and Batch / KeyedJaggedTensor shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recommender.config import FeatureConfig
from recommender.data import build_examples, split_by_time, synthetic_shop
from recommender.features import (
    DENSE_FEATURES,
    ITEM_DENSE,
    ITEM_SPARSE_KEYS,
    PAIR_DENSE,
    SPARSE_KEYS,
    USER_DENSE,
    USER_SPARSE_KEYS,
    FeatureSpace,
    Vocab,
)


@pytest.fixture(scope="module")
def examples():
    shop = synthetic_shop(n_users=60, n_items=50, sessions_per_user=4, seed=1)
    return build_examples(shop.interactions, shop.items, seed=0)


def test_vocab_known_ids_and_hashed_oov_bucket():
    v = Vocab.fit(np.array(["b", "a", "b", "c"]), oov_buckets=5)
    assert v.size == 3 + 5
    rows = v.encode(np.array(["a", "b", "c", "zzz", "zzz", "yyy"]))
    assert list(rows[:3]) == [0, 1, 2]
    assert 3 <= rows[3] < 8 and rows[3] == rows[4]  # unseen ids hash stably into the OOV rows
    again = Vocab.from_state(json.loads(json.dumps(v.to_state())))
    assert (again.encode(np.array(["a", "zzz", "yyy"])) == rows[[0, 3, 5]]).all()
    assert Vocab.fit(np.array(["a", "a", "b"]), oov_buckets=2, min_count=2).ids.tolist() == ["a"]


def test_feature_sides_partition_the_features():
    assert set(USER_SPARSE_KEYS) | set(ITEM_SPARSE_KEYS) == set(SPARSE_KEYS)
    assert not set(USER_SPARSE_KEYS) & set(ITEM_SPARSE_KEYS)
    assert USER_DENSE + ITEM_DENSE + PAIR_DENSE == DENSE_FEATURES


def test_batch_shapes_and_jagged_recent_items(examples):
    space = FeatureSpace.fit(examples)
    enc = space.encode(examples)
    rows = np.arange(len(examples) - 64, len(examples))  # late rows: users have history
    batch = enc.batch(rows)
    B = 64
    assert batch.dense_features.shape == (B, len(DENSE_FEATURES)) and batch.dense_features.dtype == torch.float32
    assert torch.isfinite(batch.dense_features).all()
    kjt = batch.sparse_features
    assert kjt.keys() == list(SPARSE_KEYS) and kjt.stride() == B
    lengths = kjt.to_dict()
    for key in SPARSE_KEYS:
        if key != "recent_items":
            assert (lengths[key].lengths() == 1).all()
    bag = lengths["recent_items"]
    expected = np.minimum(examples.hist_end[rows] - examples.hist_start[rows], 20)
    assert bag.lengths().tolist() == expected.tolist() and expected.max() > 1
    # the bag holds the encoded history items, oldest first
    r = int(np.argmax(expected))
    want = space.vocabs["item"].encode(examples.history[examples.hist_start[rows[r]] : examples.hist_end[rows[r]]])
    assert bag.to_dense()[r].tolist() == want.tolist()
    sizes = space.table_sizes()
    for key in SPARSE_KEYS:
        from recommender.features import TABLE_OF_KEY

        assert int(lengths[key].values().max()) < sizes[TABLE_OF_KEY[key]]
    assert batch.labels.shape == (B,) and batch.weights.shape == (B,)
    moved = batch.to("cpu")
    assert moved.sparse_features.values().device.type == "cpu" and len(moved) == B


def test_pin_memory_keeps_values(examples):
    if not torch.cuda.is_available():
        pytest.skip("pinned memory needs CUDA")
    batch = FeatureSpace.fit(examples).batch(examples.take(np.arange(8)))
    pinned = batch.pin_memory()
    assert pinned.dense_features.is_pinned() and torch.equal(pinned.labels, batch.labels)


def test_state_round_trip_encodes_identically(examples):
    tr, va, _ = split_by_time(examples)
    space = FeatureSpace.fit(tr, FeatureConfig(oov_buckets=11))
    state = json.loads(json.dumps(space.to_state()))  # plain JSON
    again = FeatureSpace.from_state(state)
    a, b = space.encode(va), again.encode(va)
    for k in a.sparse:
        assert (a.sparse[k] == b.sparse[k]).all()
    np.testing.assert_array_equal(a.dense, b.dense)
    assert again.table_sizes() == space.table_sizes()


def test_unseen_users_and_items_land_in_oov_rows(examples):
    tr, va, _ = split_by_time(examples)
    space = FeatureSpace.fit(tr)
    ex = va.take(np.arange(4))
    ex.user_id = np.array(["brand-new-user"] * 4)
    ex.item_id = np.array(["brand-new-item"] * 4)
    enc = space.encode(ex)
    assert (enc.sparse["user_id"] >= len(space.vocabs["user"])).all()
    assert (enc.sparse["item_id"] >= len(space.vocabs["item"])).all()
    assert (enc.sparse["item_id"] < space.table_sizes()["item"]).all()

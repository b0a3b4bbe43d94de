"""The live path of the pipeline: fresh events change the result, and a request's cost does not grow with
the size of the log (only with this visitor's history)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from recommender.config import Config
from recommender.data import (
    EVENT_TYPES,
    Interactions,
    build_examples,
    next_basket_split,
    synthetic_event_log,
    synthetic_shop,
)
from recommender.features import FeatureSpace, Vocab
from recommender.model import build_model
from recommender.pipeline import PipelineConfig, RecPipeline


def _model(space: FeatureSpace, cfg: Config) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(
        cfg.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    )
    for name, p in model.named_parameters():
        if "embedding_bag" in name:
            torch.nn.init.normal_(p, std=0.2)
    return model.eval()


@pytest.fixture(scope="module")
def shop():
    data = synthetic_shop(n_users=120, n_items=150, seed=0)
    split = next_basket_split(data.interactions)
    cfg = Config()
    examples = build_examples(split.history, data.items, cfg.data, features=cfg.features, seed=0)
    space = FeatureSpace.fit(examples, cfg.features)
    pipe = RecPipeline.build(
        history=split.history,
        items=data.items,
        model=_model(space, cfg),
        space=space,
        config=cfg,
        pipeline_config=PipelineConfig(n_candidates=60, k=10, max_per_category=2),
        device="cpu",
    )
    return data, split, pipe


def _fresh(items, times, types=None) -> Interactions:
    n = len(items)
    return Interactions.from_columns(
        user_id=np.full(n, "anyone"),
        item_id=np.asarray(items, dtype=str),
        event_type=np.asarray(types if types is not None else ["view"] * n),
        timestamp=np.asarray(times, dtype=np.int64),
    )


def test_live_path_equals_the_snapshot_path_without_fresh_events(shop):
    """Stage 1 and every feature rebuilt from the visitor's slice alone: same candidates, same scores."""
    _, split, pipe = shop
    for i in range(25):
        user, now = str(split.users[i]), int(split.times[i])
        for device in ("", "mobile"):
            live = pipe.recommend(user, now=now, device_name=device)
            ref = pipe.recommend_snapshot(user, now=now, device_name=device)
            assert live.item_ids.tolist() == ref.item_ids.tolist()
            assert live.sources == ref.sources and live.n_candidates == ref.n_candidates
            np.testing.assert_allclose(live.scores, ref.scores, rtol=1e-5, atol=1e-5)
        cands = pipe.retriever.candidates(int(pipe.user_index.get_indexer([user])[0]), k_total=60)
        history = pipe.features.index.user_history(user, now)
        u_live, p_live = pipe.features.live_request(user, history, cands.items, now, "mobile")
        u_ref, p_ref = pipe.features.user_request(user, cands.items, now, "mobile")
        np.testing.assert_allclose(p_live.numpy(), p_ref.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(u_live.dense.numpy(), u_ref.dense.numpy(), rtol=1e-6)
        for key, value in u_ref.sparse.items():
            assert u_live.sparse[key].tolist() == value.tolist(), key


def test_a_view_made_seconds_ago_changes_the_recommendations(shop):
    data, split, pipe = shop
    user, now = str(split.users[3]), int(split.times[3])
    before = pipe.recommend(user, now=now, k=10)
    owned = set(pipe.features.index.user_history(user, now).item_id.tolist())
    # an in-stock item from a category the visitor has not touched, viewed twice and added to the cart
    owned_categories = set(data.items.category[data.items.lookup(np.array(sorted(owned)))].tolist())
    row = next(
        r
        for r in range(len(data.items))
        if data.items.in_stock[r] and data.items.category[r] not in owned_categories and r not in before.rows
    )
    item = str(data.items.item_id[row])
    fresh = _fresh([item, item, item], [now - 60, now - 30, now - 20], ["view", "view", "add_to_cart"])
    after = pipe.recommend(user, now=now, k=10, fresh_events=fresh)
    assert after.item_ids.tolist() != before.item_ids.tolist()
    # stage 1 knows it (own items), the feature rows know it (recent bag, repeat count)
    heuristic = pipe.recommend(user, now=now, k=200, n_candidates=200, fresh_events=fresh, use_model=False)
    assert item in heuristic.item_ids.tolist()
    assert heuristic.sources[heuristic.item_ids.tolist().index(item)] == "history"
    history = pipe.features.index.user_history(user, now, fresh)
    snap = pipe.features.index.user_history(user, now)
    assert history.item_id[-1] == item and len(history) == len(snap) + 3
    u, pair = pipe.features.live_request(user, history, np.array([row]), now)
    assert int(u.sparse["recent_items"][-1]) == int(pipe.features.space.vocabs["item"].encode(np.array([item]))[0])
    assert pair[0, 0] == pytest.approx(np.log1p(3.0))  # user_item_count: three fresh events on it
    # events at or after "now" and types outside the history are ignored; a replayed snapshot row counts once
    late = _fresh([item], [now + 5])
    assert pipe.recommend(user, now=now, fresh_events=late).item_ids.tolist() == before.item_ids.tolist()
    replay = _fresh(snap.item_id[-2:], snap.timestamp[-2:], np.array(EVENT_TYPES)[snap.event_type[-2:]])
    assert len(pipe.features.index.user_history(user, now, replay)) == len(snap)
    # a window that starts inside the snapshot's last events: its copies count once, its new rows count
    mixed = _fresh(
        [*snap.item_id[-2:], item],
        [*snap.timestamp[-2:], int(snap.timestamp[-2])],
        [*np.array(EVENT_TYPES)[snap.event_type[-2:]], "view"],
    )
    merged = pipe.features.index.user_history(user, now, mixed)
    assert len(merged) == len(snap) + 1 and item in merged.item_id[-3:].tolist()
    ignored = _fresh([item, item], [now - 9, now - 8], ["impression", "remove_from_cart"])
    assert len(pipe.features.index.user_history(user, now, ignored)) == len(snap)


def test_a_cold_visitor_with_fresh_events_gets_own_and_neighbouring_items(shop):
    data, split, pipe = shop
    now = int(split.times.max())
    item = str(data.interactions.item_id[np.flatnonzero(data.interactions.event_type == "purchase")[0]])
    cold = pipe.recommend("visitor-never-seen", now=now, k=20, n_candidates=100)
    warm = pipe.recommend("visitor-never-seen", now=now, k=20, n_candidates=100, fresh_events=_fresh([item], [now - 5]))
    assert "history" not in cold.sources and "covisit" not in cold.sources
    assert warm.item_ids.tolist() != cold.item_ids.tolist()
    stage1 = pipe.recommend(
        "visitor-never-seen", now=now, k=20, n_candidates=100, fresh_events=_fresh([item], [now - 5]), use_model=False
    )
    assert stage1.item_ids[0] == item and stage1.sources[0] == "history"
    assert "covisit" in stage1.sources  # its neighbours seed co-occurrence


def test_recommend_leaves_the_pipeline_unchanged(shop):
    _, split, pipe = shop
    user, now = str(split.users[5]), int(split.times[5])
    state = (pipe.scorer, pipe.items_time, pipe.scorer.item_cache[0].clone())
    pipe.recommend(user, now=now + 86_400 * 30, fresh_events=_fresh(["i1"], [now]), use_model=False)
    pipe.recommend(user, now=now + 86_400 * 30, fresh_events=_fresh(["i1"], [now]))
    assert pipe.scorer is state[0] and pipe.items_time == state[1]
    assert torch.equal(pipe.scorer.item_cache[0], state[2])


def _log_pipeline(n_events: int) -> tuple[RecPipeline, str, int]:
    """A pipeline over a synthetic log of ``n_events``, plus one visitor whose history is the same in every
    log size (appended after the log's own events)."""
    data = synthetic_event_log(n_events, n_items=2_000, seed=1)
    inter = data.interactions
    h = 40
    rng = np.random.default_rng(7)
    t_end = int(inter.timestamp.max())
    mine = Interactions.from_columns(
        user_id=np.full(h, "the-visitor"),
        item_id=data.items.item_id[rng.integers(0, 2_000, h)],
        event_type=np.array(["view", "click", "add_to_cart", "purchase"])[rng.integers(0, 4, h)],
        timestamp=t_end + 10 + np.arange(h) * 60,
        device=np.full(h, "mobile"),
    )
    merged = Interactions(*(np.concatenate([getattr(inter, f), getattr(mine, f)]) for f in inter.__dataclass_fields__))
    cfg = Config()
    space = FeatureSpace(
        cfg.features,
        {
            "user": Vocab(np.unique(merged.user_id), cfg.features.oov_buckets),
            "item": Vocab(data.items.item_id, cfg.features.oov_buckets),
            "category": Vocab(np.unique(data.items.category), 12),
            "brand": Vocab(np.unique(data.items.brand), 12),
            "device": Vocab(np.array(["desktop", "mobile", "tablet"]), 4),
        },
        np.quantile(data.items.price, np.linspace(0, 1, 17)[1:-1]),
    )
    pipe = RecPipeline.build(
        history=merged,
        items=data.items,
        model=_model(space, cfg),
        space=space,
        config=cfg,
        pipeline_config=PipelineConfig(n_candidates=300),
        device="cpu",
    )
    return pipe, "the-visitor", int(mine.timestamp.max()) + 600


def _peak_bytes(fn) -> int:
    fn()  # warm caches
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_request_memory_does_not_grow_with_the_log():
    """Peak bytes a request allocates (numpy reports to tracemalloc): flat from 20k to 400k logged events
    on the live path; the snapshot path, whose feature step allocates arrays as long as the log, grows."""
    small, user, now_s = _log_pipeline(20_000)
    large, _, now_l = _log_pipeline(400_000)
    fresh = _fresh(["p1", "p2"], [now_s - 30, now_s - 20])
    live_s = _peak_bytes(lambda: small.recommend(user, now=now_s, k=10, fresh_events=fresh))
    live_l = _peak_bytes(lambda: large.recommend(user, now=now_l, k=10, fresh_events=fresh))
    ref_s = _peak_bytes(lambda: small.recommend_snapshot(user, now=now_s, k=10))
    ref_l = _peak_bytes(lambda: large.recommend_snapshot(user, now=now_l, k=10))
    assert live_l < 1.5 * live_s + 64_000, (live_s, live_l)
    assert ref_l > 5 * ref_s, (ref_s, ref_l)  # the measurement sees log-sized allocations when there are some
    assert live_l < ref_l / 10

"""The multi-stage pipeline: retrieve -> rank -> rules -> top-k, timed per stage; the knob sweep."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.config import Config
from recommender.data import build_examples, next_basket_split, synthetic_shop
from recommender.features import FeatureSpace
from recommender.model import build_model
from recommender.pipeline import DeadlineExceeded, PipelineConfig, Recommendations, RecPipeline, apply_rules
from recommender.retrieval import SOURCES


@pytest.fixture(scope="module")
def shop():
    data = synthetic_shop(n_users=120, n_items=150, seed=0)
    split = next_basket_split(data.interactions)
    cfg = Config()
    examples = build_examples(split.history, data.items, cfg.data, features=cfg.features, seed=0)
    space = FeatureSpace.fit(examples, cfg.features)
    torch.manual_seed(0)
    model = build_model(
        cfg.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    )
    for name, p in model.named_parameters():
        if "embedding_bag" in name:
            torch.nn.init.normal_(p, std=0.2)
    pipe = RecPipeline.build(
        history=split.history,
        items=data.items,
        model=model.eval(),
        space=space,
        config=cfg,
        pipeline_config=PipelineConfig(n_candidates=60, k=10, max_per_category=2),
        device="cpu",
    )
    return data, split, pipe


def test_recommend_runs_every_stage_and_times_it(shop):
    data, split, pipe = shop
    user, now = str(split.users[0]), int(split.times[0])
    rec = pipe.recommend(user, now=now)
    assert isinstance(rec, Recommendations)
    assert len(rec.item_ids) == 10 and len(set(rec.item_ids)) == 10
    assert np.all(np.diff(rec.scores) <= 0)  # best first
    assert set(rec.sources) <= set(SOURCES)
    t = rec.timings
    assert min(t.retrieve_ns, t.features_ns, t.rank_ns, t.rules_ns) > 0
    assert t.total_ns >= t.retrieve_ns + t.features_ns + t.rank_ns + t.rules_ns
    # the ranking is the model's: the scores are the scorer's logits for those items
    cands = pipe._live_candidates(pipe.features.index.user_history(user, now), 60, np.zeros(0, np.int64), now)
    at = {int(r): i for i, r in enumerate(cands.items)}
    signals = cands.signals[[at[int(r)] for r in rec.rows]]
    cand_user, pair = pipe.features.user_request(user, rec.rows, now, signals=signals)
    np.testing.assert_allclose(pipe.scorer.score(cand_user, rec.rows, pair).numpy(), rec.scores, rtol=1e-5, atol=1e-5)


def test_rules_stock_cart_and_diversity(shop):
    data, split, pipe = shop
    user, now = str(split.users[1]), int(split.times[1])
    first = pipe.recommend(user, now=now)
    cart = list(first.item_ids[:3])
    rec = pipe.recommend(user, now=now, exclude_item_ids=cart)
    assert not set(cart) & set(rec.item_ids)
    assert pipe.in_stock[rec.rows].all()
    cats = pd.Series(pipe.category[rec.rows]).value_counts()
    assert cats.max() <= 2
    out_of_stock = np.flatnonzero(~pipe.in_stock)
    assert len(out_of_stock) and not set(out_of_stock) & set(rec.rows)


def test_apply_rules_unit():
    rows = np.array([5, 4, 3, 2, 1, 0])
    category = np.array([0, 0, 1, 1, 1, 2])
    in_stock = np.array([True, True, True, True, False, True])
    keep = apply_rules(rows, k=4, in_stock=in_stock, exclude=[3], category=category, max_per_category=1)
    # 5 (cat 2) ok; 4 (cat 1) out of stock; 3 excluded; 2 (cat 1) ok; 1 (cat 0) ok; 0 (cat 0) capped
    assert rows[keep].tolist() == [5, 2, 1]
    assert apply_rules(rows, k=2).tolist() == [0, 1]


def test_knob_sets_how_many_candidates_are_ranked(shop):
    data, split, pipe = shop
    user, now = str(split.users[2]), int(split.times[2])
    small = pipe.recommend(user, now=now, n_candidates=15)
    large = pipe.recommend(user, now=now, n_candidates=100)
    assert small.n_candidates == 15
    assert 15 < large.n_candidates <= 100


def test_cold_visitor_gets_trending_and_session_neighbours(shop):
    data, split, pipe = shop
    now = int(split.times.max())
    rec = pipe.recommend("someone-new", now=now)
    assert len(rec.item_ids) == 10 and set(rec.sources) <= {"trending", "category"}
    viewed = [str(data.interactions.item_id[0])]
    rec2 = pipe.recommend("someone-new", now=now, session_item_ids=viewed, n_candidates=200, k=20)
    assert len(rec2.item_ids) > 0


def test_retrieval_only_pipeline_has_no_rank_stage(shop):
    data, split, pipe = shop
    rec = pipe.recommend(str(split.users[0]), now=int(split.times[0]), use_model=False)
    assert len(rec.item_ids) == 10 and np.isnan(rec.scores).all() and rec.timings.rank_ns == 0


def test_pipeline_from_registry_artifact_scores_like_the_registered_model(shop, tmp_path):
    from recommender.registry import Registry

    data, split, pipe = shop
    reg = Registry(tmp_path)
    cfg = Config()
    version = reg.register(
        weights={"model": pipe.scorer.model.state_dict()},
        vocabularies=pipe.features.space.to_state(),
        config=cfg.to_dict(),
        metrics={"auc": 0.7, "ndcg@10": 0.1},
    )
    reg.promote(version)
    loaded = RecPipeline.from_artifact(
        reg.load(), history=split.history, items=data.items, pipeline_config=pipe.config, device="cpu"
    )
    user, now = str(split.users[3]), int(split.times[3])
    pipe.at_time(now)  # item features as of the same time in both
    loaded.at_time(now)
    a, b = pipe.recommend(user, now=now), loaded.recommend(user, now=now)
    assert a.item_ids.tolist() == b.item_ids.tolist()
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)


def test_an_artifact_built_for_other_features_fails_to_load_with_a_clear_message(shop, tmp_path):
    from recommender.features import feature_schema
    from recommender.registry import ArtifactError, Registry
    from recommender.serving import model_from_artifact

    data, split, pipe = shop
    reg = Registry(tmp_path)
    state = pipe.features.space.to_state()
    assert state["schema"] == feature_schema() and "torch" in state["versions"] and "torchrec" in state["versions"]
    ok = reg.register(
        weights={"model": pipe.scorer.model.state_dict()}, vocabularies=state, config=Config().to_dict(), metrics={}
    )
    model_from_artifact(reg.load(ok))  # loads
    old = dict(state, schema=dict(state["schema"], pair_dense=state["schema"]["pair_dense"][:4]))
    bad = reg.register(
        weights={"model": pipe.scorer.model.state_dict()}, vocabularies=old, config=Config().to_dict(), metrics={}
    )
    with pytest.raises(ArtifactError, match=r"feature schema differs in pair_dense: missing \['s1_history_count'"):
        model_from_artifact(reg.load(bad))
    legacy = {k: v for k, v in state.items() if k != "schema"}
    gone = reg.register(
        weights={"model": pipe.scorer.model.state_dict()}, vocabularies=legacy, config=Config().to_dict(), metrics={}
    )
    with pytest.raises(ArtifactError, match="no schema"):
        RecPipeline.from_artifact(reg.load(gone), history=split.history, items=data.items, device="cpu")


def test_batch_recommendations_match_one_by_one(shop):
    data, split, pipe = shop
    users = [str(u) for u in split.users[:6]] + ["someone-new"]
    now = int(split.times.max())
    pipe.at_time(now)
    batch = pipe.recommend_batch(users, now=now, exclude_item_ids=[[]] * 6 + [[]])
    assert len(batch.results) == len(users) and batch.timings.rank_ns > 0
    for uid, rec in zip(users, batch.results, strict=True):
        single = pipe.recommend(uid, now=now)
        assert rec.user_id == uid and rec.item_ids.tolist() == single.item_ids.tolist()
        np.testing.assert_allclose(rec.scores, single.scores, rtol=1e-4, atol=1e-4)


def test_the_models_explore_boost_reorders_new_items_live_and_in_batch(shop):
    data, split, pipe = shop
    user, now = str(split.users[2]), int(split.times[2])
    pipe.at_time(now)
    plain = pipe.recommend(user, now=now, k=60, n_candidates=60)
    assert plain.new is not None and plain.new.any() and (~plain.new).any()
    boosted = RecPipeline(
        retriever=pipe.retriever,
        features=pipe.features,
        scorer=pipe.scorer,
        user_index=pipe.user_index,
        config=PipelineConfig(n_candidates=60, k=60, max_per_category=None, explore_boost=50.0),
    )
    boosted.items_time = pipe.items_time
    rec = boosted.recommend(user, now=now)
    # a boost this large puts every new item first, each group in the model's own order
    n_new = int(rec.new.sum())
    assert rec.new[:n_new].all() and not rec.new[n_new:].any()
    assert np.all(np.diff(rec.scores[:n_new]) <= 0) and np.all(np.diff(rec.scores[n_new:]) <= 0)
    batch = boosted.recommend_batch([user], now=now).results[0]
    assert batch.item_ids.tolist() == rec.item_ids.tolist()


def test_a_passed_deadline_stops_before_the_next_stage_and_a_later_one_changes_nothing(shop, monkeypatch):
    data, split, pipe = shop
    user, now = str(split.users[0]), int(split.times[0])
    with pytest.raises(DeadlineExceeded) as passed:
        pipe.recommend(user, now=now, deadline_ns=time.perf_counter_ns())
    assert passed.value.stage == "features"  # stage 1 ran; the feature step and the model did not

    # the deadline passes while the features are built: the model is not run
    scored = []
    real_score, real_request = pipe.scorer.score, pipe.features.live_request

    def slow_request(*args, **kwargs):
        time.sleep(0.02)
        return real_request(*args, **kwargs)

    monkeypatch.setattr(pipe.features, "live_request", slow_request)
    monkeypatch.setattr(pipe.scorer, "score", lambda *a, **kw: scored.append(1) or real_score(*a, **kw))
    with pytest.raises(DeadlineExceeded) as passed:
        pipe.recommend(user, now=now, deadline_ns=time.perf_counter_ns() + 10_000_000)
    assert passed.value.stage == "rank" and scored == []

    far = time.perf_counter_ns() + 60 * 10**9
    with_deadline = pipe.recommend(user, now=now, deadline_ns=far)
    without = pipe.recommend(user, now=now)
    assert list(with_deadline.item_ids) == list(without.item_ids) and scored == [1, 1]

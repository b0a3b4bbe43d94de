"""Metrics, baselines and whole-catalogue ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.config import Config
from recommender.data import HistoryIndex, Interactions, ShopData, next_basket_split, synthetic_shop
from recommender.evaluate import (
    CooccurrenceBaseline,
    PopularityBaseline,
    UserHistoryBaseline,
    auc_score,
    evaluate_next_basket,
    log_loss,
    rank_all_items,
    ranking_metrics,
)
from recommender.metrics import best_seller_reach
from recommender.rules import choose_explore_policy

DAY = 86_400


def test_auc_and_log_loss():
    assert auc_score(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc_score(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(auc_score(np.array([1, 1]), np.array([0.1, 0.2])))
    assert log_loss(np.array([1, 0]), np.array([0.9, 0.1])) == pytest.approx(-np.log(0.9))


def test_ranking_metrics_by_hand():
    m = ranking_metrics([["a", "x", "b"], ["y", "z"]], [["a", "b"], ["q"]], k=3)
    assert m["recall@3"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["hr@3"] == pytest.approx(0.5)
    ideal = 1 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx(((1 + 1 / np.log2(4)) / ideal) / 2)


def test_best_seller_reach_by_hand():
    m = best_seller_reach([["a", "x", "b", "late"], ["a", "y"], []], ["a", "b", "c"], k=3)
    assert m["best_sellers@3"] == pytest.approx(3 / 5)  # a, b and a of the places a, x, b, a, y
    assert m["distinct@3"] == 4  # a, x, b, y ("late" is past k)
    assert best_seller_reach([], ["a"], k=3) == {"best_sellers@3": None, "distinct@3": 0}


def _baskets() -> Interactions:
    rows = [("a", "milk", 1), ("a", "bread", 1), ("a", "milk", 2), ("a", "eggs", 2),
            ("b", "milk", 1), ("b", "jam", 1), ("c", "tea", 3), ("c", "tea", 4)]  # fmt: skip
    return Interactions.from_columns(
        user_id=[r[0] for r in rows], item_id=[r[1] for r in rows],
        event_type=["purchase"] * len(rows), timestamp=[r[2] * DAY for r in rows],
    )  # fmt: skip


def test_baselines():
    h = _baskets()
    pop = PopularityBaseline(h, ["purchase"])
    assert pop.rank("anyone", 0, 2) == ["milk", "tea"]
    own = UserHistoryBaseline(h, ["purchase"])
    assert own.rank("a", 0, 3) == ["milk", "eggs", "bread"]  # by frequency, ties most recent first
    assert own.rank("new", 0, 1) == ["milk"]  # unknown user -> popularity
    co = CooccurrenceBaseline(h, ["purchase"])
    ranked = co.rank("b", 0, 4)  # b bought milk + jam: milk co-occurs with bread, eggs
    assert set(ranked[:3]) == {"bread", "eggs", "jam"} or set(ranked[:2]) <= {"bread", "eggs", "jam", "milk"}
    assert len(ranked) == 4 and len(set(ranked)) == 4


@pytest.fixture(scope="module")
def grocery():
    """Synthetic purchases only (next-basket shape): users re-buy favourites."""
    shop = synthetic_shop(n_users=150, n_items=80, sessions_per_user=6, seed=4)
    keep = np.flatnonzero(shop.interactions.event_type == "purchase")
    inter = shop.interactions.take(keep)
    inter.timestamp = (inter.timestamp // DAY) * DAY
    return ShopData(inter, shop.items)


def _cfg() -> Config:
    cfg = Config()
    cfg.data.positive_weights = {"purchase": 1.0}
    cfg.train.epochs = 2
    cfg.train.batch_size = 256
    cfg.train.progress = False
    cfg.train.threads = 1
    return cfg


def test_rank_all_items_and_next_basket_report(grocery, tmp_path):
    cfg = _cfg()
    report = evaluate_next_basket(
        grocery, config=cfg, eval_users=40, progress=False, n_candidates=30, catalogue_users=5
    )
    assert set(report["methods"]) == {
        "popularity", "user_history", "cooccurrence", "tifu_knn", "retrieval_only", "dlrm_pipeline",
        "dlrm_pipeline_no_slots", "dlrm_pipeline_diverse", "dlrm"
    }  # fmt: skip
    # the explore policy the pipeline serves is the one chosen on the validation rows, and it is reported
    val = report["explore_validation"]
    assert (report["explore_slots"], report["explore_boost"]) == choose_explore_policy(val) and val["slots"][0] == 0
    assert len(val["boosts"]) == len(val["boost_explore_recall"]) > 0 and "popularity_explore_recall" in val
    ex = report["dlrm_vs_best_explore_recall"]
    assert ex["best"] == max(
        ("popularity", "user_history", "cooccurrence", "tifu_knn", "retrieval_only"),
        key=lambda m: report["methods"][m]["explore_recall"],
    )
    assert ex["paired_bootstrap"]["rel_lo"] <= ex["paired_bootstrap"]["rel"] <= ex["paired_bootstrap"]["rel_hi"]
    diag = report["explore_diagnosis"]["dlrm_pipeline"]
    assert 0 < diag["new_candidates_per_user"] <= diag["candidates_per_user"] <= 30
    for name in ("tifu_knn", "retrieval_only", "dlrm_pipeline"):
        row = report["methods"][name]
        lo, hi = row["recall@10_ci"]
        assert lo <= row["recall@10"] <= hi and lo < hi
        assert sum(s["users"] for s in row["segments"].values()) == 40
        assert 0 <= row["repeat_recall"] <= 1 and 0 <= row["explore_recall"] <= 1
    pb = report["dlrm_vs_retrieval_only_ndcg@10"]
    assert pb["rel_lo"] <= pb["rel"] <= pb["rel_hi"] and 0 <= pb["p_not_better"] <= 1
    for row in report["methods"].values():
        assert 0 <= row["recall@10"] <= 1 and 0 <= row["ndcg@10"] <= 1 and row["users"] > 0
    assert report["methods"]["dlrm"]["users"] == 5 and report["methods"]["dlrm_pipeline"]["users"] == 40
    assert report["training_rows"] == "stage-1 candidates" and 0 <= report["valid_auc"] <= 1
    pipe = report["methods"]["dlrm_pipeline"]
    assert 0 < pipe["candidates_per_user"] <= 30 and pipe["recall@10"] <= pipe["candidate_recall"] + 1e-9
    assert report["dlrm_vs_best_recall@10"]["best_baseline"] in {"popularity", "user_history", "cooccurrence"}
    assert report["dlrm_vs_best_recall@10"]["method"] == "dlrm_pipeline"
    json.dumps(report)  # serialisable


def test_rank_all_items_returns_k_catalogue_items(grocery):
    from recommender.data import build_examples
    from recommender.train import train

    split = next_basket_split(grocery.interactions)
    ex = build_examples(split.history, grocery.items, _cfg().data)
    res = train(ex, _cfg())
    index = HistoryIndex(split.history, grocery.items, history_types=("purchase",))
    users = list(split.users[:3]) + ["cold-start-user"]
    ranked = rank_all_items(res.model, res.features, users, index=index, times=int(split.times.max()), k=10)
    assert len(ranked) == 4
    catalogue = set(grocery.items.item_id.tolist())
    for r in ranked:
        assert len(r) == 10 and len(set(r)) == 10 and set(r) <= catalogue


def test_tifu_knn_blends_own_decayed_repeats_with_neighbours():
    """Own repeats dominate (alpha); a recent basket outweighs an old one; a neighbour's item fills in."""
    from recommender.baselines import TifuKnnBaseline

    day = DAY
    rows = [  # user, item, day
        ("a", "old", 0), ("a", "x", 1), ("a", "recent", 9), ("a", "recent", 10),
        ("b", "x", 0), ("b", "recent", 1), ("b", "neighbour-only", 2),
        ("c", "z", 0),
    ]  # fmt: skip
    inter = Interactions.from_columns(
        user_id=[r[0] for r in rows],
        item_id=[r[1] for r in rows],
        event_type=["purchase"] * len(rows),
        timestamp=[r[2] * day for r in rows],
    )
    tifu = TifuKnnBaseline(inter, neighbours=1, alpha=0.7, group_size=7)
    ranked = tifu.rank("a", 11 * day, k=5)
    assert ranked[0] == "recent" and ranked.index("x") < ranked.index("old")
    assert "neighbour-only" in ranked and ranked.index("neighbour-only") > ranked.index("old")
    assert tifu.rank("someone-new", 0, k=2) == tifu.rank_many(["someone-new"], [0], k=2)[0]


def test_time_split_tests_each_known_user_on_what_they_engage_with_after_the_cut():
    """The shop's own traffic spans minutes of sessions, not shopping days: the test is a time cut."""
    from recommender.data import time_split

    rows = [("a", "i1", "view", 10), ("a", "i1", "click", 11), ("b", "i2", "click", 12), ("a", "i3", "click", 20),
            ("a", "i4", "add_to_cart", 21), ("b", "i5", "impression", 20), ("c", "i3", "click", 22),
            ("b", "i1", "purchase", 23), ("a", "i5", "click", 24)]  # fmt: skip
    u, i, e, t = zip(*rows, strict=True)
    log = Interactions.from_columns(user_id=np.array(u), item_id=np.array(i), event_type=np.array(e),
                                    timestamp=np.array(t))  # fmt: skip
    split = time_split(log, positive_types=["click", "add_to_cart", "purchase"], test_fraction=0.7)
    cut = int(split.times[0])
    assert cut == 20 and (split.times == cut).all()
    assert (split.history.timestamp < cut).all() and len(split.history) == 3
    # c has no history before the cut (nothing to rank from); b's impression is no positive
    assert split.users.tolist() == ["a", "b"]
    assert [b.tolist() for b in split.baskets] == [["i3", "i4", "i5"], ["i1"]]


def test_cli_evaluates_a_shop_export_after_a_time_cut(tmp_path, capsys):
    from recommender.evaluate import main

    shop = synthetic_shop(n_users=60, n_items=60, sessions_per_user=4, seed=2)
    shop.interactions.to_parquet(tmp_path / "interactions.parquet")
    shop.items.to_parquet(tmp_path / "items.parquet")
    out = tmp_path / "eval.json"
    argv = ["--snapshot", str(tmp_path), "--eval-users", "0", "--candidates", "30", "--epochs", "1", "--threads", "1",
            "--min-steps", "0", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["source"]["snapshot"] == str(tmp_path) and report["tested_users"] >= 20
    assert {"retrieval_only", "dlrm_pipeline", "tifu_knn", "popularity"} <= set(report["methods"])
    printed = capsys.readouterr().out
    assert "tested users" in printed and "dlrm_pipeline vs retrieval_only on ndcg@10" in printed

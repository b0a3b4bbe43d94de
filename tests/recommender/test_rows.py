"""The ranker's training rows: stage 1's candidates (the serving code, signals included), labelled by the
next basket; one function for the shop's retrain, the evaluation and the sweep."""

from __future__ import annotations

import numpy as np
import pytest

from recommender import rows as rows_module
from recommender.config import DAY, Config
from recommender.data import HistoryIndex, ShopData, synthetic_shop
from recommender.retrieval import SIGNALS
from recommender.rows import candidate_cutoffs, candidate_examples, training_rows


@pytest.fixture(scope="module")
def grocery():
    shop = synthetic_shop(n_users=150, n_items=80, sessions_per_user=6, seed=4)
    keep = np.flatnonzero(shop.interactions.event_type == "purchase")
    inter = shop.interactions.take(keep)
    inter.timestamp = (inter.timestamp // DAY) * DAY
    return ShopData(inter, shop.items)


def _cfg() -> Config:
    cfg = Config()
    cfg.data.positive_weights = {"purchase": 1.0}
    cfg.train.epochs = 1
    cfg.train.batch_size = 256
    cfg.train.progress = False
    cfg.train.threads = 1
    return cfg


def test_candidate_rows_label_stage1_output_by_the_next_basket(grocery):
    inter = grocery.interactions
    cut = int(np.quantile(inter.timestamp, 0.7)) // DAY * DAY
    index = HistoryIndex(inter, grocery.items, history_types=("purchase",))
    ex = candidate_examples(
        inter, grocery.items, _cfg(), index=index, cutoffs=[cut], horizon_s=7 * DAY, n_candidates=25
    )
    assert len(ex) and (ex.timestamp >= cut).all() and 0 < ex.label.sum() < len(ex)
    for u in np.unique(ex.user_id)[:10]:
        mine = ex.user_id == u
        t = ex.timestamp[mine][0]
        assert (ex.timestamp[mine] == t).all() and mine.sum() <= 25 and t < cut + 7 * DAY
        assert (inter.timestamp[inter.user_id == u] < t).any()  # stage 1 had this user's past
        bought = set(inter.item_id[(inter.user_id == u) & (inter.timestamp == t)].tolist())
        labelled = {i for i, y in zip(ex.item_id[mine], ex.label[mine], strict=True) if y == 1}
        assert labelled == bought & set(ex.item_id[mine])
    # stage 1's signals travel with the rows: own items carry their repeat count, others none
    own = ex.user_item_count > 0
    count = ex.signals[:, SIGNALS.index("s1_history_count")]
    assert own.any() and (count[own] > 0).all() and (count[~own] == 0).all()
    assert (ex.signals[:, SIGNALS.index("days_since_bought")][own] < np.log1p(365.0)).all()


def test_cutoffs_fit_the_log_length(grocery):
    cfg = _cfg()
    cuts, cutoff, horizon = candidate_cutoffs(grocery.interactions, cfg)
    assert len(cuts) == cfg.data.candidate_cutoffs and cuts == sorted(cuts, reverse=True)
    assert cutoff % DAY == 0 and horizon % DAY == 0 and cuts[0] + horizon == cutoff
    # a log of one afternoon still gets cutoffs (horizon shrinks to fit)
    short = grocery.interactions.take(np.arange(len(grocery.interactions)))
    short.timestamp = 1_700_000_000 + np.arange(len(short)) * 2
    cuts, cutoff, horizon = candidate_cutoffs(short, cfg)
    assert 0 < horizon < DAY and cuts[-1] > short.timestamp.min()


def test_training_rows_fall_back_to_pointwise_when_the_log_is_too_short():
    shop = synthetic_shop(n_users=5, n_items=20, sessions_per_user=1, seed=0)
    rows = training_rows(shop.interactions, shop.items, _cfg())
    assert rows.kind == "pointwise" and len(rows.train)


def test_the_shops_retrain_and_the_evaluation_build_rows_with_the_same_function(grocery, monkeypatch):
    """train_on_interactions (the shop's retrain) and evaluate_next_basket go through rows.training_rows,
    with the row settings of the config they are given."""
    from recommender import evaluate as evaluate_module
    from recommender import train as train_module

    calls = []
    real = rows_module.training_rows

    def spy(history, items, config, **kw):
        calls.append(config)
        return real(history, items, config, **kw)

    monkeypatch.setattr(train_module, "training_rows", spy)
    monkeypatch.setattr(evaluate_module, "training_rows", spy)
    cfg = _cfg()
    result = train_module.train_on_interactions(grocery, cfg)
    evaluate_module.evaluate_next_basket(grocery, config=_cfg(), eval_users=10, progress=False, n_candidates=200)
    assert len(calls) == 2
    shop_cfg, eval_cfg = calls
    assert shop_cfg.data == eval_cfg.data and shop_cfg.features == eval_cfg.features
    assert result.metrics["training_rows"] == "stage-1 candidates"
    # the shipped model is refit on all rows (training + validation) after validation
    assert result.metrics["refit_examples"] == result.metrics["train_examples"] + result.metrics["valid_examples"]
    assert result.validated is not None and result.validated.model is not result.model


def test_exposure_weights_by_hand():
    # positives shown 0, 3 and 99 times in the label window weigh 1, 1/2 and 1/10 before scaling to mean 1
    w = rows_module.exposure_weights(np.array([0, 3, 99, 8]), np.array([1, 1, 1, 0]), 0.5, 10.0)
    np.testing.assert_allclose(w, [1 / 0.5333333, 0.5 / 0.5333333, 0.1 / 0.5333333, 1.0], rtol=1e-6)
    # the cap bounds a rarely shown item's weight; negatives always weigh 1; no positives: all 1
    w = rows_module.exposure_weights(np.array([0, 999, 5]), np.array([1, 1, 0]), 1.0, 1.5)
    np.testing.assert_allclose(w, [1.5, 0.001 / 0.5005, 1.0], rtol=1e-6)
    assert (rows_module.exposure_weights(np.array([4, 2]), np.array([0, 0]), 0.5, 10.0) == 1).all()


def test_candidate_rows_weigh_a_positive_by_how_often_its_item_was_shown_in_the_label_window():
    shop = synthetic_shop(n_users=150, n_items=80, sessions_per_user=6, seed=4)
    inter = shop.interactions
    cfg = Config()
    cut = int(np.quantile(inter.timestamp, 0.6))
    horizon = 5 * DAY
    index = HistoryIndex(inter, shop.items, history_types=cfg.data.history_types)

    def rows(power):
        cfg.data.exposure_power = power
        return candidate_examples(inter, shop.items, cfg, index=index, cutoffs=[cut], horizon_s=horizon)

    plain, weighted = rows(0.0), rows(0.5)
    assert (plain.weight == 1).all()
    # the same rows, labels and features; only the positives' weights move
    assert np.array_equal(plain.item_id, weighted.item_id) and np.array_equal(plain.label, weighted.label)
    pos = weighted.label == 1
    assert pos.sum() > 20 and (weighted.weight[~pos] == 1).all()
    shown = (inter.event_type == "impression") & (inter.timestamp >= cut) & (inter.timestamp < cut + horizon)
    imps = np.array([np.count_nonzero(shown & (inter.item_id == i)) for i in weighted.item_id[pos]])
    raw = (1.0 + imps) ** -0.5
    np.testing.assert_allclose(weighted.weight[pos], np.minimum(raw / raw.mean(), 10.0), rtol=1e-5)
    assert len(np.unique(imps)) > 3  # the log shows items unevenly, so the weights differ
    # a log without impressions (a retail log) is left as it was
    bought = inter.take(np.flatnonzero(inter.event_type != "impression"))
    idx = HistoryIndex(bought, shop.items, history_types=cfg.data.history_types)
    cfg.data.exposure_power = 0.5
    retail = candidate_examples(bought, shop.items, cfg, index=idx, cutoffs=[cut], horizon_s=horizon)
    assert len(retail) and (retail.weight == 1).all()

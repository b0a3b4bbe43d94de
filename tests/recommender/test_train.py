"""End-to-end training on a synthetic shop with a planted signal."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.config import Config
from recommender.data import HistoryIndex, build_examples, examples_for, split_by_time, synthetic_shop
from recommender.evaluate import predict
from recommender.holdout import make_holdout, served_ranking
from recommender.metrics import auc_score, paired_bootstrap
from recommender.retrieval import SIGNALS, absent_signals
from recommender.rows import training_rows
from recommender.train import (
    TrainResult,
    main,
    small_log,
    stage1_teacher,
    step_schedule,
    train,
    train_on_interactions,
)


def tiny_config(epochs: int = 3, seed: int = 0) -> Config:
    cfg = Config()
    cfg.train.epochs = epochs
    cfg.train.batch_size = 256
    cfg.train.seed = seed
    cfg.train.progress = False
    cfg.train.threads = 1  # shared CI boxes: one intra-op thread avoids OpenMP spin under load
    cfg.train.min_steps = 0  # the schedule these tests set (test_the_shops_default_settings_... checks the default)
    return cfg


@pytest.fixture(scope="module")
def shop():
    return synthetic_shop(n_users=250, n_items=150, sessions_per_user=6, seed=0)


@pytest.fixture(scope="module")
def result(shop) -> TrainResult:
    return train_on_interactions(shop, tiny_config())


def test_planted_signal_is_learned(result):
    m = result.metrics
    # validation rows are stage 1's candidates (mostly of the user's favourite category already): a harder
    # ranking than telling clicks from random catalogue items
    assert m["training_rows"] == "stage-1 candidates" and m["valid_auc"] > 0.65, m
    assert m["train_loss"][-1] < m["train_loss"][0]
    assert result.examples_per_s > 0 and result.wall_time_s > 0
    assert not any("Fused" in type(mod).__name__ for mod in result.model.modules())  # plain EBC for serving


def test_a_small_log_still_gets_enough_updates():
    """A demo's first snapshot holds ~4,500 candidate rows: 2,048 rows a batch for three epochs would be nine
    updates. The schedule shrinks the batch (not below 64 rows), then adds epochs, up to ``min_steps`` updates;
    a large log keeps the configured schedule. The embedding tables' rate follows the batch's square root."""
    tc = Config().train
    for n in (4_470, 1_411, 200, 22_400):
        s = step_schedule(n, tc)
        assert -(-n // s.batch_size) * s.epochs >= tc.min_steps, (n, s)
        assert 64 <= s.batch_size <= tc.batch_size and s.epochs >= tc.epochs
        assert s.embedding_lr == pytest.approx(tc.embedding_lr * (s.batch_size / tc.batch_size) ** 0.5)
    assert step_schedule(200, tc).batch_size == 64
    assert step_schedule(200, tc).embedding_lr == pytest.approx(tc.embedding_lr / 32**0.5)
    assert step_schedule(2_000_000, tc) == tc
    assert tc.batch_size == Config().train.batch_size  # the config itself is left as it was


def test_the_shops_default_settings_learn_a_small_log(shop):
    """The retrain's own settings (batch 2,048, three epochs) on a small shop-shaped log: with a handful of
    updates the ranker stayed at its random initialisation (validation AUC 0.52 here, 0.46 on a demo's first
    snapshot); with enough updates it learns the planted taste, and the served pipeline is not significantly
    worse than stage 1's own order on the same holdout users."""
    cfg = Config()
    cfg.train.progress, cfg.train.threads = False, 1
    r = train_on_interactions(shop, cfg, refit=False)
    assert r.metrics["steps"] >= cfg.train.min_steps and r.metrics["batch_size"] < cfg.train.batch_size
    assert r.metrics["valid_auc"] > 0.65, r.metrics
    holdout = make_holdout(shop, r.metrics["split_cutoff"], cfg, users=0)
    ranked = served_ranking(holdout, r.model, r.features, cfg)
    stage1 = served_ranking(holdout, None, r.features, cfg, use_model=False)
    vs = paired_bootstrap(ranked["per_user_ndcg"], stage1["per_user_ndcg"])
    assert len(holdout.users) >= 100 and vs["diff_hi"] >= 0, vs


def test_same_seed_same_model(shop):
    ex = build_examples(shop.interactions, shop.items, seed=0)
    tr, va, _ = split_by_time(ex)
    tr = tr.take(np.arange(min(len(tr), 3000)))
    a = train(tr, tiny_config(epochs=1), valid=va)
    b = train(tr, tiny_config(epochs=1), valid=va)
    assert a.metrics["train_loss"] == b.metrics["train_loss"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    c = train(tr, tiny_config(epochs=1, seed=1), valid=va)
    assert c.metrics["train_loss"] != a.metrics["train_loss"]


def test_unseen_users_and_items_still_score(shop, result):
    index = HistoryIndex(shop.interactions, shop.items)
    items = np.array(["i1", "i2", "new-item-never-seen", "i3"])
    ex = examples_for(index, np.full(4, "new-user-never-seen"), items, 1_800_000_000, device="mobile")
    probs = predict(result.model, result.features.encode(ex))
    assert probs.shape == (4,) and np.isfinite(probs).all() and ((probs > 0) & (probs < 1)).all()


def test_cli_writes_figures(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert (
        main(
            [
                "--synthetic-users",
                "120",
                "--epochs",
                "1",
                "--batch-size",
                "512",
                "--no-progress",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["examples_per_s"] > 0 and 0 <= report["valid_auc"] <= 1
    assert "examples/s" in capsys.readouterr().out


def test_id_dropout_trains_the_rows_a_cold_user_looks_up(shop):
    """Without id dropout no training row looks up an OOV bucket (every user has many rows), so a cold user's
    bucket keeps its random initial values; with it, that bucket row is trained and differs."""
    ex = build_examples(shop.interactions, shop.items, seed=0)
    tr, va, _ = split_by_time(ex)
    cold = "a-visitor-never-seen"
    runs = {}
    for rate in (0.0, 0.2):
        cfg = tiny_config(epochs=1)
        cfg.features.id_dropout = rate
        runs[rate] = train(tr, cfg, valid=va)
    space = runs[0.0].features
    row = int(space.vocabs["user"].encode(np.array([cold]))[0])
    assert row >= len(space.vocabs["user"])  # an OOV bucket
    table = "dlrm.sparse_arch.embedding_bag_collection.embedding_bags.t_user.weight"
    untrained = runs[0.0].model.state_dict()[table][row]
    trained = runs[0.2].model.state_dict()[table][row]
    torch.manual_seed(0)  # the same seeded initialisation as training: the no-dropout row never moved
    known = int(space.vocabs["user"].encode(np.array([str(tr.user_id[0])]))[0])
    assert not torch.equal(runs[0.0].model.state_dict()[table][known], runs[0.2].model.state_dict()[table][known])
    assert not torch.allclose(untrained, trained)
    # the cold user's scores come from that trained row: they change with it
    idx = HistoryIndex(shop.interactions, shop.items)
    rows = examples_for(idx, np.full(5, cold), shop.items.item_id[:5], np.full(5, int(tr.timestamp.max())))
    p0 = predict(runs[0.0].model, space.encode(rows))
    p1 = predict(runs[0.2].model, runs[0.2].features.encode(rows))
    assert not np.allclose(p0, p1)


def test_stage1_teacher_is_the_positive_rate_by_position():
    """Two requests whose baskets sit near the top of stage 1's order: the fitted log-odds fall with the
    place (the ``s1_position`` signal), and (a logistic fit with an intercept) the probabilities sum to the
    positives."""
    n = 40
    signals = absent_signals(2 * n)
    signals[:, SIGNALS.index("s1_position")] = np.log1p(np.tile(np.arange(n), 2))
    rows = SimpleNamespace(label=np.zeros(2 * n, np.float32), signals=signals)
    rows.label[[0, 1, 3, 7, n, n + 2, n + 5, n + 30]] = 1.0
    logits, fit = stage1_teacher(rows)
    assert fit["b"] < 0 and logits.shape == (2 * n,)
    assert np.all(np.diff(logits[:n]) < 0) and np.allclose(logits[:n], logits[n:])
    assert (1 / (1 + np.exp(-logits))).sum() == pytest.approx(rows.label.sum(), rel=1e-3)


@pytest.fixture(scope="module")
def rows(shop):
    return training_rows(shop.interactions, shop.items, tiny_config())


def test_the_untrained_ranker_is_stage_1s_order(rows):
    """Before any update the ranker's logit is exactly the stage-1 prior: within every request it falls with
    the candidate's place in stage 1's order, and the served scorer (folded, int8 too) adds the same prior.
    Without the prior an untrained ranker orders candidates at random (AUC about 0.5)."""
    va = rows.valid
    small = tiny_config()
    small.train.min_steps = 10_000  # these rows count as a small log
    untrained = train(rows.train, small, valid=va, stage1_order=True, steps=0)
    fit = untrained.metrics["stage1_prior"]
    assert fit["b"] < 0 and untrained.metrics["best_steps"] == 0 and "warm_start_steps" not in untrained.metrics
    probs = predict(untrained.model, untrained.features.encode(va))
    place = va.signals[:, SIGNALS.index("s1_position")]
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-(fit["a"] + fit["b"] * place))), rtol=1e-5, atol=1e-7)
    position = pd.DataFrame({"u": va.user_id, "t": va.timestamp}).groupby(["u", "t"], sort=False).cumcount()
    np.testing.assert_allclose(place, np.log1p(position.to_numpy()), atol=1e-6)
    stage1_auc = auc_score(va.label, -position.to_numpy())
    assert stage1_auc > 0.6 and untrained.metrics["valid_auc"] == pytest.approx(stage1_auc, abs=1e-6)
    cfg = tiny_config()
    cfg.train.stage1_start = False
    random_start = train(rows.train, cfg, valid=va, stage1_order=True, steps=0)
    assert "stage1_prior" not in random_start.metrics and random_start.metrics["valid_auc"] < stage1_auc - 0.05


def test_a_large_log_fits_the_network_to_stage_1s_order_first(rows):
    """A large log (here: the same rows with a low ``min_steps``) gets no prior: the whole network is fitted
    to stage 1's order (the warm start) and ranks about as well as that order before any label is learnt (a
    randomly initialised ranker: AUC about 0.5)."""
    cfg = tiny_config()
    cfg.train.min_steps = 1
    assert not small_log(len(rows.train), cfg.train)
    cfg.train.min_steps = 10_000
    assert small_log(len(rows.train), cfg.train)
    cfg.train.min_steps = 1
    va = rows.valid
    position = pd.DataFrame({"u": va.user_id, "t": va.timestamp}).groupby(["u", "t"], sort=False).cumcount()
    stage1_auc = auc_score(va.label, -position.to_numpy())
    warm = train(rows.train, cfg, valid=va, stage1_order=True, steps=0)
    assert warm.metrics["warm_start_steps"] > 0 and "stage1_prior" not in warm.metrics
    assert not warm.model.stage1_prior.any() and warm.model.dlrm.over_arch.model[-1].weight.abs().sum() > 0
    assert stage1_auc > 0.6 and warm.metrics["valid_auc"] > stage1_auc - 0.03, (warm.metrics, stage1_auc)


def test_early_stopping_keeps_the_best_check_and_the_refit_trains_as_many_passes(result):
    """The shop's retrain measures the validation log loss during the run (the untrained ranker included)
    and keeps the best check's model; the refit on all rows makes as many passes over its rows."""
    m = result.metrics
    checks = m["validation_checks"]
    assert checks[0][0] == 0 and len(checks) >= 10
    best_at, best_loss = min(checks, key=lambda c: c[1])
    assert m["best_steps"] == best_at and m["valid_logloss"] == pytest.approx(best_loss, abs=1e-4)
    batch = step_schedule(m["refit_examples"], tiny_config().train).batch_size
    assert m["refit_steps"] == round(m["epochs_trained"] * m["refit_examples"] / batch)

"""The promotion gate on a fresh holdout through the served pipeline: a challenger trained on shuffled labels
is refused against the champion on the same users; a sound challenger passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recommender.config import Config
from recommender.data import synthetic_shop
from recommender.gate import holdout_gate
from recommender.holdout import make_holdout
from recommender.rows import training_rows
from recommender.train import train_rows


def _cfg() -> Config:
    cfg = Config()
    cfg.train.epochs = 3
    cfg.train.batch_size = 256
    cfg.train.progress = False
    cfg.train.threads = 1
    cfg.train.stage1_start, cfg.train.validation_checks = False, 0  # see trained()
    return cfg


@pytest.fixture(scope="module")
def trained():
    """A sound model, one trained on shuffled labels and one on inverted labels. The gate is under test, not
    training's guards: all three train without the start from stage 1's order and without early stopping,
    which would keep a model that learnt nothing (or the opposite) from its labels close to stage 1's order."""
    shop = synthetic_shop(n_users=400, n_items=200, sessions_per_user=8, seed=3)
    cfg = _cfg()
    rows = training_rows(shop.interactions, shop.items, cfg)
    good = train_rows(rows, cfg, refit=False)
    shuffled_train = rows.train.take(np.arange(len(rows.train)))
    shuffled_train.label = np.random.default_rng(0).permutation(shuffled_train.label)
    bad = train_rows(dataclasses.replace(rows, train=shuffled_train), cfg, refit=False)
    inverted_train = rows.train.take(np.arange(len(rows.train)))
    inverted_train.label = 1.0 - inverted_train.label
    inverted = train_rows(dataclasses.replace(rows, train=inverted_train), cfg, refit=False)
    holdout = make_holdout(shop, rows.cutoff, cfg, users=0)
    return cfg, holdout, good, bad, inverted


def test_a_challenger_trained_on_shuffled_labels_is_refused(trained):
    cfg, holdout, good, bad, inverted = trained
    decision = holdout_gate(
        holdout, (bad.model, bad.features), (good.model, good.features, cfg), cfg, champion_version="v1", n_boot=500
    )
    assert not decision.passed, decision.reasons
    assert decision.users == len(holdout.users) >= 20
    assert decision.paired["diff_hi"] < 0 or decision.challenger_ndcg < decision.popularity_ndcg
    assert decision.challenger_ndcg < decision.champion_ndcg


def test_a_sound_challenger_passes_and_the_first_model_only_needs_to_beat_popularity(trained):
    cfg, holdout, good, bad, inverted = trained
    same = holdout_gate(
        holdout, (good.model, good.features), (good.model, good.features, cfg), cfg, champion_version="v1", n_boot=500
    )
    assert same.passed, same.reasons
    assert same.paired["diff"] == pytest.approx(0.0) and same.champion == "v1"
    first = holdout_gate(holdout, (good.model, good.features), None, cfg)
    assert first.passed and "not below popularity" in first.reasons[0], first.reasons


def test_registry_promotes_by_the_holdout_decision_for_the_champion_it_was_made_against(tmp_path, trained):
    from recommender.registry import Registry

    cfg, holdout, good, bad, inverted = trained
    reg = Registry(tmp_path)
    state = good.features.to_state()
    v1 = reg.register(weights=good.model, vocabularies=state, config=cfg.to_dict(), metrics={"auc": 0.8})
    reg.promote(v1)
    refused = holdout_gate(
        holdout, (bad.model, bad.features), (good.model, good.features, cfg), cfg, champion_version=v1, n_boot=300
    )
    # validation metrics alone would let it through (higher AUC); the holdout decision refuses it
    v2 = reg.register(
        weights=bad.model,
        vocabularies=state,
        config=cfg.to_dict(),
        metrics={"auc": 0.9, "holdout_gate": refused.to_dict()},
    )
    assert not reg.promote_if_better(v2).passed and reg.active() == v1
    stale = dict(refused.to_dict(), champion="v0", passed=True)  # made against another champion: not trusted
    v3 = reg.register(
        weights=bad.model, vocabularies=state, config=cfg.to_dict(), metrics={"auc": 0.1, "holdout_gate": stale}
    )
    decision = reg.promote_if_better(v3)
    assert not decision.passed and "validation metrics decide" in decision.reasons[0]


def test_a_first_model_worse_than_stage_1s_own_order_is_refused(trained):
    """No champion: the first model is compared with stage 1's own order through the same rules (what the
    ranker re-ranks) as well as with popularity, on the same users; the reasons say so."""
    cfg, holdout, good, bad, inverted = trained
    first_bad = holdout_gate(holdout, (inverted.model, inverted.features), None, cfg, n_boot=500)
    assert not first_bad.passed, first_bad.reasons
    assert first_bad.stage1_ndcg is not None and first_bad.challenger_ndcg < first_bad.stage1_ndcg
    assert first_bad.paired_stage1["diff_hi"] < 0
    assert any("significantly below stage 1's order" in r for r in first_bad.reasons), first_bad.reasons
    first_good = holdout_gate(holdout, (good.model, good.features), None, cfg, n_boot=500)
    assert first_good.passed and any("not below stage 1's order" in r for r in first_good.reasons), first_good.reasons

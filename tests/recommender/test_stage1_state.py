"""Stage 1 travels with the model: a version loaded later (a rollback) serves the retriever it was trained
with, never one refitted on the newest history, also when the catalogue has changed since."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recommender.config import Config
from recommender.data import ItemTable, build_examples, next_basket_split, synthetic_shop
from recommender.features import FeatureSpace
from recommender.model import build_model
from recommender.pipeline import PipelineConfig, RecPipeline
from recommender.registry import ArtifactError, Registry
from recommender.stage1 import Stage1StateError, fit_retriever, retriever_from_state, retriever_state


@pytest.fixture(scope="module")
def trained():
    data = synthetic_shop(n_users=120, n_items=150, seed=1)
    split = next_basket_split(data.interactions)
    cfg = Config()
    examples = build_examples(split.history, data.items, cfg.data, features=cfg.features, seed=0)
    space = FeatureSpace.fit(examples, cfg.features)
    torch.manual_seed(0)
    model = build_model(
        cfg.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    ).eval()
    return data, split, cfg, space, model


def _neighbours(retriever, items: ItemTable, item_id: str) -> dict[str, float]:
    row = int(items.lookup(np.array([item_id]))[0])
    s, e = retriever.covisit_indptr[row], retriever.covisit_indptr[row + 1]
    return dict(zip(items.item_id[retriever.covisit_items[s:e]].tolist(), retriever.covisit_scores[s:e], strict=True))


def _register(tmp_path, trained, stage1):
    data, split, cfg, space, model = trained
    reg = Registry(tmp_path)
    vocab = {**space.to_state(), **({"stage1": stage1} if stage1 is not None else {})}
    version = reg.register(weights={"model": model.state_dict()}, vocabularies=vocab, config=cfg.to_dict(), metrics={})
    return reg.load(version)


def test_rollback_serves_the_saved_stage1_not_a_refit_on_newer_history(trained, tmp_path):
    data, split, cfg, space, model = trained
    retriever, users = fit_retriever(split.history, data.items, config=cfg)
    artifact = _register(tmp_path, trained, retriever_state(retriever, users, data.items))
    newer = data.interactions  # the latest snapshot: the held-out baskets happened since the version was trained
    pipe = RecPipeline.from_artifact(artifact, history=newer, items=data.items, device="cpu")
    refit, _ = fit_retriever(newer, data.items, config=cfg)
    assert not np.array_equal(refit.trending_items, retriever.trending_items), "the newer log must move stage 1"
    np.testing.assert_array_equal(pipe.retriever.trending_items, retriever.trending_items)
    np.testing.assert_array_equal(pipe.retriever.covisit_items, retriever.covisit_items)
    assert list(pipe.user_index) == list(users)
    # same candidates as a pipeline built with the very retriever object
    ref = RecPipeline(
        retriever=retriever,
        features=pipe.features,
        scorer=pipe.scorer,
        user_index=users,
        config=PipelineConfig(),
        stage1_config=cfg,
    )
    user, now = str(split.users[0]), int(split.times[0])
    a = pipe.recommend(user, now=now, use_model=False)
    b = ref.recommend(user, now=now, use_model=False)
    assert a.item_ids.tolist() == b.item_ids.tolist()


def test_saved_stage1_is_rekeyed_to_a_changed_catalogue(trained):
    data, split, cfg, *_ = trained
    retriever, users = fit_retriever(split.history, data.items, config=cfg)
    state = retriever_state(retriever, users, data.items)
    top = data.items.item_id[retriever.trending_items[0]]
    gone = data.items.item_id[retriever.covisit_items[retriever.covisit_indptr[retriever.trending_items[0]]]]
    keep = data.items.item_id != gone
    fields = {f.name: getattr(data.items, f.name) for f in dataclasses.fields(data.items)}
    n_new = 3
    changed = ItemTable(
        **{
            k: np.concatenate([np.asarray(v)[keep][::-1], np.asarray(v)[:n_new]])
            if k != "item_id"
            else np.concatenate([v[keep][::-1], np.array([f"new-{i}" for i in range(n_new)])])
            for k, v in fields.items()
        }
    )  # reversed order, one item gone, three new ones
    moved, _ = retriever_from_state(state, changed)
    assert moved.n_items == len(changed.item_id)
    before, after = _neighbours(retriever, data.items, top), _neighbours(moved, changed, top)
    assert gone in before and gone not in after
    assert after == {k: v for k, v in before.items() if k != gone}
    assert changed.item_id[moved.trending_items[0]] == top
    assert not np.isin(changed.item_id[moved.trending_items], [gone, "new-0", "new-1", "new-2"]).any()


def test_unreadable_stage1_fails_to_load_with_a_clear_message(trained, tmp_path):
    data, split, cfg, *_ = trained
    retriever, users = fit_retriever(split.history, data.items, config=cfg)
    bad = dict(retriever_state(retriever, users, data.items), format=99)
    with pytest.raises(Stage1StateError, match="format 99"):
        retriever_from_state(bad, data.items)
    artifact = _register(tmp_path, trained, bad)
    with pytest.raises(ArtifactError, match=r"model v0001: saved stage 1 has format 99.*retrain"):
        RecPipeline.from_artifact(artifact, history=split.history, items=data.items, device="cpu")

"""The torchrec DLRM / DLRM-DCN ranker: shapes, split forward, fused -> plain weights, loss wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recommender.config import ModelConfig, TrainConfig
from recommender.data import build_examples, synthetic_shop
from recommender.features import ITEM_SPARSE_KEYS, USER_SPARSE_KEYS, FeatureSpace
from recommender.model import RankerTrain, build_model, dense_parameters


@pytest.fixture(scope="module")
def space_and_batch():
    shop = synthetic_shop(n_users=40, n_items=40, sessions_per_user=4, seed=2)
    ex = build_examples(shop.interactions, shop.items, seed=0)
    space = FeatureSpace.fit(ex)
    return space, space.encode(ex).batch(np.arange(len(ex) - 32, len(ex)))


def _model(space, **kw):
    return build_model(
        kw.pop("config", ModelConfig()),
        table_sizes=space.table_sizes(),
        table_features=space.table_features(),
        num_dense=space.num_dense,
        **kw,
    )


@pytest.mark.parametrize("arch", ["dlrm", "dlrm_dcn"])
def test_logits_shape(space_and_batch, arch):
    space, batch = space_and_batch
    torch.manual_seed(0)
    model = _model(space, config=ModelConfig(arch=arch, embedding_dim=8, dense_arch=(16, 8), over_arch=(16, 1)))
    logits = model(batch.dense_features, batch.sparse_features)
    assert logits.shape == (32,) and torch.isfinite(logits).all()
    from torchrec.models.dlrm import DLRM_DCN

    assert isinstance(model.dlrm, DLRM_DCN) == (arch == "dlrm_dcn")


def test_config_rejects_mismatched_dense_arch():
    with pytest.raises(ValueError, match="embedding_dim"):
        ModelConfig(embedding_dim=16, dense_arch=(32, 8))


def test_saved_config_of_an_older_version_still_loads_but_unknown_keys_do_not():
    from recommender.config import Config

    saved = Config().to_dict()
    saved["data"].update(history_negatives=50, category_negatives=3, hard_negative_weight=2.0)  # a removed path
    assert Config.from_dict(saved).to_dict() == Config().to_dict()
    saved["data"]["no_such_setting"] = 1
    with pytest.raises(ValueError, match="no_such_setting"):
        Config.from_dict(saved)


def test_user_side_embedded_once_matches_full_forward(space_and_batch):
    """Serving path: embed one user's side once, broadcast over candidates, same logits as forward."""
    space, batch = space_and_batch
    torch.manual_seed(0)
    model = _model(space).eval()
    with torch.no_grad():
        full = model(batch.dense_features, batch.sparse_features)
        emb = model.embed(batch.sparse_features)
        per_row = model.score_embedded(batch.dense_features, emb)
        torch.testing.assert_close(per_row, full)
        # make every row the first row's user: user side (1, D) broadcast == per-row user side
        user = {k: emb[k][:1] for k in USER_SPARSE_KEYS}
        same_user = {**{k: emb[k] for k in ITEM_SPARSE_KEYS}, **{k: v.expand(32, -1) for k, v in user.items()}}
        torch.testing.assert_close(
            model.score_embedded(batch.dense_features, {**{k: emb[k] for k in ITEM_SPARSE_KEYS}, **user}),
            model.score_embedded(batch.dense_features, same_user),
        )


def test_fused_training_updates_embeddings_and_loads_into_plain_model(space_and_batch):
    space, batch = space_and_batch
    torch.manual_seed(0)
    fused = _model(space, fused=TrainConfig(embedding_lr=0.1))
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    step = RankerTrain(fused)
    opt = torch.optim.Adam(dense_parameters(fused), lr=1e-2)
    for _ in range(3):
        loss, logits = step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fused.state_dict()
    item_key = next(k for k in after if k.endswith("t_item.weight"))
    assert not torch.equal(before[item_key], after[item_key])  # row-wise Adagrad ran inside backward
    plain = _model(space)
    plain.load_state_dict(after)
    with torch.no_grad():
        # regression: with mixed pooling torchrec's fused EBC once labelled embeddings with the wrong keys
        torch.testing.assert_close(
            plain(batch.dense_features, batch.sparse_features), fused(batch.dense_features, batch.sparse_features)
        )


def test_loss_is_weighted(space_and_batch):
    space, batch = space_and_batch
    torch.manual_seed(0)
    step = RankerTrain(_model(space))
    loss, logits = step(batch)
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels, reduction="none")
    w = batch.weights
    torch.testing.assert_close(loss.detach(), (per_row * w).sum() / w.sum())
    assert logits.shape == (32,) and not logits.requires_grad


def test_training_interaction_matches_torchrec():
    from torchrec.models.dlrm import InteractionArch

    from recommender.model import TrainingInteractionArch

    torch.manual_seed(0)
    d, s = torch.randn(64, 8, requires_grad=True), torch.randn(64, 5, 8, requires_grad=True)
    d2, s2 = d.detach().clone().requires_grad_(), s.detach().clone().requires_grad_()
    ref, ours = InteractionArch(5)(d, s), TrainingInteractionArch(5)(d2, s2)
    torch.testing.assert_close(ours, ref)
    ref.pow(2).sum().backward()
    ours.pow(2).sum().backward()
    torch.testing.assert_close(d2.grad, d.grad)
    torch.testing.assert_close(s2.grad, s.grad)


def test_torchs_once_per_process_fx_tracing_notice_is_dropped_and_nothing_else():
    import logging

    from recommender.model import _not_fx_tracing_notice

    log = logging.getLogger("torch.fx._symbolic_trace")
    assert _not_fx_tracing_notice in log.filters

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord(log.name, logging.WARNING, __file__, 1, msg, None, None)

    assert not log.filter(record("is_fx_tracing will return true for both fx.symbolic_trace and torch.export."))
    assert log.filter(record("symbolic tracing failed"))

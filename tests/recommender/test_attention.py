"""Target attention (history_encoder "din"): shapes and masking, serving equals the model's forward, it learns an
order-dependent signal the mean bag cannot, and a din model survives the registry round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recommender.attention import HistoryAttentionSparseArch, TargetAttention, recency_slots
from recommender.config import Config, ModelConfig, TrainConfig
from recommender.features import DENSE_FEATURES, ITEM_DENSE, PAIR_DENSE, SPARSE_KEYS, TABLE_OF_KEY
from recommender.metrics import auc_score
from recommender.model import RankerTrain, build_model, dense_parameters
from recommender.serving import ItemFeatures, Scorer, UserFeatures

M = 60
SIZES = {"user": 30, "item": M, "category": 5, "brand": 4, "price_bucket": 17, "hour_of_day": 24, "weekday": 7,
         "device": 3}  # fmt: skip
FEATS: dict[str, list[str]] = {}
for _k in SPARSE_KEYS:
    FEATS.setdefault(TABLE_OF_KEY[_k], []).append(_k)


def din_model(seed: int = 0, encoder: str = "din", fused: TrainConfig | None = None, length: int = 8):
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(history_encoder=encoder, history_length=length),
        table_sizes=SIZES,
        table_features=FEATS,
        num_dense=len(DENSE_FEATURES),
        fused=fused,
    )
    if fused is None:
        for name, p in model.named_parameters():
            if "embedding_bag" in name:
                torch.nn.init.normal_(p, std=0.3)
    return model


def kjt_of(bags: list[list[int]], items: list[int]) -> KeyedJaggedTensor:
    B = len(bags)
    vals, lens = [], []
    for k in SPARSE_KEYS:
        if k == "recent_items":
            vals.append(torch.tensor([v for b in bags for v in b], dtype=torch.int64))
            lens.append(torch.tensor([len(b) for b in bags], dtype=torch.int32))
        else:
            vals.append(torch.tensor(items, dtype=torch.int64) if k == "item_id" else torch.zeros(B, dtype=torch.int64))
            lens.append(torch.ones(B, dtype=torch.int32))
    return KeyedJaggedTensor(keys=list(SPARSE_KEYS), values=torch.cat(vals), lengths=torch.cat(lens), stride=B)


def test_recency_slots_put_the_most_recent_first_and_keep_the_last_n():
    values = torch.tensor([1, 2, 3, 4, 5, 6, 7])  # bags [1, 2, 3], [], [4, 5, 6, 7] (oldest first)
    rows, mask = recency_slots(values, torch.tensor([3, 0, 4]), 3)
    assert rows.tolist() == [[3, 2, 1], [0, 0, 0], [7, 6, 5]]
    assert mask.tolist() == [[True, True, True], [False, False, False], [True, True, True]]
    rows, mask = recency_slots(torch.zeros(0, dtype=torch.int64), torch.tensor([0, 0]), 2)
    assert rows.shape == (2, 2) and not mask.any()


def test_padding_is_never_attended_and_an_empty_history_gives_zeros():
    torch.manual_seed(0)
    att = TargetAttention(dim=4, length=5)
    q = torch.randn(3, 4)
    keys = torch.randn(3, 5, 4)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5, [False] * 5])
    out = att(q, keys, mask)
    assert out.shape == (3, 4)
    # whatever sits in the padded positions changes nothing
    noisy = keys.clone()
    noisy[0, 2:] = torch.randn(3, 4) * 100
    noisy[2] = torch.randn(5, 4) * 100
    torch.testing.assert_close(att(q, noisy, mask), out)
    assert torch.equal(out[2], torch.zeros(4))
    w = att.weights(q, att.keys_with_position(keys), mask)
    assert torch.all(w[~mask] == 0) and torch.all(w[mask] > 0)
    # a history shared by all rows (serving) gives what the same history repeated per row gives
    shared = att(q, keys[1:2], mask[1:2])
    torch.testing.assert_close(shared, att(q, keys[1:2].expand(3, -1, -1), mask[1:2].expand(3, -1)))


def test_din_forward_shapes_empty_history_and_order_matters():
    model = din_model().eval()
    assert isinstance(model.dlrm.sparse_arch, HistoryAttentionSparseArch)
    dense = torch.rand(4, len(DENSE_FEATURES))
    bags = [[1, 2, 3], [], [3, 2, 1], list(range(20))]  # the last one is longer than the 8 positions
    with torch.no_grad():
        out = model(dense, kjt_of(bags, [5, 5, 5, 5]))
        emb = model.dlrm.sparse_arch(kjt_of(bags, [5, 5, 5, 5]))
    assert out.shape == (4,) and torch.isfinite(out).all()
    assert emb.shape == (4, len(SPARSE_KEYS), 16)
    assert torch.equal(emb[1, model.feature_names.index("recent_items")], torch.zeros(16))
    # same items in another order: another interest vector (the mean bag would give the same one)
    assert not torch.allclose(emb[0], emb[2])
    mean = din_model(encoder="mean").eval()
    with torch.no_grad():
        m = mean.dlrm.sparse_arch(kjt_of(bags, [5, 5, 5, 5]))
    torch.testing.assert_close(m[0], m[2])


def test_fused_training_copy_matches_the_plain_model_and_keeps_its_state_keys():
    plain = din_model().eval()
    fused = din_model(fused=TrainConfig())
    fused.load_state_dict(plain.state_dict())
    assert set(plain.state_dict()) - {k for k in plain.state_dict() if ".attention." in k} == set(
        din_model(encoder="mean").state_dict()
    )
    dense = torch.rand(3, len(DENSE_FEATURES))
    kjt = kjt_of([[1, 2], [], [4, 5, 6]], [7, 8, 9])
    with torch.no_grad():
        torch.testing.assert_close(fused(dense, kjt), plain(dense, kjt), rtol=1e-5, atol=1e-5)


def _items() -> ItemFeatures:
    g = torch.Generator().manual_seed(1)
    return ItemFeatures(
        sparse={"item_id": torch.arange(M), "category": torch.randint(0, 5, (M,), generator=g),
                "brand": torch.randint(0, 4, (M,), generator=g), "price_bucket": torch.randint(0, 17, (M,), generator=g)},
        dense=torch.rand(M, len(ITEM_DENSE), generator=g),
    )  # fmt: skip


def _user(i: int, bag: int) -> UserFeatures:
    g = torch.Generator().manual_seed(i)
    return UserFeatures(
        sparse={"user_id": torch.tensor([i]), "recent_items": torch.randint(0, M, (bag,), generator=g),
                "hour_of_day": torch.tensor([3]), "weekday": torch.tensor([2]), "device": torch.tensor([1])},
        dense=torch.rand(1, generator=g),
    )  # fmt: skip


@pytest.mark.parametrize("precision,fold", [("fp32", True), ("fp32", False), ("int8", True)])
def test_scorer_reads_the_history_once_and_equals_the_forward(precision, fold):
    model = din_model().eval()
    scorer = Scorer(model, _items(), device="cpu", precision=precision, fold=fold)
    assert scorer.attention is not None and (scorer.folded is not None) == fold
    g = torch.Generator().manual_seed(5)
    for i, bag in [(0, 5), (1, 0), (2, 12)]:
        user = _user(i, bag)
        items, pair = torch.randperm(M, generator=g)[:40], torch.rand(40, len(PAIR_DENSE), generator=g)
        dense, kjt = scorer.reference_batch(user, items, pair)
        with torch.inference_mode():
            want = scorer.model(dense, kjt).reshape(-1)
        got = scorer.score(user, items, pair)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    users = [_user(i, b) for i, b in enumerate([3, 0, 9])]
    batch = scorer.score_batch(users, torch.arange(20), chunk_rows=40)
    for u, out in zip(users, batch, strict=True):
        torch.testing.assert_close(out, scorer.score(u, torch.arange(20)), rtol=1e-5, atol=1e-5)


def _order_task(n: int, seed: int) -> tuple[KeyedJaggedTensor, torch.Tensor, torch.Tensor]:
    """Each row: a history of 4 distinct items in random order and a candidate drawn from them; the label is 1
    when the candidate is the most recent item. The bag's contents (and so the mean bag) say nothing of it."""
    rng = np.random.default_rng(seed)
    bags = [rng.choice(M, size=4, replace=False).tolist() for _ in range(n)]
    which = rng.integers(0, 4, size=n)
    items = [b[w] for b, w in zip(bags, which, strict=True)]
    labels = torch.tensor(which == 3, dtype=torch.float32)  # bags are oldest first: index 3 is the most recent
    return kjt_of(bags, items), labels, torch.zeros(n, len(DENSE_FEATURES))


def _train_and_auc(encoder: str) -> float:
    from recommender.features import Batch

    model = din_model(seed=0, encoder=encoder, fused=TrainConfig(embedding_lr=0.05), length=4)
    step = RankerTrain(model).train()
    opt = torch.optim.Adam(dense_parameters(model), lr=0.02)
    for i in range(150):
        kjt, labels, dense = _order_task(128, seed=i)
        loss, _ = step(Batch(dense, kjt, labels, torch.ones_like(labels)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    kjt, labels, dense = _order_task(2000, seed=10_000)
    with torch.no_grad():
        return auc_score(labels.numpy(), model(dense, kjt).numpy())


def test_din_learns_the_order_signal_the_mean_bag_cannot():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: more threads only spin on a shared box
    try:
        din, mean = _train_and_auc("din"), _train_and_auc("mean")
    finally:
        torch.set_num_threads(threads)
    assert din > 0.8, din
    assert abs(mean - 0.5) < 0.06, mean  # same bag, same score: chance


@pytest.fixture(scope="module")
def trained_din():
    from recommender.data import synthetic_shop
    from recommender.train import train_on_interactions

    data = synthetic_shop(n_users=150, n_items=120, sessions_per_user=5, seed=0)
    cfg = Config()
    cfg.model.history_encoder = "din"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.progress, cfg.train.threads = 1, 256, False, 1
    return data, cfg, train_on_interactions(data, cfg, refit=False)


def test_din_model_round_trips_through_the_registry(trained_din, tmp_path):
    from recommender.pipeline import RecPipeline
    from recommender.registry import ArtifactError, Registry
    from recommender.serving import model_from_artifact

    data, cfg, result = trained_din
    assert result.model.history_attention is not None
    reg = Registry(tmp_path)
    state = result.features.to_state()
    version = reg.register(
        weights={"model": result.model.state_dict()}, vocabularies=state, config=cfg.to_dict(), metrics={}
    )
    model, _, config = model_from_artifact(reg.load(version))
    assert config.model.history_encoder == "din" and model.history_attention is not None
    history = data.interactions
    built = RecPipeline.build(history=history, items=data.items, model=result.model, space=result.features,
                              config=cfg, device="cpu")  # fmt: skip
    loaded = RecPipeline.from_artifact(reg.load(version), history=history, items=data.items, device="cpu")
    now = int(history.timestamp.max()) + 1
    for user in [str(u) for u in np.unique(history.user_id)[:3]] + ["someone-new"]:
        a, b = built.recommend(user, now=now), loaded.recommend(user, now=now)
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    # a config saved before history_encoder existed is a mean-bag model: din weights do not fit it, clearly
    legacy = cfg.to_dict()
    del legacy["model"]["history_encoder"]
    old = reg.register(weights={"model": result.model.state_dict()}, vocabularies=state, config=legacy, metrics={})
    with pytest.raises(ArtifactError, match="does not fit the registered config"):
        model_from_artifact(reg.load(old))


def test_evaluation_ranks_both_encoders_in_the_same_run():
    from recommender.data import ShopData, synthetic_shop
    from recommender.evaluate import evaluate_next_basket

    shop = synthetic_shop(n_users=120, n_items=60, sessions_per_user=5, seed=4)
    inter = shop.interactions.take(np.flatnonzero(shop.interactions.event_type == "purchase"))
    inter.timestamp = (inter.timestamp // 86_400) * 86_400
    cfg = Config()
    cfg.data.positive_weights = {"purchase": 1.0}
    cfg.train.epochs, cfg.train.batch_size, cfg.train.progress, cfg.train.threads = 1, 256, False, 1
    report = evaluate_next_basket(ShopData(inter, shop.items), config=cfg, eval_users=30, progress=False,
                                  n_candidates=20, refit=False, compare_encoders=["din"])  # fmt: skip
    assert {"dlrm_pipeline", "dlrm_pipeline_din"} <= set(report["methods"])
    din = report["methods"]["dlrm_pipeline_din"]
    assert (
        din["users"] == report["methods"]["dlrm_pipeline"]["users"] > 0
        and "segments" in din
        and din["recall@10_ci"][0] <= din["recall@10"]
    )
    enc = report["history_encoders"]
    assert set(enc) == {"mean", "din"} and enc["din"]["row"] == "dlrm_pipeline_din"
    pb = enc["din"]["vs_dlrm_pipeline_recall"]
    assert pb["rel_lo"] <= pb["rel"] <= pb["rel_hi"]


def test_encoder_cost_bench_writes_both_encoders(tmp_path, capsys):
    import json

    from recommender.bench import main

    out = tmp_path / "enc.json"
    assert main(["--history-encoders", "mean,din", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for e in ("mean", "din"):
        r, t = report["rank"][e], report["training"][e]
        assert 0 < r["p50_ms"] <= r["p99_ms"] and t["examples_per_s"] > 0
    assert report["rank"]["mean"]["p50_ratio"] == 1.0 and report["training"]["din"]["ratio"] > 0
    assert "train examples/s" in capsys.readouterr().out

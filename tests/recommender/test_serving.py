"""Serving: user-side reuse gives the plain DLRM's scores; int8 and fp32 rank alike; CUDA when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recommender.config import ModelConfig
from recommender.features import DENSE_FEATURES, ITEM_DENSE, PAIR_DENSE, SPARSE_KEYS, TABLE_OF_KEY
from recommender.model import build_model
from recommender.serving import ItemFeatures, Scorer, ScoreTimings, UserFeatures

M, N_USERS = 400, 300
SIZES = {
    "user": N_USERS,
    "item": M,
    "category": 20,
    "brand": 12,
    "price_bucket": 17,
    "hour_of_day": 24,
    "weekday": 7,
    "device": 6,
}


def make_model(arch: str = "dlrm", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    feats: dict[str, list[str]] = {}
    for k in SPARSE_KEYS:
        feats.setdefault(TABLE_OF_KEY[k], []).append(k)
    model = build_model(ModelConfig(arch=arch), table_sizes=SIZES, table_features=feats, num_dense=len(DENSE_FEATURES))
    # embeddings with a realistic spread (torchrec's default init is tiny), so rankings are not ties
    for name, p in model.named_parameters():
        if "embedding_bag" in name:
            torch.nn.init.normal_(p, std=0.2)
    # a stage-1 prior as training sets one (without zeroing the network): every path must add it
    model.stage1_prior.copy_(torch.tensor([0.4, -0.9]))
    return model.eval()


def make_items(seed: int = 1) -> ItemFeatures:
    g = torch.Generator().manual_seed(seed)
    return ItemFeatures(
        sparse={
            "item_id": torch.arange(M),
            "category": torch.randint(0, SIZES["category"], (M,), generator=g),
            "brand": torch.randint(0, SIZES["brand"], (M,), generator=g),
            "price_bucket": torch.randint(0, SIZES["price_bucket"], (M,), generator=g),
        },
        dense=torch.rand(M, len(ITEM_DENSE), generator=g),
    )


def make_user(i: int, bag: int = 12) -> UserFeatures:
    g = torch.Generator().manual_seed(100 + i)
    return UserFeatures(
        sparse={
            "user_id": torch.tensor([i]),
            "recent_items": torch.randint(0, M, (bag,), generator=g),
            "hour_of_day": torch.tensor([i % 24]),
            "weekday": torch.tensor([i % 7]),
            "device": torch.tensor([i % 6]),
        },
        dense=torch.rand(1, generator=g),
    )


def candidates(i: int, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(200 + i)
    return torch.randperm(M, generator=g)[:n], torch.rand(n, len(PAIR_DENSE), generator=g)


def plain_forward(scorer: Scorer, model: torch.nn.Module, user: UserFeatures, items, pair) -> torch.Tensor:
    dense, kjt = scorer.reference_batch(user, items, pair)
    with torch.inference_mode():
        return model(dense, kjt).reshape(-1)


@pytest.mark.parametrize("arch,fold", [("dlrm", True), ("dlrm", False), ("dlrm_dcn", True)])
def test_scores_equal_the_plain_dlrm_forward(arch, fold):
    model = make_model(arch)
    bias = model.dlrm.over_arch.model[-1].bias.detach().clone()
    scorer = Scorer(model, make_items(), device="cpu", fold=fold)
    assert (scorer.folded is not None) == (arch == "dlrm" and fold)
    # the scorer moves the prior's constant into its own copy's last bias, never into the model it was given
    assert model.stage1_prior.tolist() == pytest.approx([0.4, -0.9])
    assert torch.equal(model.dlrm.over_arch.model[-1].bias, bias)
    for i, bag in [(0, 12), (1, 0), (2, 1)]:  # bag 0: a user with no history yet
        user = make_user(i, bag)
        items, pair = candidates(i)
        got = scorer.score(user, items, pair)
        want = plain_forward(scorer, model, user, items, pair)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_batch_scorer_matches_single_user_scoring():
    scorer = Scorer(make_model(), make_items(), device="cpu")
    users = [make_user(i) for i in range(5)]
    cands = [candidates(i, n)[0] for i, n in zip(range(5), [50, 200, 50, 0, 7], strict=True)]
    pairs = [candidates(i, n)[1] for i, n in zip(range(5), [50, 200, 50, 0, 7], strict=True)]
    timings: list[ScoreTimings] = []
    out = scorer.score_batch(users, cands, pairs, chunk_rows=64, timings=timings)
    assert [len(o) for o in out] == [50, 200, 50, 0, 7]
    for u, c, p, o in zip(users, cands, pairs, out, strict=True):
        if len(c):
            torch.testing.assert_close(o, scorer.score(u, c, p), rtol=1e-5, atol=1e-5)
    assert len(timings) == 1 and timings[0].embedding_ns > 0 and timings[0].mlp_ns > 0
    # whole catalogue, no pair features: same as scoring arange(M) one by one
    full = scorer.score_batch(users[:2])
    torch.testing.assert_close(full[1], scorer.score(users[1], torch.arange(M)), rtol=1e-5, atol=1e-5)


def test_rank_orders_by_score_and_reports_stage_split():
    scorer = Scorer(make_model(), make_items(), device="cpu")
    items, pair = candidates(3)
    top, scores = scorer.rank(make_user(3), items, pair, k=10)
    assert len(top) == 10 and np.all(np.diff(scores) <= 0)
    all_scores = scorer.score(make_user(3), items, pair).numpy()
    assert scores[0] == pytest.approx(all_scores.max())
    t: list[ScoreTimings] = []
    scorer.score(make_user(3), items, pair, timings=t)
    assert t[0].embedding_ns > 0 and t[0].mlp_ns > 0


def _agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> tuple[float, float]:
    top_a, top_b = set(np.argsort(-a)[:k]), set(np.argsort(-b)[:k])
    return len(top_a & top_b) / k, float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("arch", ["dlrm", "dlrm_dcn"])
def test_int8_ranking_agrees_with_fp32(arch):
    model = make_model(arch, seed=3)
    items = make_items()
    fp32 = Scorer(model, items, precision="fp32", device="cpu")
    int8 = Scorer(model, items, precision="int8", device="cpu")
    assert type(int8.ebc).__module__ == "torchrec.quant.embedding_modules"
    # lookups read the int8 rows themselves (dequantised per read), checked against the collection at load
    assert int8._tables is not None and int8._tables["recent_items"].q.dtype == torch.uint8
    overlaps, corrs = [], []
    for i in range(12):
        user = make_user(i)
        c, p = candidates(i, 300)
        ov, corr = _agreement(fp32.score(user, c, p).numpy(), int8.score(user, c, p).numpy())
        overlaps.append(ov)
        corrs.append(corr)
    assert np.mean(overlaps) >= 0.8, overlaps
    assert min(corrs) > 0.99, corrs
    # the int8 path still reuses the user side exactly like its own plain forward
    user = make_user(0)
    c, p = candidates(0)
    torch.testing.assert_close(
        int8.score(user, c, p), plain_forward(int8, int8.model, user, c, p), rtol=1e-4, atol=1e-4
    )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="precision"):
        Scorer(make_model(), make_items(), precision="fp8", device="cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int8 path is for CPU"):
        Scorer(make_model(), make_items(), precision="int8", device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ranking_agrees_with_cpu():
    model = make_model()
    cpu = Scorer(model, make_items(), device="cpu")
    gpu = Scorer(model, make_items(), device="cuda")
    for i in range(5):
        user = make_user(i)
        c, p = candidates(i, 300)
        a, b = cpu.score(user, c, p).numpy(), gpu.score(user, c, p).numpy()
        ov, corr = _agreement(a, b)
        assert ov >= 0.9 and corr > 0.999
    out = gpu.score_batch([make_user(i) for i in range(3)])
    assert len(out) == 3 and out[0].device.type == "cpu"

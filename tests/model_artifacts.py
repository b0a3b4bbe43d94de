"""Real model artifacts for tests that promote, roll back or serve versions: a small DLRM built from a
synthetic shop, registered the way the trainer registers it (``weights={"model": state_dict}``, the
feature space's state, the config), so the strict load before promotion accepts it. ``corrupt`` makes
the kinds of bad versions the promotion must refuse."""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch

Corruption = Literal["nan_weights", "wrong_shapes", "inf_weights", "missing_tensor"]


@functools.lru_cache(maxsize=1)
def _base() -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    from recommender.config import Config
    from recommender.data import build_examples, next_basket_split, synthetic_shop
    from recommender.features import FeatureSpace
    from recommender.model import build_model

    data = synthetic_shop(n_users=30, n_items=40, seed=0)
    split = next_basket_split(data.interactions)
    cfg = Config.from_dict({"model": {"embedding_dim": 8, "dense_arch": [16, 8], "over_arch": [16, 1]}})
    examples = build_examples(split.history, data.items, cfg.data, features=cfg.features, seed=0)
    space = FeatureSpace.fit(examples, cfg.features)
    torch.manual_seed(0)
    model = build_model(
        cfg.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, space.to_state(), cfg.to_dict()


def corrupted(weights: dict[str, dict[str, torch.Tensor]], kind: Corruption) -> dict[str, dict[str, torch.Tensor]]:
    """A copy of ``{"model": state_dict}`` damaged as ``kind`` says (the file itself stays well-formed: its
    checksums match, so only loading it into the model can tell)."""
    sd = {k: v.clone() for k, v in weights["model"].items()}
    matrices = [k for k, v in sd.items() if v.is_floating_point() and v.dim() == 2]
    if kind == "nan_weights":
        sd[matrices[-1]] = torch.full_like(sd[matrices[-1]], float("nan"))
    elif kind == "inf_weights":
        sd[matrices[0]][0, 0] = float("inf")
    elif kind == "wrong_shapes":
        v = sd[matrices[-1]]
        sd[matrices[-1]] = torch.zeros(v.shape[0] + 3, v.shape[1] + 1)
    elif kind == "missing_tensor":
        del sd[matrices[-1]]
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return {**weights, "model": sd}


def tiny_weights(*, seed: int = 0, corrupt: Corruption | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """``{"model": state_dict}`` of the small model, nudged by ``seed`` (versions differ), optionally corrupted."""
    state, _, _ = _base()
    gen = torch.Generator().manual_seed(seed)
    sd = {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in state.items()}
    return corrupted({"model": sd}, corrupt) if corrupt else {"model": sd}


def register_tiny(registry, *, seed: int = 0, corrupt: Corruption | None = None, metrics: dict | None = None) -> str:
    """Register one version of the small model in ``registry`` (a ``recommender.registry.Registry``)."""
    _, vocabularies, config = _base()
    return registry.register(
        weights=tiny_weights(seed=seed, corrupt=corrupt),
        vocabularies=vocabularies,
        config=config,
        metrics=metrics if metrics is not None else {"auc": 0.7, "ndcg@10": 0.1},
    )

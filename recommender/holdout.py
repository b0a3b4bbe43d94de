"""Ranking quality on a time holdout, through the served pipeline (retrieve -> rank -> rules).

The shop's retrain, its evaluation and the promotion gate measure a model the way it is served: stage 1
fitted on the events before the cutoff, the ranker scoring those candidates for each user as of the
cutoff, the rules, the top k; against what each user engaged with after the cutoff. Per-user NDCG@k
comes back too, so two models scored on the same holdout can be compared pairwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recommender.config import Config
from recommender.data import Interactions, ItemTable, ShopData
from recommender.metrics import best_seller_reach, ranking_metrics, user_ndcg
from recommender.pipeline import PipelineConfig, RecPipeline


@dataclass(frozen=True)
class Holdout:
    """history: the events before ``cutoff``; users (U,) str with at least one positive at or after it and
    some history before it; truth: per user, the items of those positives."""

    history: Interactions
    items: ItemTable
    cutoff: int
    users: np.ndarray
    truth: list[np.ndarray]


def make_holdout(data: ShopData, cutoff: int, config: Config, *, users: int = 200, seed: int = 0) -> Holdout:
    inter = data.interactions
    before = inter.take(np.flatnonzero(inter.timestamp < cutoff))
    positive = np.isin(inter.event_type, list(config.data.positive_weights)) & (inter.timestamp >= cutoff)
    known = set(np.unique(before.user_id[np.isin(before.event_type, list(config.data.history_types))]).tolist())
    truth: dict[str, set[str]] = {}
    for u, i in zip(inter.user_id[positive].tolist(), inter.item_id[positive].tolist(), strict=True):
        if u in known:
            truth.setdefault(u, set()).add(i)
    names = sorted(truth)
    if users and len(names) > users:
        names = sorted(np.random.default_rng(seed).choice(names, size=users, replace=False).tolist())
    return Holdout(
        before, data.items, int(cutoff), np.array(names, dtype=str), [np.array(sorted(truth[u])) for u in names]
    )


def served_ranking(
    holdout: Holdout,
    model: torch.nn.Module | None,
    space,
    config: Config,
    *,
    k: int = 10,
    n_candidates: int | None = None,
    use_model: bool = True,
    best_sellers: Sequence[str] | None = None,
) -> dict:
    """Recall@k / NDCG@k / HR@k of the served pipeline on the holdout, plus ``per_user_ndcg`` (U,) in the
    holdout's user order; with ``best_sellers`` (e.g. popularity's top on the holdout history), also
    :func:`recommender.metrics.best_seller_reach`. ``use_model`` False: stage 1's own order through the same
    rules."""
    if not len(holdout.users):
        return {}
    pipe = RecPipeline.build(
        history=holdout.history,
        items=holdout.items,
        model=model if use_model else None,
        space=space,
        now=holdout.cutoff,
        config=config,
        pipeline_config=PipelineConfig(n_candidates=n_candidates or config.data.candidates_per_user, k=k),
        device="cpu",
    )
    out = pipe.recommend_batch(list(holdout.users), now=holdout.cutoff, k=k, use_model=use_model)
    ranked = [r.item_ids.tolist() for r in out.results]
    metrics = ranking_metrics(ranked, holdout.truth, k)
    if best_sellers is not None:
        metrics.update(best_seller_reach(ranked, best_sellers, k))
    metrics["per_user_ndcg"] = user_ndcg(ranked, holdout.truth, k)
    metrics["ranked_users"] = len(ranked)
    return metrics

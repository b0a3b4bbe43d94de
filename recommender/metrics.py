"""Metrics as pure functions of arrays (no model, no data loading): a leaf every other module may use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# ------------------------------------------------------------------------------------ pointwise metrics


def auc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with ties averaged (Mann-Whitney). NaN when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    ll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.average(ll, weights=weights))


# -------------------------------------------------------------------------------------- ranking metrics


def ranking_metrics(ranked: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], k: int = 10) -> dict[str, float]:
    """Recall@k, NDCG@k (binary relevance) and HR@k, averaged over users.

    ranked: per user, item ids best first (only the first k are used); truth: per user, the items of the
    next basket (non-empty)."""
    recall, ndcg, hit = [], [], []
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for r, t in zip(ranked, truth, strict=True):
        t = set(np.asarray(t).tolist())
        if not t:
            continue
        rel = np.array([1.0 if x in t else 0.0 for x in list(r)[:k]])
        rel = np.pad(rel, (0, k - len(rel)))
        hits = rel.sum()
        recall.append(hits / len(t))
        ideal = disc[: min(len(t), k)].sum()
        ndcg.append(float((rel * disc).sum() / ideal))
        hit.append(1.0 if hits > 0 else 0.0)
    n = max(len(recall), 1)
    return {
        f"recall@{k}": float(np.sum(recall) / n),
        f"ndcg@{k}": float(np.sum(ndcg) / n),
        f"hr@{k}": float(np.sum(hit) / n),
        "users": len(recall),
    }


def user_ndcg(ranked: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], k: int = 10) -> np.ndarray:
    """Per-user NDCG@k (binary relevance), (U,) float64, in input order (users with an empty truth get NaN)."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.full(len(truth), np.nan)
    for j, (r, t) in enumerate(zip(ranked, truth, strict=True)):
        t = set(np.asarray(t).tolist())
        if not t:
            continue
        rel = np.array([1.0 if x in t else 0.0 for x in list(r)[:k]])
        rel = np.pad(rel, (0, k - len(rel)))
        out[j] = float((rel * disc).sum() / disc[: min(len(t), k)].sum())
    return out

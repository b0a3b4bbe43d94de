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


#: how many of the most engaged items count as the best sellers in :func:`best_seller_reach`
BEST_SELLERS = 40


def best_seller_reach(ranked: Sequence[Sequence[str]], best_sellers: Sequence[str], k: int = 10) -> dict:
    """Beyond accuracy: ``best_sellers@k``, the share of all users' top-k places held by ``best_sellers`` (the
    most engaged items: how far a ranking leans on what every shopper is already shown), and ``distinct@k``,
    the distinct items across those places (how much of the catalogue it reaches). None without places."""
    top = set(np.asarray(best_sellers).tolist())
    places = [x for r in ranked for x in list(r)[:k]]
    return {
        f"best_sellers@{k}": sum(1 for x in places if x in top) / len(places) if places else None,
        f"distinct@{k}": len(set(places)),
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


def user_recall(ranked: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], k: int = 10) -> np.ndarray:
    """Per-user Recall@k, (U,) float64 (NaN for an empty truth)."""
    out = np.full(len(truth), np.nan)
    for j, (r, t) in enumerate(zip(ranked, truth, strict=True)):
        t = set(np.asarray(t).tolist())
        if t:
            out[j] = len(t & set(list(r)[:k])) / len(t)
    return out


def split_recall(
    ranked: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], seen: Sequence[set], k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user recall@k on the truth items the user had before (``seen``: repeat) and on the new ones
    (explore); NaN where the user has no such item."""
    rep, exp = np.full(len(truth), np.nan), np.full(len(truth), np.nan)
    for j, (r, t, s) in enumerate(zip(ranked, truth, seen, strict=True)):
        top = set(list(r)[:k])
        t = set(np.asarray(t).tolist())
        old, new = t & s, t - s
        if old:
            rep[j] = len(old & top) / len(old)
        if new:
            exp[j] = len(new & top) / len(new)
    return rep, exp


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs dropped): users resampled with
    replacement ``n_boot`` times."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for b in range(0, n_boot, 100):  # in blocks: 100 x U indices at a time
        m = min(100, n_boot - b)
        means[b : b + m] = v[rng.integers(0, len(v), size=(m, len(v)))].mean(axis=1)
    a = (1.0 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Paired comparison of two methods' per-user values on the same users: mean difference ``a - b``, the
    relative difference ``mean(a) / mean(b) - 1``, percentile intervals of both (the same resampled users
    for a and b), and the share of resamples where a's mean is not above b's (a one-sided p-value)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) == 0:
        nan = float("nan")
        return {
            "diff": nan,
            "diff_lo": nan,
            "diff_hi": nan,
            "rel": nan,
            "rel_lo": nan,
            "rel_hi": nan,
            "p_not_better": nan,
        }
    rng = np.random.default_rng(seed)
    ma, mb = np.empty(n_boot), np.empty(n_boot)
    for s in range(0, n_boot, 100):
        m = min(100, n_boot - s)
        idx = rng.integers(0, len(a), size=(m, len(a)))
        ma[s : s + m], mb[s : s + m] = a[idx].mean(axis=1), b[idx].mean(axis=1)
    q = (1.0 - level) / 2
    diff = ma - mb
    rel = np.where(mb > 0, ma / np.where(mb > 0, mb, 1.0) - 1.0, np.nan)
    base = b.mean()
    return {
        "diff": float(a.mean() - base),
        "diff_lo": float(np.quantile(diff, q)),
        "diff_hi": float(np.quantile(diff, 1 - q)),
        "rel": float(a.mean() / base - 1.0) if base > 0 else float("nan"),
        "rel_lo": float(np.nanquantile(rel, q)) if np.isfinite(rel).any() else float("nan"),
        "rel_hi": float(np.nanquantile(rel, 1 - q)) if np.isfinite(rel).any() else float("nan"),
        "p_not_better": float(np.mean(diff <= 0)),
    }

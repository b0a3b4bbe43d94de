"""Next-basket baselines, each ``.rank(user, time_s, k) -> [item ids]`` (and ``rank_many`` when batching
is much faster): global popularity, the user's own past items, item-to-item co-occurrence, and TIFU-KNN
(Hu et al., SIGIR 2020), the standard strong next-basket baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recommender.config import DAY
from recommender.data import Interactions


def _purchases(history: Interactions, types: Sequence[str]) -> pd.DataFrame:
    mask = np.isin(history.event_type, list(types))
    return pd.DataFrame({"user": history.user_id[mask], "item": history.item_id[mask], "ts": history.timestamp[mask]})


def _fill(primary: list[str], fallback: np.ndarray, k: int) -> list[str]:
    out = list(primary[:k])
    seen = set(out)
    for x in fallback:
        if len(out) >= k:
            break
        if x not in seen:
            out.append(x)
            seen.add(x)
    return out


class PopularityBaseline:
    """Global popularity: the most engaged items in the history, same list for everyone."""

    name = "popularity"

    def __init__(self, history: Interactions, types: Sequence[str] = ("click", "add_to_cart", "purchase")):
        df = _purchases(history, types)
        self.top = df["item"].value_counts().index.to_numpy().astype(str)

    def rank(self, user: str, time_s: int, k: int = 10) -> list[str]:
        return list(self.top[:k])


class UserHistoryBaseline:
    """The user's own past items by frequency (ties: most recent first), then global popularity."""

    name = "user_history"

    def __init__(self, history: Interactions, types: Sequence[str] = ("click", "add_to_cart", "purchase")):
        df = _purchases(history, types)
        self.popular = PopularityBaseline(history, types).top
        agg = df.groupby(["user", "item"]).agg(n=("ts", "size"), last=("ts", "max")).reset_index()
        agg = agg.sort_values(["user", "n", "last"], ascending=[True, False, False])
        self.by_user = {u: g["item"].to_numpy().astype(str) for u, g in agg.groupby("user", sort=False)}

    def rank(self, user: str, time_s: int, k: int = 10) -> list[str]:
        return _fill(list(self.by_user.get(user, [])[:k]), self.popular, k)


class CooccurrenceBaseline:
    """Item-to-item co-occurrence: items bought in the same basket (same user, same day) as the user's recent
    items, scored by summed co-occurrence counts over the user's last ``recent`` items; then popularity."""

    name = "cooccurrence"

    def __init__(
        self,
        history: Interactions,
        types: Sequence[str] = ("click", "add_to_cart", "purchase"),
        recent: int = 20,
        max_basket: int = 50,
    ):
        df = _purchases(history, types).drop_duplicates(["user", "item", "ts"])
        df["day"] = df["ts"] // DAY
        self.popular = PopularityBaseline(history, types).top
        self.items = pd.Index(pd.unique(df["item"]))
        df["i"] = self.items.get_indexer(df["item"])
        basket = df.groupby(["user", "day"]).ngroup().to_numpy()
        size = np.bincount(basket)
        keep = size[basket] <= max_basket
        b, i = basket[keep], df["i"].to_numpy()[keep]
        # co-occurrence counts: self-join of baskets, kept as CSR arrays (indptr, neighbours, counts)
        pairs = pd.DataFrame({"b": b, "i": i}).drop_duplicates()
        joined = pairs.merge(pairs, on="b", suffixes=("", "_j"))
        joined = joined[joined["i"] != joined["i_j"]]
        co = joined.groupby(["i", "i_j"]).size().reset_index(name="n").sort_values(["i", "i_j"])
        n_items = len(self.items)
        self.indptr = np.zeros(n_items + 1, np.int64)
        np.add.at(self.indptr, co["i"].to_numpy() + 1, 1)
        self.indptr = np.cumsum(self.indptr)
        self.neighbours = co["i_j"].to_numpy(np.int64)
        self.counts = co["n"].to_numpy(np.float64)
        df = df.sort_values(["user", "ts"])
        self.recent = {u: g.to_numpy()[-recent:] for u, g in df.groupby("user", sort=False)["i"]}

    def rank(self, user: str, time_s: int, k: int = 10) -> list[str]:
        rec = self.recent.get(user)
        if rec is None or len(rec) == 0:
            return list(self.popular[:k])
        scores = np.zeros(len(self.items))
        for j in rec:
            lo, hi = self.indptr[j], self.indptr[j + 1]
            np.add.at(scores, self.neighbours[lo:hi], self.counts[lo:hi])
        top = np.argsort(-scores, kind="stable")[: k * 2]
        top = [self.items[j] for j in top if scores[j] > 0][:k]
        return _fill(top, self.popular, k)


class TifuKnnBaseline:
    """TIFU-KNN (Hu, He, Li, Wang, Zhang: "Modeling Personalized Item Frequency Information for Next-basket
    Recommendation", SIGIR 2020).

    A user's vector is their time-decayed repeat vector: baskets (shopping days) are split into groups of
    ``group_size`` from the oldest; inside a group, basket b of n weighs ``basket_decay ** (n - b)``; the
    group vectors (means) are averaged with weight ``group_decay ** (groups - g)``. The prediction blends
    the user's own vector with the mean of its ``neighbours`` nearest users' vectors (cosine):
    ``alpha * own + (1 - alpha) * neighbours``. Defaults: the paper's Ta Feng setting (m=7, r_b=0.9,
    r_g=0.7, k=300, alpha=0.7).
    """

    name = "tifu_knn"

    def __init__(
        self,
        history: Interactions,
        types: Sequence[str] = ("purchase",),
        *,
        group_size: int = 7,
        basket_decay: float = 0.9,
        group_decay: float = 0.7,
        neighbours: int = 300,
        alpha: float = 0.7,
    ):
        from scipy import sparse

        df = _purchases(history, types)
        df["day"] = df["ts"] // DAY
        self.users = pd.Index(pd.unique(df["user"]))
        self.items = np.asarray(pd.unique(df["item"]), dtype=str)
        item_index = pd.Index(self.items)
        df = df.drop_duplicates(["user", "item", "day"])
        u = self.users.get_indexer(df["user"].to_numpy())
        i = item_index.get_indexer(df["item"].to_numpy())
        # basket position of each day within its user (0 = oldest), and the user's number of baskets
        days = pd.DataFrame({"u": u, "day": df["day"].to_numpy()}).drop_duplicates().sort_values(["u", "day"])
        days["b"] = days.groupby("u").cumcount()
        n_baskets = days.groupby("u")["b"].transform("size")
        days["n"] = n_baskets
        pos = df.assign(u=u).merge(days, on=["u", "day"], how="left")
        b, n = pos["b"].to_numpy(), pos["n"].to_numpy()
        # groups of group_size baskets from the oldest; the last group may be shorter
        g = b // group_size
        n_groups = (n + group_size - 1) // group_size
        in_group = np.where(g == n_groups - 1, n - g * group_size, group_size)
        rank_in_group = b - g * group_size
        w = (basket_decay ** (in_group - 1 - rank_in_group)) / in_group
        w *= (group_decay ** (n_groups - 1 - g)) / n_groups
        self.vectors = sparse.csr_matrix((w, (u, i)), shape=(len(self.users), len(self.items)))
        self.vectors.sum_duplicates()
        norms = np.sqrt(np.asarray(self.vectors.multiply(self.vectors).sum(axis=1)).ravel())
        self._unit = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ self.vectors
        self.neighbours, self.alpha = int(neighbours), float(alpha)
        self.popular = df["item"].value_counts().index.to_numpy().astype(str)
        self._cache: dict[str, list[str]] = {}

    def rank_many(self, users: Sequence[str], times: Sequence[int], k: int = 10, chunk: int = 512) -> list[list[str]]:
        rows = self.users.get_indexer(np.asarray(users, dtype=str))
        out: list[list[str]] = [list(self.popular[:k]) for _ in rows]
        known = np.flatnonzero(rows >= 0)
        nn = min(self.neighbours, max(len(self.users) - 1, 1))
        for s in range(0, len(known), chunk):
            idx = known[s : s + chunk]
            r = rows[idx]
            sim = (self._unit[r] @ self._unit.T).toarray()
            sim[np.arange(len(r)), r] = -np.inf  # not one's own neighbour
            top = np.argpartition(-sim, nn - 1, axis=1)[:, :nn] if nn < sim.shape[1] else np.argsort(-sim, axis=1)
            from scipy import sparse

            weights = sparse.csr_matrix(
                (np.full(top.size, 1.0 / top.shape[1]), (np.repeat(np.arange(len(r)), top.shape[1]), top.ravel())),
                shape=(len(r), len(self.users)),
            )
            pred = self.alpha * self.vectors[r].toarray() + (1 - self.alpha) * (weights @ self.vectors).toarray()
            best = np.argsort(-pred, axis=1, kind="stable")[:, :k]
            for j, row in enumerate(idx):
                picked = [self.items[x] for x in best[j] if pred[j, x] > 0]
                out[row] = _fill(picked, self.popular, k)
        return out

    def rank(self, user: str, time_s: int, k: int = 10) -> list[str]:
        return self.rank_many([user], [time_s], k)[0]

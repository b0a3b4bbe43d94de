"""Stage 1 of the pipeline: cheap candidate generators over numpy arrays.

Four sources, each fitted once from interactions and then looked up per user in microseconds:

- ``history``: the user's own past items, by frequency then recency;
- ``covisit``: item-item co-occurrence (items interacted with close together in time by the same
  user) of the user's most recent items, stored as a top-n neighbour list per item (CSR arrays);
- ``category``: the most popular items of the user's favourite categories;
- ``trending``: popularity with exponential time decay (also the cold-start fallback).

The sources are interleaved round-robin (so a small ``k_total`` still sees every source) and
deduplicated. Users and items are dense integer indices (``0..n-1``) as produced by the
vocabularies; a user index outside ``0..n_users-1`` is a cold user (trending + session items only).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

SOURCES = ("history", "covisit", "category", "trending")


@dataclass(frozen=True)
class RetrievalConfig:
    """Per-source k, total k, and how the sources are fitted."""

    k_history: int = 50
    k_covisit: int = 100
    k_category: int = 50
    k_trending: int = 50
    k_total: int = 200
    recent_items: int = 10  # how many of the user's latest items seed the co-occurrence source
    covisit_top_n: int = 50  # neighbours kept per item
    covisit_window: int = 5  # pairs up to this many steps apart in a user's time-ordered sequence...
    covisit_window_s: float = 86_400.0  # ...and at most this far apart in time (same day ~ same basket)
    top_categories: int = 3  # categories per user for the category source
    trending_half_life_s: float = 7 * 86_400.0

    def with_total(self, k_total: int) -> RetrievalConfig:
        """The same config with ``k_total`` candidates, scaling every per-source k to cover it."""
        return _with_total(self, int(k_total))

    def _scaled(self, k_total: int) -> RetrievalConfig:
        base = self.k_history + self.k_covisit + self.k_category + self.k_trending
        f = max(1.0, k_total / max(base, 1))
        return RetrievalConfig(
            **{
                **asdict(self),
                "k_total": int(k_total),
                "k_history": int(np.ceil(self.k_history * f)),
                "k_covisit": int(np.ceil(self.k_covisit * f)),
                "k_category": int(np.ceil(self.k_category * f)),
                "k_trending": int(np.ceil(self.k_trending * f)),
            }
        )


@functools.lru_cache(maxsize=256)
def _with_total(config: RetrievalConfig, k_total: int) -> RetrievalConfig:
    return config._scaled(k_total)  # once per (config, k_total): a request asks for few distinct sizes


@dataclass(frozen=True)
class Candidates:
    """One user's candidates: ``items`` (int64, best first within the interleave) and the source index of each."""

    items: np.ndarray
    sources: np.ndarray  # int8 index into SOURCES: the first source that proposed the item

    def __len__(self) -> int:
        return len(self.items)


def _csr(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """indptr for rows already sorted by ``groups``."""
    counts = np.bincount(groups, minlength=n_groups)
    indptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr


def _rank_in_group(groups: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    return np.arange(len(groups), dtype=np.int64) - indptr[groups]


def _top_per_group(groups: np.ndarray, n_groups: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (group, score desc): mask of the first ``keep`` rows of each group, and the new indptr."""
    mask = _rank_in_group(groups, _csr(groups, n_groups)) < keep
    return mask, _csr(groups[mask], n_groups)


@dataclass(frozen=True)
class UserSources:
    """One user's share of the fitted sources: own items (frequency then recency), latest distinct items
    (newest first), favourite categories and their share of the user's weight."""

    history: np.ndarray
    recent: np.ndarray
    categories: np.ndarray
    category_share: np.ndarray


class CandidateRetriever:
    """Fitted candidate sources; build with :meth:`fit`, query with :meth:`candidates`."""

    _ARRAYS = (
        "hist_indptr",
        "hist_items",
        "recent_indptr",
        "recent_items",
        "covisit_indptr",
        "covisit_items",
        "covisit_scores",
        "ucat_indptr",
        "ucat_cats",
        "ucat_share",
        "cat_indptr",
        "cat_items",
        "cat_pop",
        "trending_items",
        "item_category",
    )

    def __init__(self, *, config: RetrievalConfig, n_users: int, n_items: int, arrays: dict[str, np.ndarray]):
        self.config = config
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        for name in self._ARRAYS:
            setattr(self, name, np.asarray(arrays[name]))

    # -- fitting ---------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        *,
        users: np.ndarray,
        items: np.ndarray,
        timestamps: np.ndarray,
        item_category: np.ndarray,
        n_users: int | None = None,
        weights: np.ndarray | None = None,
        now: float | None = None,
        config: RetrievalConfig | None = None,
    ) -> CandidateRetriever:
        """Fit every source from interactions (one row per event; ``timestamps`` in seconds).

        ``item_category[i]`` is item i's category index (``n_items = len(item_category)``);
        ``weights`` (e.g. purchase > click) default to 1; ``now`` (for trending decay) defaults to
        the latest timestamp, so no event from the future of the fit leaks in.
        """
        cfg = config or RetrievalConfig()
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ts = np.asarray(timestamps, dtype=np.float64)
        item_category = np.asarray(item_category, dtype=np.int64)
        n_items = len(item_category)
        n_users = int(n_users if n_users is not None else (users.max() + 1 if len(users) else 0))
        w = np.ones(len(users)) if weights is None else np.asarray(weights, dtype=np.float64)
        if not (len(users) == len(items) == len(ts) == len(w)):
            raise ValueError("users, items, timestamps and weights must have the same length")
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise ValueError("item indices must lie in 0..len(item_category)-1")
        if len(users) and (users.min() < 0 or users.max() >= n_users):
            raise ValueError("user indices must lie in 0..n_users-1")
        now = float(ts.max()) if now is None and len(ts) else float(now or 0.0)
        n_cats = int(item_category.max()) + 1 if n_items else 0
        a: dict[str, np.ndarray] = {"item_category": item_category}

        # user x item: weighted count and latest time
        key = users * n_items + items
        uniq, inv = np.unique(key, return_inverse=True)
        cnt = np.bincount(inv, weights=w)
        last = np.full(len(uniq), -np.inf)
        np.maximum.at(last, inv, ts)
        pu, pi = uniq // max(n_items, 1), uniq % max(n_items, 1)
        order = np.lexsort((-last, -cnt, pu))  # by user, then frequency, then recency
        a["hist_items"], a["hist_indptr"] = pi[order], _csr(pu[order], n_users)
        order = np.lexsort((-last, pu))
        mask, a["recent_indptr"] = _top_per_group(pu[order], n_users, cfg.recent_items)
        a["recent_items"] = pi[order][mask]

        # item-item co-occurrence within a user's time-ordered sequence
        order = np.lexsort((ts, users))
        su, si, st = users[order], items[order], ts[order]
        pair_keys, pair_w = [], []
        for d in range(1, cfg.covisit_window + 1):
            if d >= len(su):
                break
            ok = (su[:-d] == su[d:]) & (si[:-d] != si[d:]) & (st[d:] - st[:-d] <= cfg.covisit_window_s)
            x, y = si[:-d][ok], si[d:][ok]
            pair_keys += [x * n_items + y, y * n_items + x]
            pair_w += [np.full(2 * len(x), 1.0 / d)]
        if pair_keys:
            keys = np.concatenate(pair_keys)
            pk, pinv = np.unique(keys, return_inverse=True)
            pscore = np.bincount(pinv, weights=np.concatenate(pair_w))
            px, py = pk // n_items, pk % n_items
            order = np.lexsort((py, -pscore, px))
            mask, a["covisit_indptr"] = _top_per_group(px[order], n_items, cfg.covisit_top_n)
            a["covisit_items"], a["covisit_scores"] = py[order][mask], pscore[order][mask]
        else:
            a["covisit_indptr"] = np.zeros(n_items + 1, dtype=np.int64)
            a["covisit_items"], a["covisit_scores"] = np.zeros(0, np.int64), np.zeros(0)

        # user's favourite categories, and the popular items of every category
        ucat_key = users * max(n_cats, 1) + item_category[items]
        ck, cinv = np.unique(ucat_key, return_inverse=True)
        ccnt = np.bincount(cinv, weights=w)
        cu, cc = ck // max(n_cats, 1), ck % max(n_cats, 1)
        utotal = np.bincount(users, weights=w, minlength=n_users)
        order = np.lexsort((cc, -ccnt, cu))
        mask, a["ucat_indptr"] = _top_per_group(cu[order], n_users, cfg.top_categories)
        a["ucat_cats"] = cc[order][mask]
        a["ucat_share"] = (ccnt[order] / utotal[cu[order]])[mask]
        pop = np.bincount(items, weights=w, minlength=n_items)
        item_ids = np.arange(n_items)
        order = np.lexsort((item_ids, -pop, item_category))
        keep_per_cat = max(cfg.k_category, 1) * 4
        mask, a["cat_indptr"] = _top_per_group(item_category[order], n_cats, keep_per_cat)
        a["cat_items"], a["cat_pop"] = item_ids[order][mask], (pop[order] / max(pop.max(initial=0), 1.0))[mask]

        # trending: exponentially decayed popularity at ``now``
        decay = np.exp2(-np.clip(now - ts, 0, None) / cfg.trending_half_life_s)
        trend = np.bincount(items, weights=w * decay, minlength=n_items)
        order = np.lexsort((item_ids, -trend))[: max(cfg.k_trending, cfg.k_total) * 4]
        a["trending_items"] = order[trend[order] > 0]
        return cls(config=cfg, n_users=n_users, n_items=n_items, arrays=a)

    # -- persistence (plain numpy state: fits the registry's vocabularies) ----------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "n_users": self.n_users,
            "n_items": self.n_items,
            **{name: getattr(self, name) for name in self._ARRAYS},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CandidateRetriever:
        known = {f.name for f in fields(RetrievalConfig)}
        cfg = RetrievalConfig(**{k: v for k, v in state["config"].items() if k in known})
        return cls(config=cfg, n_users=state["n_users"], n_items=state["n_items"], arrays=state)

    # -- per-source lookups ----------------------------------------------------------------------

    def _known(self, user: int) -> bool:
        return 0 <= user < self.n_users

    def history(self, user: int, k: int) -> np.ndarray:
        if not self._known(user):
            return np.zeros(0, np.int64)
        s = self.hist_indptr[user]
        return self.hist_items[s : min(s + k, self.hist_indptr[user + 1])]

    def recent(self, user: int) -> np.ndarray:
        """The user's latest distinct items, newest first."""
        if not self._known(user):
            return np.zeros(0, np.int64)
        return self.recent_items[self.recent_indptr[user] : self.recent_indptr[user + 1]]

    def covisit(self, seeds: np.ndarray, k: int) -> np.ndarray:
        """Neighbours of ``seeds`` (newest first: earlier seeds weigh more), best first."""
        seeds = np.asarray(seeds, dtype=np.int64)
        seeds = seeds[(seeds >= 0) & (seeds < self.n_items)]
        if len(seeds) == 0 or k <= 0:
            return np.zeros(0, np.int64)
        starts, ends = self.covisit_indptr[seeds], self.covisit_indptr[seeds + 1]
        lens = ends - starts
        if lens.sum() == 0:
            return np.zeros(0, np.int64)
        idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        seed_w = np.repeat(1.0 / (1.0 + np.arange(len(seeds))), lens)
        nb, inv = np.unique(self.covisit_items[idx], return_inverse=True)
        score = np.bincount(inv, weights=self.covisit_scores[idx] * seed_w)
        return nb[np.lexsort((nb, -score))[:k]]

    def popular_in_categories(self, user: int, k: int) -> np.ndarray:
        if not self._known(user) or k <= 0:
            return np.zeros(0, np.int64)
        s, e = self.ucat_indptr[user], self.ucat_indptr[user + 1]
        return self._popular_in(self.ucat_cats[s:e], self.ucat_share[s:e], k)

    def _popular_in(self, cats: np.ndarray, share: np.ndarray, k: int) -> np.ndarray:
        if k <= 0:
            return np.zeros(0, np.int64)
        parts, scores = [], []
        for c, sh in zip(cats, share, strict=True):
            cs, ce = self.cat_indptr[c], self.cat_indptr[c + 1]
            parts.append(self.cat_items[cs:ce])
            scores.append(self.cat_pop[cs:ce] * sh)
        if not parts:
            return np.zeros(0, np.int64)
        it, sc = np.concatenate(parts), np.concatenate(scores)
        return it[np.lexsort((it, -sc))[:k]]

    def trending(self, k: int) -> np.ndarray:
        return self.trending_items[:k]

    # -- merged ----------------------------------------------------------------------------------

    def candidates(
        self,
        user: int,
        *,
        k_total: int | None = None,
        session_items: np.ndarray | None = None,
        config: RetrievalConfig | None = None,
    ) -> Candidates:
        """Interleave the four sources round-robin, deduplicated, at most ``k_total`` items.

        ``session_items`` (newest first) are seeds for co-occurrence beyond the fitted history:
        what a cold or anonymous visitor viewed in this session.
        """
        cfg = config or self.config
        if k_total is not None and k_total != cfg.k_total:
            cfg = cfg.with_total(k_total)
        return self._interleave(
            cfg,
            history=self.history(user, cfg.k_history),
            recent=self.recent(user),
            session_items=session_items,
            popular=self.popular_in_categories(user, cfg.k_category),
        )

    def user_sources(self, items: np.ndarray, timestamps: np.ndarray, weights: np.ndarray) -> UserSources:
        """One user's fitted-source state (own history order, recent items, favourite categories) from that
        user's events alone, computed exactly as :meth:`fit` computes it for every user: the live path
        merges events newer than the fit and pays for this user's events only.

        ``items``: catalogue rows (events on items outside the catalogue already dropped), ``timestamps``
        seconds, ``weights`` per event (the fit's event-type weights)."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            z = np.zeros(0, np.int64)
            return UserSources(z, z, z, np.zeros(0))
        ts = np.asarray(timestamps, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        uniq, inv = np.unique(items, return_inverse=True)
        cnt = np.bincount(inv, weights=w)
        last = np.full(len(uniq), -np.inf)
        np.maximum.at(last, inv, ts)
        history = uniq[np.lexsort((-last, -cnt))]
        recent = uniq[np.argsort(-last, kind="stable")][: self.config.recent_items]
        cats = self.item_category[items]
        ck, cinv = np.unique(cats, return_inverse=True)
        ccnt = np.bincount(cinv, weights=w)
        top = np.lexsort((ck, -ccnt))[: self.config.top_categories]
        return UserSources(history, recent, ck[top], ccnt[top] / w.sum())

    def candidates_from(
        self,
        sources: UserSources,
        *,
        k_total: int | None = None,
        session_items: np.ndarray | None = None,
        config: RetrievalConfig | None = None,
    ) -> Candidates:
        """:meth:`candidates` for a user described by :meth:`user_sources` (fitted or not)."""
        cfg = config or self.config
        if k_total is not None and k_total != cfg.k_total:
            cfg = cfg.with_total(k_total)
        return self._interleave(
            cfg,
            history=sources.history[: cfg.k_history],
            recent=sources.recent,
            session_items=session_items,
            popular=self._popular_in(sources.categories, sources.category_share, cfg.k_category),
        )

    def _interleave(
        self,
        cfg: RetrievalConfig,
        *,
        history: np.ndarray,
        recent: np.ndarray,
        session_items: np.ndarray | None,
        popular: np.ndarray,
    ) -> Candidates:
        seeds = recent[: cfg.recent_items]
        if session_items is not None and len(session_items):
            seeds = np.concatenate([np.asarray(session_items, dtype=np.int64), seeds])[: cfg.recent_items]
        lists = [history, self.covisit(seeds, cfg.k_covisit), popular, self.trending(cfg.k_trending)]
        lens = np.array([len(x) for x in lists])
        if lens.sum() == 0:
            return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int8))
        allitems = np.concatenate(lists).astype(np.int64, copy=False)
        src = np.repeat(np.arange(len(lists), dtype=np.int8), lens)
        rank = np.concatenate([np.arange(n) for n in lens])
        order = np.lexsort((src, rank))  # round-robin: every source's 1st, then every 2nd, ...
        allitems, src = allitems[order], src[order]
        _, first = np.unique(allitems, return_index=True)
        first.sort()
        first = first[: cfg.k_total]
        return Candidates(allitems[first], src[first])

    def candidates_batch(self, users: np.ndarray, *, k_total: int | None = None) -> list[Candidates]:
        return [self.candidates(int(u), k_total=k_total) for u in users]

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
# What stage 1 knows about a candidate, handed to the ranker as dense features (already scaled: log1p of
# counts and days, ranks as 1 / (1 + rank), 0 when the source did not rank the item).
SIGNALS = (
    "s1_history_count",  # the user's weighted events on the item
    "s1_history_decayed",  # the same, time-decayed (recent repeats weigh more)
    "s1_history_rank",
    "s1_covisit_score",  # co-occurrence with the user's recent items
    "s1_covisit_rank",
    "s1_category_score",  # popularity in the user's favourite categories x the category's share
    "s1_category_rank",
    "s1_trend_score",  # decayed global popularity
    "s1_trend_rank",
    "days_since_bought",  # days since the user last bought it (365 when never)
    "repurchase_interval",  # the user's typical days between buying it (0 when bought on fewer than 2 days)
    "repurchase_due",  # days since bought / that interval (about 1: due again)
    "s1_position",  # log1p of the candidate's place in stage 1's merged order (ABSENT_POSITION when not a candidate)
)
# The place given to an item stage 1 did not propose (beyond any candidate list).
ABSENT_POSITION = 1000


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
    repeat_half_life_s: float = 30 * 86_400.0  # decay of the user's own repeat counts (a ranker signal)

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


def absent_signals(n: int) -> np.ndarray:
    """(n, len(SIGNALS)) signals of items no source ranked and the user never bought."""
    out = np.zeros((n, len(SIGNALS)), np.float32)
    out[:, SIGNALS.index("days_since_bought")] = np.log1p(365.0)
    out[:, SIGNALS.index("s1_position")] = np.log1p(ABSENT_POSITION)
    return out


@functools.lru_cache(maxsize=256)
def _with_total(config: RetrievalConfig, k_total: int) -> RetrievalConfig:
    return config._scaled(k_total)  # once per (config, k_total): a request asks for few distinct sizes


@dataclass(frozen=True)
class Candidates:
    """One user's candidates: ``items`` (int64, best first within the interleave) and the source index of each."""

    items: np.ndarray
    sources: np.ndarray  # int8 index into SOURCES: the first source that proposed the item
    signals: np.ndarray | None = None  # (N, len(SIGNALS)) float32, from candidates_from

    def __len__(self) -> int:
        return len(self.items)

    def with_signals(self, signals: np.ndarray) -> Candidates:
        return Candidates(self.items, self.sources, signals)


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
    history_count: np.ndarray  # weighted events per history item (same order as ``history``)
    history_decayed: np.ndarray  # the same, each event halved every ``repeat_half_life_s``
    bought_last: np.ndarray  # time of the last purchase of each history item, -1 never bought
    bought_interval: np.ndarray  # mean days between distinct purchase days (NaN: bought on fewer than 2)


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
        "trending_scores",
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
        a["trending_scores"] = trend[a["trending_items"]] / max(float(trend.max(initial=0.0)), 1e-12)
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

    def remapped(
        self,
        item_map: np.ndarray,
        category_map: np.ndarray,
        item_category: np.ndarray,
    ) -> CandidateRetriever:
        """The same fitted sources over another catalogue: ``item_map[i]`` is old item i's row in the new
        catalogue (-1: gone), ``category_map[c]`` old category c's code there (-1: gone), ``item_category``
        the new catalogue's category codes. Entries on gone items or categories are dropped; items new to
        the catalogue appear in no source until the next fit (as after any fit)."""
        item_map = np.asarray(item_map, dtype=np.int64)
        category_map = np.asarray(category_map, dtype=np.int64)
        item_category = np.asarray(item_category, dtype=np.int64)
        n_items = len(item_category)
        n_cats = int(item_category.max()) + 1 if n_items else 0
        a: dict[str, np.ndarray] = {"item_category": item_category}

        def regroup(indptr, n_groups, group_map, values, value_map, *extra):
            """CSR rows re-keyed by ``group_map`` (None: same groups), values by ``value_map``; order kept."""
            groups = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            g = groups if group_map is None else group_map[groups]
            v = value_map[values] if value_map is not None else values
            keep = (g >= 0) & (v >= 0)
            order = np.argsort(g[keep], kind="stable")
            return (_csr(g[keep][order], n_groups), v[keep][order], *(x[keep][order] for x in extra))

        a["hist_indptr"], a["hist_items"] = regroup(self.hist_indptr, self.n_users, None, self.hist_items, item_map)
        a["recent_indptr"], a["recent_items"] = regroup(
            self.recent_indptr, self.n_users, None, self.recent_items, item_map
        )
        a["covisit_indptr"], a["covisit_items"], a["covisit_scores"] = regroup(
            self.covisit_indptr, n_items, item_map, self.covisit_items, item_map, self.covisit_scores
        )
        a["ucat_indptr"], a["ucat_cats"], a["ucat_share"] = regroup(
            self.ucat_indptr, self.n_users, None, self.ucat_cats, category_map, self.ucat_share
        )
        a["cat_indptr"], a["cat_items"], a["cat_pop"] = regroup(
            self.cat_indptr, n_cats, category_map, self.cat_items, item_map, self.cat_pop
        )
        trend = item_map[self.trending_items]
        a["trending_items"], a["trending_scores"] = trend[trend >= 0], self.trending_scores[trend >= 0]
        return CandidateRetriever(config=self.config, n_users=self.n_users, n_items=n_items, arrays=a)

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
        return self._covisit_scored(seeds, k)[0]

    def _covisit_scored(self, seeds: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        seeds = np.asarray(seeds, dtype=np.int64)
        seeds = seeds[(seeds >= 0) & (seeds < self.n_items)]
        empty = np.zeros(0, np.int64), np.zeros(0)
        if len(seeds) == 0 or k <= 0:
            return empty
        starts, ends = self.covisit_indptr[seeds], self.covisit_indptr[seeds + 1]
        lens = ends - starts
        if lens.sum() == 0:
            return empty
        idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        seed_w = np.repeat(1.0 / (1.0 + np.arange(len(seeds))), lens)
        nb, inv = np.unique(self.covisit_items[idx], return_inverse=True)
        score = np.bincount(inv, weights=self.covisit_scores[idx] * seed_w)
        top = np.lexsort((nb, -score))[:k]
        return nb[top], score[top]

    def popular_in_categories(self, user: int, k: int) -> np.ndarray:
        if not self._known(user) or k <= 0:
            return np.zeros(0, np.int64)
        s, e = self.ucat_indptr[user], self.ucat_indptr[user + 1]
        return self._popular_in(self.ucat_cats[s:e], self.ucat_share[s:e], k)[0]

    def _popular_in(self, cats: np.ndarray, share: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        parts, scores = [], []
        for c, sh in zip(cats, share, strict=True):
            cs, ce = self.cat_indptr[c], self.cat_indptr[c + 1]
            parts.append(self.cat_items[cs:ce])
            scores.append(self.cat_pop[cs:ce] * sh)
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0)
        it, sc = np.concatenate(parts), np.concatenate(scores)
        top = np.lexsort((it, -sc))[:k]
        return it[top], sc[top]

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
            covisit=self.covisit(self._seeds(cfg, self.recent(user), session_items), cfg.k_covisit),
            popular=self.popular_in_categories(user, cfg.k_category),
        )

    def user_sources(
        self,
        items: np.ndarray,
        timestamps: np.ndarray,
        weights: np.ndarray,
        *,
        bought: np.ndarray | None = None,
        now: float | None = None,
    ) -> UserSources:
        """One user's source state (own history order, recent items, favourite categories) from that user's
        events alone, computed exactly as :meth:`fit` computes it for every user: the live path merges
        events newer than the fit and pays for this user's events only. Also the per-item statistics the
        ranker gets as stage-1 signals: weighted and time-decayed repeat counts, last purchase and the
        typical interval between purchase days.

        ``items``: catalogue rows (events on items outside the catalogue already dropped), ``timestamps``
        seconds, ``weights`` per event (the fit's event-type weights), ``bought``: which events are
        purchases, ``now``: the request's time (decay; default the last event)."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            z, f = np.zeros(0, np.int64), np.zeros(0)
            return UserSources(z, z, z, f, f, f, f, f)
        ts = np.asarray(timestamps, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        now = float(ts.max()) if now is None else float(now)
        uniq, inv = np.unique(items, return_inverse=True)
        cnt = np.bincount(inv, weights=w)
        last = np.full(len(uniq), -np.inf)
        np.maximum.at(last, inv, ts)
        order = np.lexsort((-last, -cnt))
        history = uniq[order]
        recent = uniq[np.argsort(-last, kind="stable")][: self.config.recent_items]
        cats = self.item_category[items]
        ck, cinv = np.unique(cats, return_inverse=True)
        ccnt = np.bincount(cinv, weights=w)
        top = np.lexsort((ck, -ccnt))[: self.config.top_categories]
        decay = np.exp2(-np.clip(now - ts, 0, None) / self.config.repeat_half_life_s)
        decayed = np.bincount(inv, weights=w * decay)
        bought_last = np.full(len(uniq), -1.0)
        interval = np.full(len(uniq), np.nan)
        if bought is not None and np.any(bought):
            b = np.asarray(bought, dtype=bool)
            bi, bday = inv[b], np.floor(ts[b] / 86_400.0)
            np.maximum.at(bought_last, bi, ts[b])
            key, first = np.unique(bi * 1_000_000 + bday.astype(np.int64), return_index=True)  # distinct days
            days_item = key // 1_000_000
            n_days = np.bincount(days_item, minlength=len(uniq))
            lo = np.full(len(uniq), np.inf)
            hi = np.full(len(uniq), -np.inf)
            np.minimum.at(lo, days_item, bday[first])
            np.maximum.at(hi, days_item, bday[first])
            rep = n_days >= 2
            interval[rep] = (hi[rep] - lo[rep]) / (n_days[rep] - 1)
        return UserSources(
            history,
            recent,
            ck[top],
            ccnt[top] / w.sum(),
            cnt[order],
            decayed[order],
            bought_last[order],
            interval[order],
        )

    def candidates_from(
        self,
        sources: UserSources,
        *,
        k_total: int | None = None,
        session_items: np.ndarray | None = None,
        config: RetrievalConfig | None = None,
        now: float | None = None,
    ) -> Candidates:
        """:meth:`candidates` for a user described by :meth:`user_sources` (fitted or not)."""
        cfg = config or self.config
        if k_total is not None and k_total != cfg.k_total:
            cfg = cfg.with_total(k_total)
        # each source once: the same lists propose the candidates and give their signals
        covisit = self._covisit_scored(self._seeds(cfg, sources.recent, session_items), cfg.k_covisit)
        popular = self._popular_in(sources.categories, sources.category_share, cfg.k_category)
        out = self._interleave(cfg, history=sources.history[: cfg.k_history], covisit=covisit[0], popular=popular[0])
        signals = self.signals(sources, out.items, covisit=covisit, popular=popular, cfg=cfg, now=now)
        signals[:, SIGNALS.index("s1_position")] = np.log1p(np.arange(len(out.items), dtype=np.float32))
        return out.with_signals(signals)

    def signals(
        self,
        sources: UserSources,
        items: np.ndarray,
        *,
        covisit: tuple[np.ndarray, np.ndarray],
        popular: tuple[np.ndarray, np.ndarray],
        cfg: RetrievalConfig | None = None,
        now: float | None = None,
    ) -> np.ndarray:
        """(N, len(SIGNALS)) float32: what stage 1 knows about each of ``items`` for this user, whether or
        not a source proposed it (an item no source ranks gets :func:`absent_signals`' values). ``s1_position``
        is that of an item outside the candidate list (:meth:`candidates_from` sets the candidates' places).
        ``covisit`` and ``popular`` (items, scores): the co-occurrence and category lists that proposed them."""
        cfg = cfg or self.config
        items = np.asarray(items, dtype=np.int64)
        n = len(items)
        out = absent_signals(n)
        if n == 0:
            return out
        col = {name: j for j, name in enumerate(SIGNALS)}

        def put(name_score: str, name_rank: str, listed: np.ndarray, score: np.ndarray) -> None:
            if not len(listed):
                return
            order = np.argsort(listed, kind="stable")
            pos = np.minimum(np.searchsorted(listed[order], items), len(listed) - 1)
            hit = listed[order][pos] == items
            where = order[pos[hit]]
            out[hit, col[name_score]] = score[where]
            out[hit, col[name_rank]] = 1.0 / (1.0 + where)

        # the user's own items: weighted count, time-decayed count, their rank in the history source
        h = sources.history
        put("s1_history_count", "s1_history_rank", h, np.log1p(sources.history_count))
        if len(h):
            order = np.argsort(h, kind="stable")
            pos = np.minimum(np.searchsorted(h[order], items), len(h) - 1)
            hit = h[order][pos] == items
            j = order[pos[hit]]
            out[hit, col["s1_history_decayed"]] = np.log1p(sources.history_decayed[j])
            last = sources.bought_last[j]
            t_now = float(now) if now is not None else float(last.max(initial=0.0))
            days = np.where(last >= 0, np.clip((t_now - last) / 86_400.0, 0, 365.0), 365.0)
            out[hit, col["days_since_bought"]] = np.log1p(days)
            interval = sources.bought_interval[j]
            has = np.isfinite(interval)
            iv = np.where(has, np.maximum(interval, 1.0), 0.0)
            out[hit, col["repurchase_interval"]] = np.where(has, np.log1p(iv), 0.0)
            out[hit, col["repurchase_due"]] = np.where(has, np.clip(days / np.maximum(iv, 1.0), 0, 10.0), 0.0)
        nb, sc = covisit
        put("s1_covisit_score", "s1_covisit_rank", nb, np.log1p(sc))
        it, sc = popular
        put("s1_category_score", "s1_category_rank", it, sc)
        k = cfg.k_trending
        put("s1_trend_score", "s1_trend_rank", self.trending_items[:k], self.trending_scores[:k])
        return out

    @staticmethod
    def _seeds(cfg: RetrievalConfig, recent: np.ndarray, session_items: np.ndarray | None) -> np.ndarray:
        """Co-occurrence seeds: this session's items, then the recent ones (newest first)."""
        seeds = recent[: cfg.recent_items]
        if session_items is not None and len(session_items):
            seeds = np.concatenate([np.asarray(session_items, dtype=np.int64), seeds])[: cfg.recent_items]
        return seeds

    def _interleave(
        self, cfg: RetrievalConfig, *, history: np.ndarray, covisit: np.ndarray, popular: np.ndarray
    ) -> Candidates:
        lists = [history, covisit, popular, self.trending(cfg.k_trending)]
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

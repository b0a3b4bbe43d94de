"""Stage 3 of the pipeline (rules over a ranked list) and how its one learned knob is chosen.

:func:`apply_rules`: in stock, not excluded (e.g. in the cart), at most ``max_per_category`` per category,
and ``explore_slots`` of the top k kept for the best-ranked items new to the user.

Why the explore slots: the ranker is trained pointwise on stage 1's candidates, where an item the user
bought before is four times as likely to be in the next basket as a new one (Ta Feng: 2.9% against
0.7% of candidate rows). Ranked by that probability alone, a user's own staples fill the top 10 and the
items new to them, which the ranker orders well among themselves, rarely reach it (Ta Feng, 3,000
tested customers: the true new items sit at median rank 49 of 200, rank 28 among the new candidates).
:func:`choose_explore_slots` picks the number of kept slots on the validation rows (never the test
set): the smallest number with which the re-ranked list finds the basket's new items at least as
well as stage 1's own order of the same candidates does.

The explore boost is the other way to spend the same budget, and the one the Lagrangian points to: rank
by ``log p + boost`` for new items (``p`` the ranker's probability). Maximising expected hits plus
``lambda`` times expected new hits ranks by ``p * (1 + lambda)`` for new items, so with ``boost =
log(1 + lambda)`` a new item takes a place only where it costs the least expected repeat hits: a loyal
customer whose staples are near-certain keeps them, a customer whose repeat items are weak sees more new
ones. A fixed slot count takes the same number of places from both. :func:`choose_explore_policy` picks
slots or boost on the validation rows: the one that finds the most new items within the same recall budget.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def apply_rules(
    rows: np.ndarray,
    *,
    k: int,
    in_stock: np.ndarray | None = None,
    exclude: Iterable[int] = (),
    category: np.ndarray | None = None,
    max_per_category: int | None = None,
    explore: np.ndarray | None = None,
    explore_slots: int = 0,
) -> np.ndarray:
    """Positions (into ``rows``, already best first) of the top-k that pass the rules, in rank order.

    ``explore`` (bool per position: the item is new to the user) with ``explore_slots`` > 0: the first
    ``explore_slots`` new items that pass are in the top k whatever their rank; the other positions go to
    the best of the rest. A slot the category cap blocks is filled by the next item that passes."""
    rows = np.asarray(rows, dtype=np.int64)
    ok = np.ones(len(rows), dtype=bool)
    if in_stock is not None:
        ok &= in_stock[rows]
    excl = np.fromiter(exclude, dtype=np.int64)
    if len(excl):
        ok &= ~np.isin(rows, excl)
    pos = np.flatnonzero(ok)
    reserved = np.zeros(len(rows), dtype=bool)
    if explore is not None and explore_slots > 0:
        reserved[pos[np.asarray(explore, dtype=bool)[pos]][: min(explore_slots, k)]] = True
    capped = max_per_category is not None and category is not None
    free_budget = k - int(reserved.sum())
    if not capped:  # no cap: the kept new items and the best of the rest, in rank order (no Python loop)
        return np.sort(np.concatenate([np.flatnonzero(reserved), pos[~reserved[pos]][:free_budget]]))
    out: list[int] = []
    per_cat: dict[int, int] = {}

    def take(p: int) -> bool:
        if capped:
            c = int(category[rows[p]])
            if per_cat.get(c, 0) >= max_per_category:
                return False
            per_cat[c] = per_cat.get(c, 0) + 1
        out.append(int(p))
        return True

    n_free = 0
    for p in pos:
        if not reserved[p] and n_free >= free_budget:
            continue
        if take(p) and not reserved[p]:
            n_free += 1
        if len(out) == k:
            break
    if len(out) < k:  # reserved items the cap blocked: the next best that pass fill their slots
        chosen = set(out)
        for p in pos:
            if p not in chosen and take(p) and len(out) == k:
                break
        out.sort()
    return np.array(out, dtype=np.int64)


def explore_recall_by_slots(
    group: np.ndarray,
    score: np.ndarray,
    label: np.ndarray,
    new: np.ndarray,
    *,
    k: int = 10,
    max_slots: int | None = None,
    popularity: np.ndarray | None = None,
    boosts: tuple[float, ...] = (),
) -> dict:
    """Within-candidate recall on labelled candidate rows, per number of explore slots.

    Rows: one per (request, candidate), ``group`` the request, in stage 1's order within a request;
    ``score`` the ranker's, ``label`` 1 when the candidate is in the next basket, ``new`` when it is new to
    the user. Returns ``{"slots": [0..max_slots], "recall": [...], "explore_recall": [...],
    "stage1_explore_recall": x, "stage1_recall": y, "requests": n}``: recall@k over the basket items among
    the candidates, and that recall restricted to the new ones (requests with a new positive), for the
    ranker's order with 0, 1, ... slots kept, and for stage 1's own order. ``score`` must be a probability
    when ``boosts`` are given (each adds ``"boosts"``, ``"boost_recall"``, ``"boost_explore_recall"``: the
    order by ``log score + boost * new``, no slots); ``popularity`` (per row, e.g. the item's past count)
    adds ``"popularity_recall"`` / ``"popularity_explore_recall"``: the candidates in popularity order."""
    max_slots = k if max_slots is None else max_slots
    df = pd.DataFrame(
        {"g": np.asarray(group), "s": np.asarray(score, np.float64), "y": np.asarray(label, np.float64) > 0,
         "new": np.asarray(new, bool)}
    )  # fmt: skip
    if popularity is not None:
        df["pop"] = np.asarray(popularity, np.float64)
    df["stage1_rank"] = df.groupby("g", sort=False).cumcount()
    pos_per = df.groupby("g")["y"].sum()
    df = df[df["g"].map(pos_per) > 0]
    pos_per = pos_per[pos_per > 0]
    new_pos = df[df["new"]].groupby("g")["y"].sum().reindex(pos_per.index, fill_value=0)
    explorers = new_pos.index[new_pos > 0]
    df = df.sort_values(["g", "s"], ascending=[True, False], kind="stable")
    df["rank_new"] = df.groupby(["g", "new"]).cumcount()

    def recalls(chosen: pd.DataFrame) -> tuple[float, float]:
        hits = chosen.groupby("g")["y"].sum().reindex(pos_per.index, fill_value=0)
        new_hits = chosen[chosen["new"]].groupby("g")["y"].sum().reindex(explorers, fill_value=0)
        rec = float((hits / pos_per).mean()) if len(pos_per) else float("nan")
        exp = float((new_hits / new_pos[explorers]).mean()) if len(explorers) else float("nan")
        return rec, exp

    out = {"slots": [], "recall": [], "explore_recall": []}
    for m in range(max_slots + 1):
        kept = df["new"] & (df["rank_new"] < m)
        n_kept = kept.groupby(df["g"]).transform("sum")
        rest = df[~kept]
        rest_rank = rest.groupby("g").cumcount()
        chosen = pd.concat([df[kept], rest[rest_rank < (k - n_kept[~kept])]])
        rec, exp = recalls(chosen)
        out["slots"].append(m)
        out["recall"].append(rec)
        out["explore_recall"].append(exp)
    out["stage1_recall"], out["stage1_explore_recall"] = recalls(df[df["stage1_rank"] < k])
    if popularity is not None:
        by_pop = df.sort_values(["g", "pop", "stage1_rank"], ascending=[True, False, True], kind="stable")
        out["popularity_recall"], out["popularity_explore_recall"] = recalls(by_pop[by_pop.groupby("g").cumcount() < k])
    if boosts:
        out["boosts"], out["boost_recall"], out["boost_explore_recall"] = [], [], []
        log_p = np.log(np.clip(df["s"].to_numpy(), 1e-12, None))
        for b in boosts:
            key = log_p + float(b) * df["new"].to_numpy()
            ranked = df.assign(key=key).sort_values(["g", "key"], ascending=[True, False], kind="stable")
            rec, exp = recalls(ranked[ranked.groupby("g").cumcount() < k])
            out["boosts"].append(float(b))
            out["boost_recall"].append(rec)
            out["boost_explore_recall"].append(exp)
    out["requests"] = int(len(pos_per))
    return out


EXPLORE_BOOSTS: tuple[float, ...] = tuple(round(0.25 * i, 2) for i in range(1, 17))  # log(1 + lambda), up to 4


def boosted_order(logits: np.ndarray, new: np.ndarray | None, boost: float) -> np.ndarray:
    """Positions of ``logits`` best first by ``log sigmoid(logit) + boost * new`` (the explore boost; with
    boost 0 or no ``new``, the plain score order). Stable: ties keep their given order."""
    logits = np.asarray(logits, np.float64)
    if new is None or boost <= 0:
        return np.argsort(-logits, kind="stable")
    key = -np.logaddexp(0.0, -logits) + float(boost) * np.asarray(new, np.float64)
    return np.argsort(-key, kind="stable")


EXPLORE_RECALL_TOLERANCE = 0.05  # explore slots may cost at most this share of the best validation recall


def choose_explore_slots(table: dict, *, tolerance: float = EXPLORE_RECALL_TOLERANCE) -> int:
    """The number of explore slots, chosen on the validation rows.

    Only counts whose validation recall stays within ``tolerance`` (relative) of the best count's are
    allowed: slots for new items must not trade away the items the customer comes back for. Among them,
    the smallest whose explore recall reaches stage 1's own order's (the list a shop without the ranker
    shows); when none does, the allowed count with the best explore recall; 0 without data."""
    target = table.get("stage1_explore_recall")
    if target is None or not np.isfinite(target):
        return 0
    recall = np.asarray(table["recall"], np.float64)
    explore = np.asarray(table["explore_recall"], np.float64)
    best = np.nanmax(recall) if np.isfinite(recall).any() else np.nan
    allowed = [
        i for i, r in enumerate(recall) if not np.isfinite(best) or (np.isfinite(r) and r >= best * (1 - tolerance))
    ]
    for i in allowed:
        if np.isfinite(explore[i]) and explore[i] >= target:
            return int(table["slots"][i])
    finite = [i for i in allowed if np.isfinite(explore[i])]
    if not finite:
        return int(table["slots"][allowed[0]]) if allowed else 0
    return int(table["slots"][max(finite, key=lambda i: (explore[i], -i))])


EXPLORE_MIN_REQUESTS = 200  # fewer validation requests with a positive: no explore policy (the table is noise)


def choose_explore_policy(
    table: dict, *, tolerance: float = EXPLORE_RECALL_TOLERANCE, min_requests: int = EXPLORE_MIN_REQUESTS
) -> tuple[int, float]:
    """``(explore_slots, explore_boost)`` chosen on the validation rows; at most one of them is non-zero.

    The budget is :func:`choose_explore_slots`' (overall recall within ``tolerance`` of the best policy's:
    what the shop gives up for discovery); within it, the policy that finds the most of the items new to
    the customer (best explore recall; ties: better recall, fewer slots, smaller boost). Spending the budget
    rather than stopping at stage 1's explore recall: on Ta Feng the cheapest policy that reached stage 1's
    (and the popularity order's) explore recall on validation only tied popularity's on the test
    (0.0553 vs 0.0554). ``(0, 0.0)`` without validation figures or with fewer than ``min_requests``
    validation requests: on a young shop's log (a few dozen requests) the table is noise, and a boost chosen
    on 16 requests pulled the pipeline below stage 1's order on a demo snapshot. A table without boosts
    (metrics from before) gives :func:`choose_explore_slots`' answer."""
    if table.get("requests", min_requests) < min_requests:
        return 0, 0.0
    if "boosts" not in table:
        return choose_explore_slots(table, tolerance=tolerance), 0.0
    policies = [
        (int(m), 0.0, r, e) for m, r, e in zip(table["slots"], table["recall"], table["explore_recall"], strict=True)
    ]
    policies += [(0, float(b), r, e) for b, r, e in
                 zip(table["boosts"], table["boost_recall"], table["boost_explore_recall"], strict=True)]  # fmt: skip
    policies = [p for p in policies if np.isfinite(p[2]) and np.isfinite(p[3])]
    if not policies:
        return 0, 0.0
    best = max(p[2] for p in policies)
    allowed = [p for p in policies if p[2] >= best * (1 - tolerance)]
    m, b, _, _ = max(allowed, key=lambda p: (p[3], p[2], -p[0], -p[1]))
    return m, b

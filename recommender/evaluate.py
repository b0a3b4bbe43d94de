"""Evaluation: AUC / log loss on validation rows, and next-basket ranking metrics of the multi-stage pipeline
(stage-1 candidates -> DLRM -> rules, :mod:`recommender.pipeline`) against three baselines (global popularity,
the user's own past items, item-to-item co-occurrence), all on the same users in the same run; optionally the
DLRM over the whole catalogue (single stage) as an extra row.

CLI: ``python -m recommender.evaluate --ta-feng PATH [--limit N] [--candidates 200] [--catalogue-users N]
--out var/bench/eval.json``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recommender.baselines import (
    CooccurrenceBaseline,
    PopularityBaseline,
    TifuKnnBaseline,
    UserHistoryBaseline,
    _purchases,
)
from recommender.config import DAY
from recommender.data import HistoryIndex, ItemTable, ShopData, examples_for
from recommender.metrics import (  # noqa: F401  (auc_score, log_loss: this module's API)
    auc_score,
    bootstrap_ci,
    log_loss,
    paired_bootstrap,
    ranking_metrics,
    split_recall,
    user_ndcg,
    user_recall,
)
from recommender.rows import history_index, training_rows
from recommender.train import predict, train_rows  # noqa: F401

# ------------------------------------------------------------------------------------ pointwise metrics


# ----------------------------------------------------------------------------------- model ranking


@dataclass
class CatalogScorer:
    """Scores every catalogue item for a user at a time, computing the item side once per time.

    The user side (user id, recent-items bag, context) is looked up once per user and broadcast over the
    catalogue; item embeddings are looked up once for the whole catalogue.
    """

    model: torch.nn.Module
    space: object  # FeatureSpace
    index: HistoryIndex
    items: np.ndarray  # catalogue ids to rank
    device: torch.device

    def __post_init__(self) -> None:
        from recommender.features import ITEM_SPARSE_KEYS, USER_SPARSE_KEYS

        self._user_keys, self._item_keys = USER_SPARSE_KEYS, ITEM_SPARSE_KEYS
        self._item_emb: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def scores(self, user: str, time_s: int, device_name: str = "") -> np.ndarray:
        """(len(items),) logits."""
        n = len(self.items)
        ex = examples_for(self.index, np.full(n, user), self.items, np.full(n, time_s, np.int64), device=device_name)
        enc = self.space.encode(ex)
        self.model.eval()
        if self._item_emb is None:
            full = enc.batch(slice(0, n)).to(self.device)
            emb = self.model.embed(full.sparse_features)
            self._item_emb = {k: emb[k] for k in self._item_keys}
            user_emb = {k: v[:1] for k, v in emb.items() if k not in self._item_keys}
            dense = full.dense_features
        else:
            one = enc.batch(slice(0, 1)).to(self.device)
            emb = self.model.embed(one.sparse_features)
            user_emb = {k: v for k, v in emb.items() if k not in self._item_keys}
            dense = torch.from_numpy(enc.dense).to(self.device)
        return self.model.score_embedded(dense, {**self._item_emb, **user_emb}).float().cpu().numpy()

    def rank(self, user: str, time_s: int, k: int = 10, exclude: set[str] | None = None) -> list[str]:
        s = self.scores(user, time_s)
        order = np.argsort(-s, kind="stable")
        if exclude:
            order = np.array([j for j in order[: k + len(exclude)] if self.items[j] not in exclude])
        return [str(x) for x in self.items[order[:k]]]


def rank_all_items(
    model: torch.nn.Module,
    space,
    users: Sequence[str],
    *,
    index: HistoryIndex,
    times: Sequence[int] | int,
    items: ItemTable | np.ndarray | None = None,
    k: int = 10,
    device: torch.device | str = "cpu",
) -> list[list[str]]:
    """Top-k item ids for each user out of the whole catalogue (``items``, default ``index.items``),
    scored by the model with features as of ``times`` (one per user, or one for all)."""
    catalogue = (
        index.items.item_id
        if items is None
        else (items.item_id if isinstance(items, ItemTable) else np.asarray(items, str))
    )
    scorer = CatalogScorer(model, space, index, catalogue, torch.device(device))
    ts = np.broadcast_to(np.asarray(times, dtype=np.int64), (len(users),))
    return [scorer.rank(u, int(t), k) for u, t in zip(users, ts, strict=True)]


# ------------------------------------------------------------------------------------------- Ta Feng run


BASELINES = ("popularity", "user_history", "cooccurrence", "tifu_knn")
PIPELINE = "dlrm_pipeline"  # the method the target is about: candidates -> DLRM -> rules


def shop_config():
    """The shop's own training settings (clicks, add-to-cart and purchases are positives), as the retrain
    uses them, with the evaluation's batch size."""
    from recommender.config import Config

    config = Config()
    config.train.batch_size = 4096
    return config


def discovery_log(n_users: int, *, seed: int = 0) -> ShopData:
    """A shop-shaped log (:func:`recommender.data.synthetic_shop`: sessions of impressions, clicks, carts
    and purchases driven by hidden category tastes) where nobody engages with an item again after buying
    it: every next purchase is new to the customer, the "you may also like" case."""
    from recommender.data import synthetic_shop

    data = synthetic_shop(n_users=n_users, n_items=max(400, n_users // 2), sessions_per_user=10, seed=seed)
    inter = data.interactions.sorted_by_time()
    frame = pd.DataFrame({"u": inter.user_id, "i": inter.item_id, "t": inter.timestamp, "e": inter.event_type})
    bought_at = frame[frame["e"] == "purchase"].groupby(["u", "i"])["t"].min()
    first = bought_at.reindex(pd.MultiIndex.from_arrays([frame["u"], frame["i"]])).to_numpy()
    after = np.isfinite(first) & (frame["t"].to_numpy() > first)
    again = (frame["e"].to_numpy() == "purchase") & (frame["t"].to_numpy() == first)
    dup = pd.Series(again).groupby([frame["u"], frame["i"]]).cumsum().to_numpy() > 1
    return ShopData(inter.take(np.flatnonzero(~after & ~dup)), data.items)


def next_basket_config():
    """The Ta Feng settings: purchases are the only positives (the ranker's rows come from
    :func:`recommender.rows.training_rows`)."""
    from recommender.config import Config

    config = Config()
    config.data.positive_weights = {"purchase": 1.0}
    config.train.batch_size = 4096
    config.train.epochs = 1
    return config


def _rank_with_pipeline(pipe, users, times, k: int, n_candidates: int, scored: bool) -> tuple[list, list]:
    """Each user's ranked candidates (all of them, best first: a :class:`Recommendations` with every row)
    through the pipeline, grouped by test day (item features as of that day), and the top-k ids the served
    rules pick from them (explore slots included). ``scored`` False: retrieval order (no model)."""
    from recommender.rules import apply_rules

    ranked: list = [None] * len(users)
    for day in np.unique(times):
        idx = np.flatnonzero(times == day)
        if scored:
            pipe.at_time(int(day))
        out = pipe.recommend_batch([str(u) for u in users[idx]], now=int(day), k=n_candidates,
                                   n_candidates=n_candidates, use_model=scored)  # fmt: skip
        for i, r in zip(idx, out.results, strict=True):
            ranked[i] = r
    top = [
        r.rows[apply_rules(r.rows, k=k, explore=r.new, explore_slots=pipe.explore_slots if scored else 0)]
        for r in ranked
    ]
    return ranked, [pipe.item_ids[t].tolist() for t in top]


def explore_diagnosis(ranked: list, truth: Sequence, seen: Sequence[set], item_ids: np.ndarray, k: int) -> dict:
    """Where the items new to each customer go: how many new items stage 1 hands the ranker, how many of
    the basket's new items are among them (supply), and their rank in the ranker's order, overall and
    among the new candidates alone (ordering)."""
    n_new, supply, rank_all, rank_new = [], [], [], []
    for r, t, s in zip(ranked, truth, seen, strict=True):
        ids = item_ids[r.rows]
        is_new = r.new if r.new is not None else ~np.isin(ids, list(s))
        n_new.append(int(is_new.sum()))
        want = set(np.asarray(t).tolist()) - s
        if not want:
            continue
        hit = np.isin(ids, list(want))
        supply.append(hit.sum() / len(want))
        rank_all += np.flatnonzero(hit).tolist()
        rank_new += np.flatnonzero(hit[is_new]).tolist()
    rank_all, rank_new = np.asarray(rank_all), np.asarray(rank_new)
    return {
        "new_candidates_per_user": float(np.mean(n_new)),
        "candidates_per_user": float(np.mean([len(r.rows) for r in ranked])),
        "explore_candidate_recall": float(np.mean(supply)) if supply else None,
        "explore_rank_median": float(np.median(rank_all)) if len(rank_all) else None,
        "explore_in_top_k": float(np.mean(rank_all < k)) if len(rank_all) else None,
        "explore_rank_among_new_median": float(np.median(rank_new)) if len(rank_new) else None,
        "explore_in_top_k_among_new": float(np.mean(rank_new < k)) if len(rank_new) else None,
    }


def evaluate_next_basket(
    data,
    *,
    config=None,
    eval_users: int = 2000,
    k: int = 10,
    seed: int = 0,
    progress: bool = True,
    extra_rankers: dict[str, Callable[[str, int, int], list[str]]] | None = None,
    n_candidates: int = 200,
    catalogue_users: int = 0,
    candidate_cutoffs: int = 3,
    refit: bool = True,
    compare_encoders: Sequence[str] = (),
    split=None,
) -> dict:
    """Train on everyone's history (last shopping day held out) and rank for a sample of ``eval_users`` tested
    customers (0 = all), against the three baselines on the same users.

    Training rows: :func:`recommender.rows.training_rows` (the shop's retrain builds them the same way):
    stage 1's candidates at ``candidate_cutoffs`` cutoffs, labelled by the next basket; validation AUC /
    log loss on the same kind of rows at the validation cutoff; then (``refit``) the ranker is trained
    again on all rows and that model is the one evaluated, as the shop registers it.

    Methods: the baselines; ``dlrm_pipeline`` (stage 1 candidates from :mod:`recommender.retrieval`, stage 2 the
    DLRM ranks ``n_candidates`` of them, stage 3 rules: in stock; no diversity cap, baskets repeat
    categories); ``dlrm_pipeline_diverse`` (the same ranking with at most 3 items per category);
    ``retrieval_only`` (stage 1 order, no model: what the DLRM adds); and, with ``catalogue_users`` > 0, ``dlrm``:
    the DLRM over the whole catalogue (single stage, slow) for the first ``catalogue_users`` of those users.
    ``compare_encoders``: other ``history_encoder`` values ("mean", "din") trained on the same rows and ranked
    through the same pipeline, each a ``dlrm_pipeline_<encoder>`` row with a paired bootstrap against
    ``dlrm_pipeline`` (whose encoder is ``config.model.history_encoder``).
    ``split``: the test (a :class:`recommender.data.NextBasketSplit`); by default each customer's last shopping
    day (:func:`recommender.data.next_basket_split`); the shop's own traffic is cut by time
    (:func:`recommender.data.time_split`).
    """
    from recommender.data import next_basket_split
    from recommender.pipeline import PipelineConfig, RecPipeline
    from recommender.rules import apply_rules, boosted_order

    config = config or next_basket_config()
    config.data.candidate_cutoffs = candidate_cutoffs
    config.data.candidates_per_user = n_candidates
    t0 = time.perf_counter()
    split = split or next_basket_split(data.interactions)
    history = split.history
    index = history_index(history, data.items, config)
    training = training_rows(history, data.items, config, index=index, seed=seed)
    tr, va = training.train, training.valid
    t_examples = time.perf_counter() - t0
    result = train_rows(training, config, refit=refit)
    t_train = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    n = len(split.users)
    pick = (
        np.sort(rng.choice(n, size=min(eval_users, n), replace=False))
        if eval_users and eval_users < n
        else np.arange(n)
    )
    users, times = split.users[pick], split.times[pick]
    truth = [split.baskets[i] for i in pick]
    types = [t for t in config.data.positive_weights]
    rows: dict[str, dict] = {}
    # per tested user: shopping days (history + the test day) and the items bought before
    bought = _purchases(history, types)
    n_days = (bought.assign(day=bought["ts"] // DAY).groupby("user")["day"].nunique() + 1).reindex(users).fillna(1)
    segment = np.select([n_days.to_numpy() >= 10, n_days.to_numpy() >= 5], ["10+", "5-9"], "2-4")
    seen_by_user = bought.groupby("user")["item"].agg(set)
    seen = [seen_by_user.get(u, set()) for u in users]
    per_user: dict[str, dict[str, np.ndarray]] = {}

    def record(name: str, ranked: list, seconds: float, subset: slice = slice(None)) -> None:
        tr_ = truth[subset]
        rows[name] = ranking_metrics(ranked, tr_, k)
        rows[name]["seconds"] = round(seconds, 2)
        if subset != slice(None):
            return
        rec, ndcg = user_recall(ranked, tr_, k), user_ndcg(ranked, tr_, k)
        repeat, explore = split_recall(ranked, tr_, seen, k)
        per_user[name] = {"recall": rec, "ndcg": ndcg, "repeat": repeat, "explore": explore}
        r = rows[name]
        r[f"recall@{k}_ci"] = bootstrap_ci(rec, seed=seed)
        r[f"ndcg@{k}_ci"] = bootstrap_ci(ndcg, seed=seed)
        r["repeat_recall"] = float(np.nanmean(repeat)) if np.isfinite(repeat).any() else None
        r["explore_recall"] = float(np.nanmean(explore)) if np.isfinite(explore).any() else None
        r["repeat_users"], r["explore_users"] = int(np.isfinite(repeat).sum()), int(np.isfinite(explore).sum())
        r["segments"] = {
            seg: {
                f"recall@{k}": float(np.nanmean(rec[segment == seg])),
                f"ndcg@{k}": float(np.nanmean(ndcg[segment == seg])),
                "users": int((segment == seg).sum()),
            }
            for seg in ("2-4", "5-9", "10+")
            if (segment == seg).any()
        }

    baselines_fitted = [cls(history, types) for cls in (PopularityBaseline, UserHistoryBaseline, CooccurrenceBaseline)]
    baselines_fitted.append(TifuKnnBaseline(history, types))
    rankers: dict[str, Callable] = {b.name: b for b in baselines_fitted}
    rankers.update(extra_rankers or {})
    for name, fn in rankers.items():
        t = time.perf_counter()
        if hasattr(fn, "rank_many"):
            record(name, fn.rank_many([str(u) for u in users], [int(x) for x in times], k), time.perf_counter() - t)
            continue
        fn = getattr(fn, "rank", fn)
        it = zip(users, times, strict=True)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(users), desc=f"rank {name}", leave=False)
        record(name, [fn(str(u), int(ts), k) for u, ts in it], time.perf_counter() - t)

    t = time.perf_counter()
    pipe = RecPipeline.build(
        history=history,
        items=data.items,
        model=result.model,
        space=result.features,
        config=config,
        pipeline_config=PipelineConfig(n_candidates=n_candidates, k=k, max_per_category=None),
        device=str(result.device),
    )
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    retrieval_ranked, ranked = _rank_with_pipeline(pipe, users, times, k, n_candidates, scored=False)
    record("retrieval_only", ranked, time.perf_counter() - t)
    t = time.perf_counter()
    cands, ranked = _rank_with_pipeline(pipe, users, times, k, n_candidates, scored=True)
    record(PIPELINE, ranked, time.perf_counter() - t + build_s)
    # the same model's scores without the explore slots (what they change)
    record(PIPELINE + "_no_slots", [pipe.item_ids[r.rows[boosted_order(r.scores, None, 0.0)[:k]]].tolist()
                                     for r in cands], 0.0)  # fmt: skip
    diverse = [
        pipe.item_ids[r.rows[apply_rules(r.rows, k=k, in_stock=pipe.in_stock, category=pipe.category,
                                         max_per_category=3, explore=r.new, explore_slots=pipe.explore_slots)]]
        for r in cands
    ]  # fmt: skip
    record(PIPELINE + "_diverse", [d.tolist() for d in diverse], 0.0)
    cand_rows = [r.rows for r in cands]
    rows[PIPELINE]["candidates_per_user"] = float(np.mean([len(r) for r in cand_rows]))
    cand_sets = [set(pipe.item_ids[r].tolist()) for r in cand_rows]
    rows[PIPELINE]["candidate_recall"] = float(
        np.mean([len(set(b.tolist()) & c) / len(b) for b, c in zip(truth, cand_sets, strict=True) if len(b)])
    )

    if catalogue_users:
        m = min(catalogue_users, len(users))
        t = time.perf_counter()
        all_rows = np.arange(len(pipe.item_ids))
        ranked = []
        for u, day in zip(users[:m], times[:m], strict=True):
            pipe.at_time(int(day))
            user, pair = pipe.features.user_request(str(u), all_rows, int(day))
            s = pipe.scorer.score(user, all_rows, pair).numpy()
            ranked.append(pipe.item_ids[np.argsort(-s, kind="stable")[:k]].tolist())
        record("dlrm", ranked, time.perf_counter() - t, slice(0, m))

    encoders = {config.model.history_encoder: _encoder_summary(result, pipe)}
    for encoder in compare_encoders:
        from recommender.config import Config

        other = Config.from_dict(config.to_dict())
        other.model.history_encoder = encoder
        other.model.explore_slots, other.model.explore_boost = 0, 0.0
        t = time.perf_counter()
        res = train_rows(training, other, refit=refit)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        alt = RecPipeline.build(history=history, items=data.items, model=res.model, space=res.features, config=other,
                                pipeline_config=PipelineConfig(n_candidates=n_candidates, k=k, max_per_category=None),
                                device=str(res.device))  # fmt: skip
        name = f"{PIPELINE}_{encoder}"
        _, ranked = _rank_with_pipeline(alt, users, times, k, n_candidates, scored=True)
        record(name, ranked, time.perf_counter() - t)
        encoders[encoder] = {
            **_encoder_summary(res, alt),
            "train_seconds": round(train_s, 1),
            "row": name,
            **{
                f"vs_{PIPELINE}_{m}": paired_bootstrap(per_user[name][m], per_user[PIPELINE][m], seed=seed)
                for m in ("recall", "ndcg", "explore")
            },
        }

    baselines = [r for r in rows if r in BASELINES]
    out = {
        "history_encoders": encoders,
        "explore_slots": int(pipe.explore_slots),
        "explore_boost": float(pipe.explore_boost),
        "explore_validation": result.metrics.get("explore_validation"),
        "explore_diagnosis": {
            PIPELINE: explore_diagnosis(cands, truth, seen, pipe.item_ids, k),
            "retrieval_only": explore_diagnosis(retrieval_ranked, truth, seen, pipe.item_ids, k),
        },
        "k": k,
        "train_examples": len(tr),
        "valid_examples": len(va),
        "valid_auc": result.metrics.get("valid_auc"),
        "valid_logloss": result.metrics.get("valid_logloss"),
        "valid_positive_rate": float(np.mean(va.label)) if len(va) else None,
        "training_rows": training.kind,
        "refit_examples": result.metrics.get("refit_examples"),
        "stage1_prior": result.metrics.get("stage1_prior"),
        "warm_start_steps": result.metrics.get("warm_start_steps"),
        "best_steps": result.metrics.get("best_steps"),
        "planned_steps": result.metrics.get("steps"),
        "validation_checks": result.metrics.get("validation_checks"),
        "train_examples_per_s": result.examples_per_s,
        "examples_seconds": round(t_examples, 1),
        "train_seconds": round(t_train, 1),
        "tested_users": int(len(users)),
        "all_tested_users": int(n),
        "catalogue": int(len(data.items)),
        "n_candidates": n_candidates,
        "methods": rows,
        "config": config.to_dict(),
    }
    for metric, key in ((f"recall@{k}", "recall"), (f"ndcg@{k}", "ndcg")):
        best = max(baselines, key=lambda r: rows[r][metric])
        base = rows[best][metric]
        out[f"dlrm_vs_best_{metric}"] = {
            "method": PIPELINE,
            "best_baseline": best,
            "relative_lift": (rows[PIPELINE][metric] / base - 1.0) if base > 0 else None,
            "paired_bootstrap": paired_bootstrap(per_user[PIPELINE][key], per_user[best][key], seed=seed),
        }
        out[f"dlrm_vs_retrieval_only_{metric}"] = paired_bootstrap(
            per_user[PIPELINE][key], per_user["retrieval_only"][key], seed=seed
        )
    # explore recall (items new to the customer) against the method that finds them best, on the same users
    explore_best = max((r for r in [*baselines, "retrieval_only"]), key=lambda r: rows[r]["explore_recall"] or 0.0)
    out["dlrm_vs_best_explore_recall"] = {
        "method": PIPELINE,
        "best": explore_best,
        "paired_bootstrap": paired_bootstrap(
            per_user[PIPELINE]["explore"], per_user[explore_best]["explore"], seed=seed
        ),
    }
    return out


def _encoder_summary(result, pipe) -> dict:
    return {
        "valid_auc": result.metrics.get("valid_auc"),
        "valid_logloss": result.metrics.get("valid_logloss"),
        "train_examples_per_s": result.examples_per_s,
        "explore_slots": int(pipe.explore_slots),
        "explore_boost": float(pipe.explore_boost),
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from recommender.rules import EXPLORE_MIN_REQUESTS

    k = report["k"]
    table = Table(
        title=f"Next basket ({report['catalogue']} items in the catalogue), {report['tested_users']} users, "
        f"pipeline ranks {report.get('n_candidates', '?')} candidates; [95% bootstrap CI]"
    )
    cols = ("method", f"Recall@{k} [CI]", f"NDCG@{k} [CI]", f"HR@{k}", "R@10 2-4 d", "R@10 5-9 d", "R@10 10+ d",
            "repeat R", "explore R", "users", "s")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right" if col != "method" else "left")

    def ci(r, m):
        lo, hi = r.get(f"{m}_ci", (float("nan"), float("nan")))
        return f"{r[m]:.4f} [{lo:.4f}, {hi:.4f}]"

    def seg(r, s):
        x = r.get("segments", {}).get(s)
        return f"{x[f'recall@{k}']:.4f}" if x else "-"

    def opt(x):
        return f"{x:.4f}" if x is not None else "-"

    for name, r in report["methods"].items():
        table.add_row(
            name, ci(r, f"recall@{k}"), ci(r, f"ndcg@{k}"), f"{r[f'hr@{k}']:.4f}", seg(r, "2-4"), seg(r, "5-9"),
            seg(r, "10+"), opt(r.get("repeat_recall")), opt(r.get("explore_recall")), str(r["users"]),
            f"{r['seconds']}",
        )  # fmt: skip
    console = Console(width=200)
    console.print(table)
    any_row = next(iter(report["methods"].values()))
    if "segments" in any_row:
        users = ", ".join(f"{s}: {v['users']}" for s, v in any_row["segments"].items())
        console.print(f"users per segment (shopping days incl. the test day): {users}; repeat / explore recall over "
                      f"{any_row['repeat_users']} / {any_row['explore_users']} users with such items")  # fmt: skip
    for metric in (f"recall@{k}", f"ndcg@{k}"):
        cmp = report[f"dlrm_vs_best_{metric}"]
        lift = cmp["relative_lift"]
        pb = cmp.get("paired_bootstrap") or {}
        console.print(
            f"{cmp.get('method', 'dlrm')} vs best baseline ({cmp['best_baseline']}) on {metric}: "
            + (f"{lift * 100:+.1f}%" if lift is not None else "n/a")
            + (f" (paired 95% CI {pb['rel_lo'] * 100:+.1f}%, {pb['rel_hi'] * 100:+.1f}%)" if pb else ""),
            markup=False,
        )
        ro = report.get(f"dlrm_vs_retrieval_only_{metric}")
        if ro:
            console.print(
                f"{cmp.get('method', 'dlrm')} vs retrieval_only on {metric}: {ro['rel'] * 100:+.1f}% "
                f"(paired 95% CI {ro['rel_lo'] * 100:+.1f}%, {ro['rel_hi'] * 100:+.1f}%)",
                markup=False,
            )
    ex = report.get("dlrm_vs_best_explore_recall")
    if ex:
        pb = ex["paired_bootstrap"]
        console.print(
            f"{ex['method']} vs the best at explore recall ({ex['best']}): {pb['rel'] * 100:+.1f}% "
            f"(paired 95% CI {pb['rel_lo'] * 100:+.1f}%, {pb['rel_hi'] * 100:+.1f}%; "
            f"P(not better) {pb['p_not_better']:.3f})",
            markup=False,
        )
    val = report.get("explore_validation")
    if val:
        pop = val.get("popularity_explore_recall")
        console.print(
            f"explore policy: {report.get('explore_slots')} slots kept in the top {k}, boost "
            f"{report.get('explore_boost', 0.0):.2f} for new items (chosen on {val['requests']:,} validation "
            f"requests: "
            + (
                "the most new items found within 5% of the best recall"
                if val["requests"] >= EXPLORE_MIN_REQUESTS
                else f"none, fewer than {EXPLORE_MIN_REQUESTS}"
            )
            + "; for comparison stage 1's order "
            f"finds {val['stage1_explore_recall']:.4f}"
            + (f", the popularity order {pop:.4f}" if pop is not None else "")
            + ")",
            markup=False,
        )
        for knob, fmt, keys in (
            ("slots", "{}", ("slots", "recall", "explore_recall")),
            ("boost", "{:.2f}", ("boosts", "boost_recall", "boost_explore_recall")),
        ):
            if val.get(keys[0]):
                console.print(
                    f"  validation, within candidates: {knob} / recall / explore recall: "
                    + "; ".join(
                        f"{fmt.format(x)} {r:.4f} {e:.4f}" for x, r, e in zip(*(val[c] for c in keys), strict=True)
                    ),
                    markup=False,
                )
    for name, d in (report.get("explore_diagnosis") or {}).items():
        if d.get("explore_rank_median") is None:
            continue
        console.print(
            f"{name}: {d['new_candidates_per_user']:.0f} of {d['candidates_per_user']:.0f} candidates/user are new "
            f"to the customer and hold {d['explore_candidate_recall']:.3f} of the basket's new items; those sit at "
            f"median rank {d['explore_rank_median']:.0f} ({d['explore_in_top_k']:.3f} in the top {k}), median rank "
            f"{d['explore_rank_among_new_median']:.0f} among the new candidates "
            f"({d['explore_in_top_k_among_new']:.3f} in their top {k})",
            markup=False,
        )
    encoders = report.get("history_encoders") or {}
    for encoder, e in encoders.items():
        line = (
            f"history encoder {encoder} ({e.get('row', PIPELINE)}): validation AUC {e['valid_auc'] or float('nan'):.4f}, "
            f"training {e['train_examples_per_s']:,.0f} examples/s, explore slots {e['explore_slots']}, boost {e.get('explore_boost', 0.0):.2f}"
        )
        for m in ("recall", "ndcg", "explore"):
            pb = e.get(f"vs_{PIPELINE}_{m}")
            if pb:
                line += (f"; {m} vs {PIPELINE} {pb['rel'] * 100:+.1f}% "
                         f"[{pb['rel_lo'] * 100:+.1f}%, {pb['rel_hi'] * 100:+.1f}%]")  # fmt: skip
        console.print(line, markup=False)
    pipe = report["methods"].get(PIPELINE, {})
    if "candidate_recall" in pipe:
        console.print(
            f"stage 1: {pipe['candidates_per_user']:.0f} candidates/user hold {pipe['candidate_recall']:.3f} "
            "of the next basket (the pipeline's recall ceiling)"
        )
    auc, ll = report.get("valid_auc"), report.get("valid_logloss")
    console.print(
        f"validation ({report.get('training_rows', 'pointwise')} rows) AUC "
        + (f"{auc:.4f}, log loss {ll:.4f}" if auc is not None else "n/a")
        + f"; training {report['train_examples_per_s']:,.0f} examples/s on {report['train_examples']:,} rows"
        + (f", refit on {report['refit_examples']:,}" if report.get("refit_examples") else "")
    )
    if report.get("validation_checks"):
        prior = report.get("stage1_prior")
        console.print(
            f"early stopping kept the model after {report['best_steps']:,} of {report['planned_steps']:,} updates"
            + (
                f" (small log: 0 is stage 1's order itself, the prior {prior['a']:+.3f} {prior['b']:+.3f}·log(1+place))"
                if prior
                else (
                    f" after {report['warm_start_steps']} fitting stage 1's order"
                    if report.get("warm_start_steps")
                    else ""
                )
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recommender.evaluate", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ta-feng", type=Path, help="Ta Feng purchase log (.csv or .zip)")
    source.add_argument(
        "--snapshot",
        type=Path,
        metavar="DIR",
        help="a shop export (interactions.parquet + items.parquet: manage.py export_training_data, or the "
        "retrain's var/snapshots/snap-*): the shop's own traffic, tested after a time cut",
    )
    source.add_argument(
        "--synthetic-discovery",
        type=int,
        metavar="USERS",
        help="a shop-shaped log of USERS shoppers where nobody buys an item twice (pure discovery)",
    )
    parser.add_argument("--limit", type=int, default=None, help="read only the first N lines")
    parser.add_argument("--eval-users", type=int, default=2000, help="tested customers to rank for (0 = all)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--arch", choices=["dlrm", "dlrm_dcn"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="least optimiser updates on a small log (0: batch size x epochs only)",
    )
    parser.add_argument("--candidates", type=int, default=200, help="stage-1 candidates the DLRM ranks")
    parser.add_argument(
        "--catalogue-users", type=int, default=0, help="also rank the whole catalogue with the DLRM for N users (slow)"
    )
    parser.add_argument(
        "--history-encoder",
        default=None,
        help="recent-items encoder(s), comma-separated (mean, din): the first is dlrm_pipeline's, each other one "
        "is trained on the same rows and ranked in the same run as a dlrm_pipeline_<encoder> row",
    )
    parser.add_argument("--out", type=Path, default=Path("var/bench/eval.json"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from recommender.data import interactions_from_retail_log

    config = next_basket_config() if args.ta_feng else shop_config()
    config.train.seed = args.seed
    config.train.progress = not args.no_progress
    if args.epochs:
        config.train.epochs = args.epochs
    if args.arch:
        config.model.arch = args.arch
    if args.threads:
        config.train.threads = args.threads
        torch.set_num_threads(args.threads)
    if args.batch_size:
        config.train.batch_size = args.batch_size
    if args.min_steps is not None:
        config.train.min_steps = args.min_steps
    encoders = [e.strip() for e in (args.history_encoder or "").split(",") if e.strip()]
    bad = [e for e in encoders if e not in ("mean", "din")]
    if bad:
        parser.error(f"--history-encoder: unknown encoder(s) {bad}; choose from mean, din")
    if encoders:
        config.model.history_encoder = encoders[0]
    t = time.perf_counter()
    if args.ta_feng:
        data = interactions_from_retail_log(args.ta_feng, limit=args.limit)
        source = {"path": str(args.ta_feng), "limit": args.limit, "lines": len(data.interactions)}
    elif args.snapshot:
        from recommender.data import load_parquet

        data = load_parquet(args.snapshot / "interactions.parquet", args.snapshot / "items.parquet")
        source = {"snapshot": str(args.snapshot), "events": len(data.interactions)}
    else:
        data = discovery_log(args.synthetic_discovery, seed=args.seed)
        source = {"synthetic_discovery_users": args.synthetic_discovery, "events": len(data.interactions)}
    print(f"read {len(data.interactions):,} events, {len(data.items):,} items in {time.perf_counter() - t:.1f}s")
    split = None
    if args.snapshot:
        from recommender.data import time_split

        split = time_split(
            data.interactions,
            positive_types=list(config.data.positive_weights),
            history_types=config.data.history_types,
            test_fraction=config.data.valid_fraction,
        )
        print(f"time cut at {int(split.times[0]) if len(split.users) else '-'}: {len(split.users):,} tested users")
    report = evaluate_next_basket(
        data,
        config=config,
        eval_users=args.eval_users,
        seed=args.seed,
        progress=not args.no_progress,
        n_candidates=args.candidates,
        catalogue_users=args.catalogue_users,
        compare_encoders=[e for e in encoders[1:] if e != encoders[0]],
        split=split,
    )
    report["source"] = source
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation: AUC / log loss on validation rows, and next-basket ranking metrics over the whole catalogue
against three baselines (global popularity, the user's own past items, item-to-item co-occurrence), all in
the same run.

CLI: ``python -m recommender.evaluate --ta-feng PATH [--limit N] --out var/bench/eval.json``
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

from recommender.data import DAY, HistoryIndex, Interactions, ItemTable, examples_for

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


@torch.no_grad()
def predict(model, encoded, *, batch_size: int = 8192, device: torch.device | str = "cpu") -> np.ndarray:
    """Probabilities (N,) for `EncodedExamples`, in row order."""
    model.eval()
    out = []
    for batch in encoded.batches(batch_size):
        b = batch.to(device)
        out.append(torch.sigmoid(model(b.dense_features, b.sparse_features)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


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


# ------------------------------------------------------------------------------------------- baselines


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
            user_emb = {k: emb[k][:1] for k in self._user_keys}
            dense = full.dense_features
        else:
            one = enc.batch(slice(0, 1)).to(self.device)
            emb = self.model.embed(one.sparse_features)
            user_emb = {k: emb[k] for k in self._user_keys}
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


def evaluate_next_basket(
    data,
    *,
    config=None,
    eval_users: int = 2000,
    k: int = 10,
    seed: int = 0,
    progress: bool = True,
    extra_rankers: dict[str, Callable[[str, int, int], list[str]]] | None = None,
) -> dict:
    """Train on everyone's history (last shopping day held out), rank the whole catalogue for a sample of
    ``eval_users`` tested customers (0 = all) and compare with the three baselines on the same users."""
    from recommender.config import Config
    from recommender.data import build_examples, next_basket_split, split_by_time
    from recommender.train import train

    config = config or Config()
    t0 = time.perf_counter()
    split = next_basket_split(data.interactions)
    history = split.history
    index = HistoryIndex(
        history,
        data.items,
        history_types=config.data.history_types,
        recent_items=config.features.recent_items,
        trend_window_s=config.features.trend_window_s,
    )
    examples = build_examples(history, data.items, config.data, features=config.features, seed=seed, index=index)
    tr, va, _ = split_by_time(examples, config.data.valid_fraction)
    result = train(tr, config, valid=va)
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
    rankers: dict[str, Callable[[str, int, int], list[str]]] = {}
    for cls in (PopularityBaseline, UserHistoryBaseline, CooccurrenceBaseline):
        b = cls(history, types)
        rankers[b.name] = b.rank
    scorer = CatalogScorer(result.model, result.features, index, data.items.item_id, result.device)
    rankers["dlrm"] = scorer.rank
    rankers.update(extra_rankers or {})
    rows = {}
    for name, fn in rankers.items():
        t = time.perf_counter()
        it = zip(users, times, strict=True)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(users), desc=f"rank {name}", leave=False)
        ranked = [fn(str(u), int(ts), k) for u, ts in it]
        rows[name] = ranking_metrics(ranked, truth, k)
        rows[name]["seconds"] = round(time.perf_counter() - t, 2)
    baselines = [r for r in rows if r in ("popularity", "user_history", "cooccurrence")]
    out = {
        "k": k,
        "train_examples": len(tr),
        "valid_examples": len(va),
        "valid_auc": result.metrics.get("valid_auc"),
        "valid_logloss": result.metrics.get("valid_logloss"),
        "train_examples_per_s": result.examples_per_s,
        "train_seconds": round(t_train, 1),
        "tested_users": int(len(users)),
        "all_tested_users": int(n),
        "catalogue": int(len(data.items)),
        "methods": rows,
        "config": config.to_dict(),
    }
    for metric in (f"recall@{k}", f"ndcg@{k}"):
        best = max(baselines, key=lambda r: rows[r][metric])
        base = rows[best][metric]
        out[f"dlrm_vs_best_{metric}"] = {
            "best_baseline": best,
            "relative_lift": (rows["dlrm"][metric] / base - 1.0) if base > 0 else None,
        }
    return out


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    k = report["k"]
    table = Table(title=f"Next basket, whole catalogue ({report['catalogue']} items), {report['tested_users']} users")
    for col in ("method", f"Recall@{k}", f"NDCG@{k}", f"HR@{k}", "seconds"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, r in report["methods"].items():
        table.add_row(
            name, f"{r[f'recall@{k}']:.4f}", f"{r[f'ndcg@{k}']:.4f}", f"{r[f'hr@{k}']:.4f}", f"{r['seconds']}"
        )
    console = Console()
    console.print(table)
    for metric in (f"recall@{k}", f"ndcg@{k}"):
        cmp = report[f"dlrm_vs_best_{metric}"]
        lift = cmp["relative_lift"]
        console.print(
            f"DLRM vs best baseline ({cmp['best_baseline']}) on {metric}: "
            + (f"{lift * 100:+.1f}%" if lift is not None else "n/a")
        )
    console.print(
        f"validation AUC {report['valid_auc']:.4f}, log loss {report['valid_logloss']:.4f}, "
        f"training {report['train_examples_per_s']:,.0f} examples/s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    from recommender.config import Config

    parser = argparse.ArgumentParser(prog="python -m recommender.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--ta-feng", type=Path, required=True, help="Ta Feng purchase log (.csv or .zip)")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N lines")
    parser.add_argument("--eval-users", type=int, default=2000, help="tested customers to rank for (0 = all)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--arch", choices=["dlrm", "dlrm_dcn"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("var/bench/eval.json"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from recommender.data import interactions_from_retail_log

    config = Config()
    config.data.positive_weights = {"purchase": 1.0}
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
    t = time.perf_counter()
    data = interactions_from_retail_log(args.ta_feng, limit=args.limit)
    print(f"read {len(data.interactions):,} lines, {len(data.items):,} items in {time.perf_counter() - t:.1f}s")
    report = evaluate_next_basket(
        data, config=config, eval_users=args.eval_users, seed=args.seed, progress=not args.no_progress
    )
    report["source"] = {"path": str(args.ta_feng), "limit": args.limit, "lines": len(data.interactions)}
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 1's knob, measured: Recall@10, NDCG@10 and p50/p99 latency of the pipeline per number of
candidates the ranker scores, beside stage 1's own order and the single-stage ranker over the whole
catalogue, on the same users in the same run.

    python -m recommender.sweep [--synthetic-users 800 | --ta-feng PATH --limit N]
        [--settings 25,50,100,200,400] [--eval-users 300] [--out var/bench/pipeline_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from recommender.config import Config
from recommender.data import ShopData
from recommender.metrics import ranking_metrics
from recommender.pipeline import RecPipeline
from recommender.rules import apply_rules
from recommender.serving import Precision


@dataclass(frozen=True)
class SweepRow:
    setting: str  # "retrieval-only@N", "N" candidates, or "catalogue" (rank everything: single stage)
    n_candidates: float  # mean ranked per user
    recall_at_10: float
    ndcg_at_10: float
    p50_ms: float
    p99_ms: float
    model_p50_ms: float
    model_p99_ms: float


def _pct(ns: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(ns) / 1e6, q)) if ns else float("nan")


def sweep(
    pipeline: RecPipeline,
    users: Sequence[str],
    times: Sequence[int],
    truth: Sequence[Sequence[str]],
    *,
    settings: Sequence[int] = (25, 50, 100, 200, 400),
    k: int = 10,
    include_catalogue: bool = True,
) -> list[SweepRow]:
    """Recall@k / NDCG@k and latency per ``n_candidates`` setting, on the same users in the same run;
    plus the model-free retrieval order at the largest setting and (``include_catalogue``) the
    single-stage baseline that ranks the whole catalogue."""
    order = np.argsort(np.asarray(times), kind="stable")
    users = [users[i] for i in order]
    times = [int(times[i]) for i in order]
    truth = [truth[i] for i in order]

    def run(n: int, scorer_on: bool, label: str) -> SweepRow:
        recs = []
        for u, t in zip(users, times, strict=True):
            if scorer_on:
                pipeline.at_time(t)  # item features as of the user's time (untimed: a serving refresh)
            recs.append(pipeline.recommend(u, now=t, k=k, n_candidates=n, use_model=scorer_on))
        m = ranking_metrics([r.item_ids.tolist() for r in recs], truth, k)
        total = [r.timings.total_ns for r in recs]
        model = [r.timings.rank_ns for r in recs]
        return SweepRow(
            setting=label,
            n_candidates=float(np.mean([r.n_candidates for r in recs])),
            recall_at_10=m[f"recall@{k}"],
            ndcg_at_10=m[f"ndcg@{k}"],
            p50_ms=_pct(total, 50),
            p99_ms=_pct(total, 99),
            model_p50_ms=_pct(model, 50),
            model_p99_ms=_pct(model, 99),
        )

    rows = [run(max(settings), False, f"retrieval-only@{max(settings)}")]
    rows += [run(n, True, str(n)) for n in settings]
    if include_catalogue and pipeline.scorer is not None:
        rows.append(_catalogue_row(pipeline, users, times, truth, k))
    return rows


def _catalogue_row(pipeline: RecPipeline, users, times, truth, k: int) -> SweepRow:
    """Single stage: score every catalogue item with the model, then the same rules."""

    M = len(pipeline.item_ids)
    all_rows = np.arange(M)
    ranked, total, model = [], [], []
    for u, t in zip(users, times, strict=True):
        pipeline.at_time(int(t))
        t0 = time.perf_counter_ns()
        user, pair = pipeline.features.user_request(u, all_rows, int(t))
        t1 = time.perf_counter_ns()
        s = pipeline.scorer.score(user, all_rows, pair).numpy()
        order = np.argsort(-s, kind="stable")
        t2 = time.perf_counter_ns()
        keep = apply_rules(
            order,
            k=k,
            in_stock=pipeline.in_stock,
            category=pipeline.category,
            max_per_category=pipeline.config.max_per_category,
        )
        ranked.append(pipeline.item_ids[order[keep]].tolist())
        total.append(time.perf_counter_ns() - t0)
        model.append(t2 - t1)
    m = ranking_metrics(ranked, truth, k)
    return SweepRow(
        "catalogue",
        float(M),
        m[f"recall@{k}"],
        m[f"ndcg@{k}"],
        _pct(total, 50),
        _pct(total, 99),
        _pct(model, 50),
        _pct(model, 99),
    )


def _print_sweep(rows: list[SweepRow], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in ("setting", "ranked/user", "recall@10", "ndcg@10", "p50 ms", "p99 ms", "model p50 ms", "model p99 ms"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(
            r.setting,
            f"{r.n_candidates:.0f}",
            f"{r.recall_at_10:.4f}",
            f"{r.ndcg_at_10:.4f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.model_p50_ms:.3f}",
            f"{r.model_p99_ms:.3f}",
        )
    Console(width=max(Console().width, 120)).print(t)


def run_sweep(
    data: ShopData,
    *,
    config: Config | None = None,
    settings: Sequence[int] = (25, 50, 100, 200, 400),
    eval_users: int = 300,
    seed: int = 0,
    precision: Precision = "fp32",
) -> dict:
    """Next-basket split (each user's last shopping day held out), train on the history, sweep the knob."""
    from recommender.data import next_basket_split
    from recommender.rows import training_rows
    from recommender.train import train_rows

    config = config or Config()
    split = next_basket_split(data.interactions)
    t0 = time.perf_counter()
    result = train_rows(training_rows(split.history, data.items, config, seed=seed), config)
    train_s = time.perf_counter() - t0
    pipe = RecPipeline.build(
        history=split.history,
        items=data.items,
        model=result.model,
        space=result.features,
        config=config,
        precision=precision,
        device="cpu",
    )
    rng = np.random.default_rng(seed)
    n = len(split.users)
    pick = (
        np.sort(rng.choice(n, size=min(eval_users, n), replace=False))
        if eval_users and eval_users < n
        else np.arange(n)
    )
    rows = sweep(pipe, split.users[pick], split.times[pick], [split.baskets[i] for i in pick], settings=settings)
    return {
        "users": int(len(pick)),
        "catalogue": int(len(data.items)),
        "valid_auc": result.metrics.get("valid_auc"),
        "train_seconds": round(train_s, 1),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "rows": [asdict(r) for r in rows],
    }


def main(argv: Sequence[str] | None = None) -> int:
    s = argparse.ArgumentParser(prog="python -m recommender.sweep", description=__doc__.split("\n")[0])
    src = s.add_mutually_exclusive_group()
    src.add_argument("--synthetic-users", type=int, default=800)
    src.add_argument("--ta-feng", type=Path, help="Ta Feng-format log (.csv or .zip)")
    s.add_argument("--limit", type=int, default=None, help="read at most this many log lines")
    s.add_argument("--settings", default="25,50,100,200,400")
    s.add_argument("--eval-users", type=int, default=300)
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = s.parse_args(argv)

    from recommender.data import interactions_from_retail_log, synthetic_shop

    if args.threads:
        torch.set_num_threads(args.threads)
    config = Config()
    config.train.progress = False
    config.train.seed = args.seed
    if args.epochs:
        config.train.epochs = args.epochs
    if args.ta_feng:
        data, title = interactions_from_retail_log(args.ta_feng, limit=args.limit), f"Ta Feng ({args.ta_feng.name})"
    else:
        data = synthetic_shop(n_users=args.synthetic_users, n_items=max(200, args.synthetic_users // 2), seed=args.seed)
        title = f"synthetic shop ({args.synthetic_users} users)"
    settings = [int(x) for x in args.settings.split(",") if x]
    report = run_sweep(
        data, config=config, settings=settings, eval_users=args.eval_users, seed=args.seed, precision=args.precision
    )
    report["data"] = title
    _print_sweep(
        [SweepRow(**r) for r in report["rows"]], f"pipeline sweep: {title}, {report['users']} users, {args.precision}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

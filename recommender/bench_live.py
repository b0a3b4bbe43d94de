"""Live request benchmark: one visitor, 500 candidates, one thread, logs of 100k, 1M and 10M events.

    python -m recommender.bench_live [--sizes 100000,1000000,10000000] [--requests 400]
        [--out var/bench/live_request.json]

For each log size, in the same process and the same run, the same visitor is served by

- ``snapshot``: :meth:`RecPipeline.recommend_snapshot`, stage 1 from the fitted retriever and the
  feature rows from the history index (its feature step allocates arrays as long as the log);
- ``live``: :meth:`RecPipeline.recommend` with a dozen fresh events merged into the visitor's history
  (stage 1 and features from that visitor's events alone);

requests alternating between the two so both see the same machine noise. Printed per size and path:
p50 / p99 of the feature step, of the DLRM forward alone (``Scorer.score``) and of the whole request,
and the ratios (snapshot / live; feature step / model). The model has random weights of the
production shape over the log's vocabularies: latency does not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from recommender.config import Config
from recommender.data import Interactions, synthetic_event_log
from recommender.features import FeatureSpace, Vocab
from recommender.model import build_model
from recommender.pipeline import PipelineConfig, RecPipeline

SIZES = (100_000, 1_000_000, 10_000_000)
CANDIDATES = 500


def _space(data, config: Config) -> FeatureSpace:
    f = config.features
    return FeatureSpace(
        f,
        {
            "user": Vocab(np.unique(data.interactions.user_id), f.oov_buckets),
            "item": Vocab(data.items.item_id, f.oov_buckets),
            "category": Vocab(np.unique(data.items.category), max(f.oov_buckets // 8, 1)),
            "brand": Vocab(np.unique(data.items.brand), max(f.oov_buckets // 8, 1)),
            "device": Vocab(np.unique(data.interactions.device), 4),
        },
        np.unique(np.quantile(data.items.price, np.linspace(0, 1, f.price_buckets + 1)[1:-1])),
    )


def _model(space: FeatureSpace, config: Config, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(
        config.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    )
    for name, p in model.named_parameters():
        if "embedding_bag" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model.eval()


def _pct(ns: Sequence[int], q: float) -> float:
    return float(np.percentile(np.asarray(ns, dtype=np.float64) / 1e6, q))


def bench_size(n_events: int, *, requests: int, seed: int = 0, log=print) -> dict:
    """Build the pipeline over a synthetic log of ``n_events`` and time both paths for one visitor."""
    config = Config()
    t0 = time.perf_counter()
    data = synthetic_event_log(n_events, seed=seed)
    gen_s = time.perf_counter() - t0
    space = _space(data, config)
    t0 = time.perf_counter()
    pipe = RecPipeline.build(
        history=data.interactions,
        items=data.items,
        model=_model(space, config, seed),
        space=space,
        config=config,
        pipeline_config=PipelineConfig(n_candidates=CANDIDATES, k=10),
        device="cpu",
    )
    build_s = time.perf_counter() - t0
    log(f"  {n_events:,} events: generated in {gen_s:.1f} s, pipeline built in {build_s:.1f} s")
    # the visitor: 90th percentile of activity (a regular, not the heaviest account)
    users, counts = np.unique(data.interactions.user_id, return_counts=True)
    user = str(users[np.argsort(counts, kind="stable")[int(0.9 * (len(users) - 1))]])
    now = int(data.interactions.timestamp.max()) + 60
    rng = np.random.default_rng(seed)
    n_fresh = 12
    fresh = Interactions.from_columns(
        user_id=np.full(n_fresh, user),
        item_id=data.items.item_id[rng.integers(0, len(data.items), n_fresh)],
        event_type=np.array(["view"] * 9 + ["click", "add_to_cart", "view"]),
        timestamp=now - 600 + np.arange(n_fresh) * 40,
        device=np.full(n_fresh, "mobile"),
    )
    history_len = len(pipe.features.index.user_history(user, now))
    del data

    def live():
        return pipe.recommend(user, now=now, k=10, n_candidates=CANDIDATES, device_name="mobile", fresh_events=fresh)

    def snapshot():
        return pipe.recommend_snapshot(user, now=now, k=10, n_candidates=CANDIDATES, device_name="mobile")

    for _ in range(30):  # warm-up: allocator, caches, lazy torch init
        live(), snapshot()
    out: dict[str, dict[str, list[int]]] = {p: {"features": [], "model": [], "total": []} for p in ("snapshot", "live")}
    n_cands = {}
    for _ in range(requests):
        for name, fn in (("snapshot", snapshot), ("live", live)):
            r = fn()
            out[name]["features"].append(r.timings.features_ns)
            out[name]["model"].append(r.timings.rank_ns)
            out[name]["total"].append(r.timings.total_ns)
            n_cands[name] = r.n_candidates
    paths = {}
    for name, t in out.items():
        paths[name] = {"candidates": int(n_cands[name])}
        for stage in t:
            paths[name][f"{stage}_p50_ms"] = round(_pct(t[stage], 50), 4)
            paths[name][f"{stage}_p99_ms"] = round(_pct(t[stage], 99), 4)
    s, v = paths["snapshot"], paths["live"]
    return {
        "events": n_events,
        "history_events_of_visitor": history_len,
        "fresh_events": n_fresh,
        "build_seconds": round(build_s, 1),
        "paths": paths,
        "ratios": {
            "features_p50_snapshot_over_live": round(s["features_p50_ms"] / v["features_p50_ms"], 2),
            "total_p50_snapshot_over_live": round(s["total_p50_ms"] / v["total_p50_ms"], 2),
            "total_p99_snapshot_over_live": round(s["total_p99_ms"] / v["total_p99_ms"], 2),
            "live_features_over_model_p50": round(v["features_p50_ms"] / v["model_p50_ms"], 2),
        },
    }


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"live request, 1 visitor, {CANDIDATES} candidates, {report['threads']} thread (ms)")
    cols = ("events", "path", "features p50", "features p99", "model p50", "model p99", "request p50",
            "request p99", "features / model")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="right")
    for row in report["sizes"]:
        for name in ("snapshot", "live"):
            p = row["paths"][name]
            t.add_row(
                f"{row['events']:,}",
                name,
                f"{p['features_p50_ms']:.3f}",
                f"{p['features_p99_ms']:.3f}",
                f"{p['model_p50_ms']:.3f}",
                f"{p['model_p99_ms']:.3f}",
                f"{p['total_p50_ms']:.3f}",
                f"{p['total_p99_ms']:.3f}",
                f"{p['features_p50_ms'] / p['model_p50_ms']:.2f}",
            )
        r = row["ratios"]
        t.add_row(
            "",
            "old / new",
            f"{r['features_p50_snapshot_over_live']:.1f}x",
            "",
            "",
            "",
            f"{r['total_p50_snapshot_over_live']:.1f}x",
            f"{r['total_p99_snapshot_over_live']:.1f}x",
            "",
            end_section=True,
        )
    Console(width=max(Console().width, 130)).print(t)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recommender.bench_live", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="logged events, comma separated")
    p.add_argument("--requests", type=int, default=400, help="timed requests per path and size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("var/bench/live_request.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one web worker's share
    sizes = [int(x) for x in args.sizes.split(",") if x]
    rows = []
    from rich.console import Console

    console = Console()
    for n in sizes:
        with console.status(f"{n:,} events: generating, fitting, timing {args.requests} requests per path"):
            rows.append(bench_size(n, requests=args.requests, seed=args.seed, log=console.print))
    report = {
        "candidates": CANDIDATES,
        "threads": torch.get_num_threads(),
        "requests_per_path": args.requests,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()},
        "sizes": rows,
    }
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

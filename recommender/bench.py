"""Accelerator benchmark: how fast the serving paths score, next to a plain torchrec DLRM forward.

    python -m recommender.bench --out var/bench/accelerator.json [--quick]

Grid: devices (cpu, cuda when present) x precision (fp32, int8 on CPU) x batch sizes (candidates of one
user: 1, 16, 64, 200, 512, 4096) x threads (1, 2). For each cell: p50 / p95 / p99 latency and scores/s of
:class:`recommender.serving.Scorer` (user side once per user), split into the embedding stage and the
MLP / interaction stage, and the same for the baseline (``model(dense, kjt)``, the user's side repeated
in every row) on the same rows in the same run, with the ratio. Also, in the same run: the machine's
floors (memory bandwidth from a large tensor copy, matmul GFLOP/s), the issue's targets (rank 500
candidates for one user: p50 <= 2 ms, p99 <= 5 ms, model only; batch scoring >= 1,000,000 scores/s for
a store-sized model of 5,000 items and 10,000 users), and int8-vs-fp32 ranking agreement.

The model has random weights of the production shape (``ModelConfig()`` over the feature space of
``recommender.features``): latency does not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from recommender.config import ModelConfig
from recommender.features import DENSE_FEATURES, ITEM_DENSE, PAIR_DENSE, SPARSE_KEYS, TABLE_OF_KEY
from recommender.model import build_model
from recommender.serving import ItemFeatures, Scorer, ScoreTimings, UserFeatures

BATCH_SIZES = (1, 16, 64, 200, 512, 4096)
THREADS = (1, 2)


# ------------------------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class StoreShape:
    items: int = 5_000
    users: int = 10_000
    categories: int = 200
    brands: int = 300
    bag: int = 20  # recent items per user


def store_model(
    shape: StoreShape, *, seed: int = 0, arch: str = "dlrm", history_encoder: str = "mean"
) -> torch.nn.Module:
    torch.manual_seed(seed)
    sizes = {
        "user": shape.users + 97,
        "item": shape.items + 97,
        "category": shape.categories + 12,
        "brand": shape.brands + 12,
        "price_bucket": 17,
        "hour_of_day": 24,
        "weekday": 7,
        "device": 8,
    }
    feats: dict[str, list[str]] = {}
    for k in SPARSE_KEYS:
        feats.setdefault(TABLE_OF_KEY[k], []).append(k)
    model = build_model(
        ModelConfig(arch=arch, history_encoder=history_encoder, history_length=shape.bag),
        table_sizes=sizes,
        table_features=feats,
        num_dense=len(DENSE_FEATURES),
    )
    for name, p in model.named_parameters():
        if "embedding_bag" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model.eval()  # no stage-1 prior: a store-sized log trains without one (recommender.train.train)


def store_items(shape: StoreShape, seed: int = 1) -> ItemFeatures:
    g = torch.Generator().manual_seed(seed)
    M = shape.items
    return ItemFeatures(
        sparse={
            "item_id": torch.arange(M),
            "category": torch.randint(0, shape.categories, (M,), generator=g),
            "brand": torch.randint(0, shape.brands, (M,), generator=g),
            "price_bucket": torch.randint(0, 17, (M,), generator=g),
        },
        dense=torch.rand(M, len(ITEM_DENSE), generator=g),
    )


def store_user(shape: StoreShape, i: int) -> UserFeatures:
    g = torch.Generator().manual_seed(10_000 + i)
    return UserFeatures(
        sparse={
            "user_id": torch.tensor([i % shape.users]),
            "recent_items": torch.randint(0, shape.items, (shape.bag,), generator=g),
            "hour_of_day": torch.tensor([i % 24]),
            "weekday": torch.tensor([i % 7]),
            "device": torch.tensor([i % 3]),
        },
        dense=torch.rand(1, generator=g),
    )


# ------------------------------------------------------------------------------------------ timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(
    fn: Callable[[], object], *, min_iters: int, max_iters: int, budget_s: float, device: torch.device
) -> tuple[list[int], list[int]]:
    """(wall ns, process CPU ns) samples of ``fn()`` after warm-up: at least ``min_iters``, at most ``max_iters``
    or ``budget_s``. CPU time (all threads) tells compute cost apart from waiting on a shared machine."""
    for _ in range(2):
        fn()
    _sync(device)
    wall: list[int] = []
    cpu: list[int] = []
    start = time.perf_counter()
    while len(wall) < max_iters and (len(wall) < min_iters or time.perf_counter() - start < budget_s):
        c = time.process_time_ns()
        t = time.perf_counter_ns()
        fn()
        _sync(device)
        wall.append(time.perf_counter_ns() - t)
        cpu.append(time.process_time_ns() - c)
    return wall, cpu


def _p(ns: Sequence[int], q: float) -> float:
    return float(np.percentile(np.asarray(ns, dtype=np.float64), q) / 1e6)


@dataclass(frozen=True)
class Cell:
    device: str
    precision: str
    threads: int
    batch: int
    path: str  # "reuse" (Scorer) or "baseline" (plain DLRM forward)
    p50_ms: float
    p95_ms: float
    p99_ms: float
    scores_per_s: float
    embedding_p50_ms: float
    mlp_p50_ms: float
    cpu_ms_per_call: float  # median process CPU time (all threads) per call
    iters: int


def _baseline_fn(scorer: Scorer, dense: torch.Tensor, kjt, stage: list[tuple[int, int]]) -> Callable[[], torch.Tensor]:
    """The plain DLRM forward, timed per stage (sparse arch = embedding stage; dense/interaction/over = MLP)."""
    dlrm = scorer.dlrm
    device = scorer.device if scorer.precision == "fp32" else torch.device("cpu")
    dense, kjt = dense.to(device), kjt.to(device)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            emb = dlrm.sparse_arch(kjt)
            _sync(device)
            t1 = time.perf_counter_ns()
            d = dlrm.dense_arch(dense)
            out = dlrm.over_arch(dlrm.inter_arch(dense_features=d, sparse_features=emb))
            _sync(device)
            stage.append((t1 - t0, time.perf_counter_ns() - t1))
            return out

    return run


def bench_cell(scorer: Scorer, shape: StoreShape, batch: int, *, quick: bool) -> tuple[Cell, Cell]:
    """(ours, baseline) for one user's ``batch`` candidates."""
    g = torch.Generator().manual_seed(batch)
    user = store_user(shape, 7)
    items = torch.randint(0, shape.items, (batch,), generator=g)
    pair = torch.rand(batch, len(PAIR_DENSE), generator=g)
    budget = 0.15 if quick else 0.6
    iters = (3, 30) if quick else (10, 2000)
    ours_t: list[ScoreTimings] = []
    ours, ours_cpu = _measure(
        lambda: scorer.score(user, items, pair, timings=ours_t),
        min_iters=iters[0],
        max_iters=iters[1],
        budget_s=budget,
        device=scorer.device,
    )
    dense, kjt = scorer.reference_batch(user, items, pair)
    stage: list[tuple[int, int]] = []
    base, base_cpu = _measure(
        _baseline_fn(scorer, dense, kjt, stage),
        min_iters=iters[0],
        max_iters=iters[1],
        budget_s=budget,
        device=scorer.device,
    )
    th = torch.get_num_threads()
    common = dict(device=scorer.device.type, precision=scorer.precision, threads=th, batch=batch)
    a = Cell(
        **common,
        path="reuse",
        p50_ms=_p(ours, 50),
        p95_ms=_p(ours, 95),
        p99_ms=_p(ours, 99),
        scores_per_s=batch / (_p(ours, 50) / 1e3),
        embedding_p50_ms=_p([t.embedding_ns for t in ours_t[-len(ours) :]], 50),
        mlp_p50_ms=_p([t.mlp_ns for t in ours_t[-len(ours) :]], 50),
        cpu_ms_per_call=_p(ours_cpu, 50),
        iters=len(ours),
    )
    b = Cell(
        **common,
        path="baseline",
        p50_ms=_p(base, 50),
        p95_ms=_p(base, 95),
        p99_ms=_p(base, 99),
        scores_per_s=batch / (_p(base, 50) / 1e3),
        embedding_p50_ms=_p([s[0] for s in stage[-len(base) :]], 50),
        mlp_p50_ms=_p([s[1] for s in stage[-len(base) :]], 50),
        cpu_ms_per_call=_p(base_cpu, 50),
        iters=len(base),
    )
    return a, b


def bench_batch_scoring(scorer: Scorer, shape: StoreShape, *, users: int, baseline_users: int) -> dict:
    """Whole-catalogue scoring for ``users`` users (the worker's batch job), against the plain forward of
    each of ``baseline_users`` users' catalogue rows (its inputs prebuilt, not timed)."""
    us = [store_user(shape, i) for i in range(users)]
    scorer.score_batch(us[:2])  # warm-up
    timings: list[ScoreTimings] = []
    c = time.process_time()
    t = time.perf_counter()
    out = scorer.score_batch(us, timings=timings)
    ours_s = time.perf_counter() - t
    ours_cpu = time.process_time() - c
    n = sum(len(o) for o in out)
    all_items = torch.arange(shape.items)
    pairs = torch.zeros(shape.items, len(PAIR_DENSE))
    inputs = []
    for i in range(baseline_users):
        dense, kjt = scorer.reference_batch(us[i], all_items, pairs)
        inputs.append((dense, kjt))
    device = scorer.device if scorer.precision == "fp32" else torch.device("cpu")
    model = scorer.model
    inputs = [(dense.to(device), kjt.to(device)) for dense, kjt in inputs]
    with torch.inference_mode():
        model(*inputs[0])  # warm-up
        c = time.process_time()
        t = time.perf_counter()
        rows = 0
        for dense, kjt in inputs:  # one forward per user over the whole catalogue (its rows prebuilt, untimed)
            rows += dense.shape[0]
            model(dense, kjt)
        _sync(device)
        base_s = time.perf_counter() - t
        base_cpu = time.process_time() - c
    ours_rate = n / ours_s
    base_rate = rows / base_s
    return {
        "items": shape.items,
        "users_in_model": shape.users,
        "users_scored": users,
        "scores": n,
        "seconds": round(ours_s, 4),
        "scores_per_s": ours_rate,
        "cpu_seconds": round(ours_cpu, 4),
        "scores_per_cpu_s": n / ours_cpu if ours_cpu else None,
        "embedding_s": timings[0].embedding_ns / 1e9,
        "mlp_s": timings[0].mlp_ns / 1e9,
        "baseline_users_scored": baseline_users,
        "baseline_scores": rows,
        "baseline_seconds": round(base_s, 4),
        "baseline_scores_per_s": base_rate,
        "baseline_cpu_seconds": round(base_cpu, 4),
        "baseline_scores_per_cpu_s": rows / base_cpu if base_cpu else None,
        "ratio": ours_rate / base_rate if base_rate else None,
        "target_scores_per_s": 1_000_000,
        "meets_target": ours_rate >= 1_000_000,
    }


def _proc_score(scorer: Scorer, users: list[UserFeatures], start, queue) -> None:
    torch.set_num_threads(1)
    scorer.score_batch(users[:1])  # warm-up
    start.wait()
    t = time.perf_counter()
    n = sum(len(o) for o in scorer.score_batch(users))
    queue.put((n, time.perf_counter() - t))


def _proc_baseline(scorer: Scorer, users: list[UserFeatures], start, queue) -> None:
    torch.set_num_threads(1)
    all_items = torch.arange(scorer.num_items)
    pairs = torch.zeros(scorer.num_items, len(PAIR_DENSE))
    inputs = [scorer.reference_batch(u, all_items, pairs) for u in users]  # prebuilt, untimed
    with torch.inference_mode():
        scorer.model(*inputs[0])  # warm-up
        start.wait()
        t = time.perf_counter()
        n = 0
        for dense, kjt in inputs:
            n += int(scorer.model(dense, kjt).numel())
    queue.put((n, time.perf_counter() - t))


def _run_processes(target, scorer: Scorer, users: list[UserFeatures], processes: int) -> tuple[int, float]:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start, queue = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(scorer, users[i::processes], start, queue)) for i in range(processes)]
    for p in procs:
        p.start()
    start.wait()
    t = time.perf_counter()
    results = [queue.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    return sum(r[0] for r in results), wall


def bench_batch_scoring_processes(
    scorer: Scorer, shape: StoreShape, *, users: int, baseline_users: int, processes: int
) -> dict:
    """Whole-catalogue scoring split over ``processes`` forked workers of one thread each (how a batch job
    uses several cores without intra-op synchronisation), ours and the plain forward, from a common start."""
    us = [store_user(shape, i) for i in range(max(users, baseline_users))]
    n, wall = _run_processes(_proc_score, scorer, us[:users], processes)
    bn, bwall = _run_processes(_proc_baseline, scorer, us[:baseline_users], processes)
    return {
        "processes": processes,
        "threads_each": 1,
        "items": shape.items,
        "users_scored": users,
        "scores": n,
        "seconds": round(wall, 4),
        "scores_per_s": n / wall,
        "baseline_users_scored": baseline_users,
        "baseline_scores": bn,
        "baseline_seconds": round(bwall, 4),
        "baseline_scores_per_s": bn / bwall,
        "ratio": (n / wall) / (bn / bwall),
        "target_scores_per_s": 1_000_000,
        "meets_target": n / wall >= 1_000_000,
    }


# ------------------------------------------------------------------------------------------ floors


def floors(device: torch.device, *, quick: bool) -> dict:
    """Memory bandwidth (copy of a tensor much larger than the caches) and fp32 matmul throughput."""
    n_bytes = (64 if quick else 256) * 2**20
    src = torch.ones(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    copy, _ = _measure(lambda: dst.copy_(src), min_iters=3, max_iters=10 if quick else 20, budget_s=0.5, device=device)
    big = 1024 if quick else 2048
    out = {"copy_bytes": n_bytes, "memory_bandwidth_gb_s": 2 * n_bytes / (min(copy) / 1e9) / 1e9, "matmul_big_n": big}
    for name, (m, k, n) in {"matmul_big": (big, big, big), "matmul_mlp_4096x128x128": (4096, 128, 128)}.items():
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        ts, _ = _measure(
            lambda a=a, b=b: a @ b, min_iters=3, max_iters=20 if quick else 50, budget_s=0.5, device=device
        )
        out[f"{name}_gflop_s"] = 2 * m * k * n / (float(np.median(ts)) / 1e9) / 1e9
    return out


def int8_agreement(
    fp32: Scorer, int8: Scorer, shape: StoreShape, *, users: int = 20, n: int = 500, k: int = 10
) -> dict:
    overlaps, corrs = [], []
    for i in range(users):
        g = torch.Generator().manual_seed(500 + i)
        items = torch.randperm(shape.items, generator=g)[:n]
        pair = torch.rand(n, len(PAIR_DENSE), generator=g)
        u = store_user(shape, i)
        a, b = fp32.score(u, items, pair).numpy(), int8.score(u, items, pair).numpy()
        overlaps.append(len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k)
        corrs.append(float(np.corrcoef(a, b)[0, 1]))
    return {
        "users": users,
        "candidates": n,
        "top10_overlap_mean": float(np.mean(overlaps)),
        "top10_overlap_min": float(np.min(overlaps)),
        "score_corr_min": float(np.min(corrs)),
    }


# ------------------------------------------------------------------------------------------ main


def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "loadavg_start": os.getloadavg(),
    }


def run(
    *,
    quick: bool = False,
    batch_sizes: Sequence[int] | None = None,
    threads: Sequence[int] | None = None,
    devices: Sequence[str] | None = None,
) -> dict:
    shape = StoreShape(items=1_000, users=2_000) if quick else StoreShape()
    batch_sizes = list(batch_sizes or ((1, 200) if quick else BATCH_SIZES))
    threads = list(threads or ((1,) if quick else THREADS))
    devices = list(devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])))
    report: dict = {
        "machine": _machine(),
        "quick": quick,
        "shape": asdict(shape),
        "floors": {},
        "cells": [],
        "targets": {},
    }
    model = store_model(shape)
    items = store_items(shape)
    scorers: dict[tuple[str, str], Scorer] = {}
    for dev in devices:
        scorers[(dev, "fp32")] = Scorer(model, items, precision="fp32", device=dev)
        if dev == "cpu":
            scorers[(dev, "int8")] = Scorer(model, items, precision="int8", device="cpu")
    saved_threads = torch.get_num_threads()
    try:
        for th in threads:
            torch.set_num_threads(th)
            for dev in devices:
                report["floors"][f"{dev}/threads={th}"] = floors(torch.device(dev), quick=quick)
            for scorer in scorers.values():
                for b in batch_sizes:
                    ours, base = bench_cell(scorer, shape, b, quick=quick)
                    report["cells"] += [asdict(ours), asdict(base)]
        # the targets (cpu fp32, the store shape) at each thread count of the grid
        cpu = scorers[("cpu", "fp32")]
        for th in threads:
            torch.set_num_threads(th)
            ours, base = bench_cell(cpu, shape, 500, quick=quick)
            report["targets"][f"rank_500_one_user/threads={th}"] = {
                "threads": th,
                "p50_ms": ours.p50_ms,
                "p95_ms": ours.p95_ms,
                "p99_ms": ours.p99_ms,
                "baseline_p50_ms": base.p50_ms,
                "baseline_p95_ms": base.p95_ms,
                "baseline_p99_ms": base.p99_ms,
                "ratio_p50": base.p50_ms / ours.p50_ms,
                "cpu_ms_per_call": ours.cpu_ms_per_call,
                "baseline_cpu_ms_per_call": base.cpu_ms_per_call,
                "target_p50_ms": 2.0,
                "target_p99_ms": 5.0,
                "meets_target": ours.p50_ms <= 2.0 and ours.p99_ms <= 5.0,
            }
            report["targets"][f"batch_scoring/threads={th}"] = {
                "threads": th,
                **bench_batch_scoring(cpu, shape, users=20 if quick else 200, baseline_users=2 if quick else 20),
            }
        procs = min(2, os.cpu_count() or 1)
        if procs > 1:
            report["targets"][f"batch_scoring/processes={procs}"] = bench_batch_scoring_processes(
                cpu, shape, users=20 if quick else 200, baseline_users=4 if quick else 40, processes=procs
            )
        report["int8_agreement"] = int8_agreement(
            scorers[("cpu", "fp32")], scorers[("cpu", "int8")], shape, users=5 if quick else 20
        )
    finally:
        torch.set_num_threads(saved_threads)
    report["machine"]["loadavg_end"] = os.getloadavg()
    return report


# ------------------------------------------------------------------------------ history encoders


def history_encoder_cost(
    encoders: Sequence[str] = ("mean", "din"),
    *,
    quick: bool = False,
    candidates: int = 500,
    rounds: int = 5,
    train_batches: int = 30,
    batch_size: int = 4096,
    block: int = 5,
) -> dict:
    """What each recent-items encoder costs, all in one run on one thread: rank ``candidates`` candidates of one
    user through the :class:`Scorer` (the store shape, a full 20-item history; the encoders take turns in
    ``rounds`` rounds so load from other processes hits each alike), and training examples/s of the fused
    training step (batch building + forward + backward + optimisers) on the same batches of a synthetic shop's
    rows, the encoders alternating in blocks of ``block`` batches. The first encoder is the reference of the
    ratios."""
    from recommender.config import Config
    from recommender.data import build_examples, synthetic_shop
    from recommender.features import FeatureSpace
    from recommender.model import RankerTrain, dense_parameters

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shape = StoreShape(items=1_000, users=2_000) if quick else StoreShape()
        items_t = store_items(shape)
        user = store_user(shape, 7)
        g = torch.Generator().manual_seed(candidates)
        cands = torch.randint(0, shape.items, (candidates,), generator=g)
        pair = torch.rand(candidates, len(PAIR_DENSE), generator=g)
        scorers = {e: Scorer(store_model(shape, history_encoder=e), items_t, device="cpu") for e in encoders}
        wall: dict[str, list[int]] = {e: [] for e in encoders}
        for _ in range(2 if quick else rounds):
            for e, sc in scorers.items():
                w, _c = _measure(
                    lambda sc=sc: sc.score(user, cands, pair),
                    min_iters=5 if quick else 50,
                    max_iters=50 if quick else 1000,
                    budget_s=0.1 if quick else 0.6,
                    device=sc.device,
                )
                wall[e] += w
        latency = {
            e: {"p50_ms": _p(w, 50), "p95_ms": _p(w, 95), "p99_ms": _p(w, 99), "iters": len(w)} for e, w in wall.items()
        }

        data = synthetic_shop(n_users=400 if quick else 1500, n_items=300 if quick else 1000, seed=0)
        config = Config()
        examples = build_examples(data.interactions, data.items, config.data, features=config.features, seed=0)
        space = FeatureSpace.fit(examples, config.features)
        encoded = space.encode(examples)
        bs = min(1024 if quick else batch_size, len(encoded))
        steps = {}
        for e in encoders:
            config.model.history_encoder = e
            torch.manual_seed(0)
            model = build_model(
                config.model,
                table_sizes=space.table_sizes(),
                table_features=space.table_features(),
                num_dense=space.num_dense,
                fused=config.train,
            )
            step = RankerTrain(model).train()
            steps[e] = (step, torch.optim.Adam(dense_parameters(model), lr=config.train.lr))

        def run_step(e: str, rows: np.ndarray) -> int:
            step, opt = steps[e]
            b = encoded.batch(rows)
            loss, _ = step(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return len(b)

        rng = np.random.default_rng(0)
        n_batches = 6 if quick else train_batches
        order = np.concatenate([rng.permutation(len(encoded)) for _ in range(-(-n_batches * bs // len(encoded)) + 1)])
        batches = [order[i * bs : (i + 1) * bs] for i in range(n_batches)]
        for e in encoders:  # warm-up, not timed
            run_step(e, batches[0])
        seconds = {e: 0.0 for e in encoders}
        seen = {e: 0 for e in encoders}
        for i in range(0, n_batches, block):
            for e in encoders:
                t = time.perf_counter()
                for rows in batches[i : i + block]:
                    seen[e] += run_step(e, rows)
                seconds[e] += time.perf_counter() - t
        bag = (encoded.hist_end - encoded.hist_start).astype(np.float64)
    finally:
        torch.set_num_threads(saved)
    ref = encoders[0]
    training = {e: {"examples_per_s": seen[e] / seconds[e], "examples": seen[e]} for e in encoders}
    return {
        "machine": {**_machine(), "loadavg_end": os.getloadavg()},
        "threads": 1,
        "reference": ref,
        "rank": {
            "candidates": candidates,
            "history_length": shape.bag,
            "items": shape.items,
            **{
                e: {
                    **v,
                    "p50_ratio": v["p50_ms"] / latency[ref]["p50_ms"],
                    "p99_ratio": v["p99_ms"] / latency[ref]["p99_ms"],
                }
                for e, v in latency.items()
            },
        },
        "training": {
            "batch_size": bs,
            "batches": n_batches,
            "rows": len(encoded),
            "mean_history_length": float(bag.mean()) if len(bag) else 0.0,
            **{e: {**v, "ratio": v["examples_per_s"] / training[ref]["examples_per_s"]} for e, v in training.items()},
        },
    }


def print_encoder_cost(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    m = report["machine"]
    r, t = report["rank"], report["training"]
    table = Table(
        title=f"recent-items encoders, one thread, same run ({m['cpu']}, load {m['loadavg_start'][0]:.2f} -> "
        f"{m['loadavg_end'][0]:.2f}); ratios against {report['reference']}"
    )
    for col in ("encoder", f"rank {r['candidates']} p50 ms", "p95 ms", "p99 ms", "p50 ratio", "p99 ratio",
                "train examples/s", "train ratio"):  # fmt: skip
        table.add_column(col, justify="left" if col == "encoder" else "right")
    for e in t:
        if not isinstance(t[e], dict):
            continue
        x, y = r[e], t[e]
        table.add_row(e, f"{x['p50_ms']:.3f}", f"{x['p95_ms']:.3f}", f"{x['p99_ms']:.3f}", f"{x['p50_ratio']:.2f}",
                      f"{x['p99_ratio']:.2f}", f"{y['examples_per_s']:,.0f}", f"{y['ratio']:.2f}")  # fmt: skip
    console.print(table)
    console.print(
        f"rank: {r['items']:,}-item store, {r['history_length']} history items; training: batches of "
        f"{t['batch_size']:,} x {t['batches']} per encoder over {t['rows']:,} synthetic-shop rows (mean history "
        f"{t['mean_history_length']:.1f} items)",
        markup=False,
    )


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 180))
    m = report["machine"]
    console.print(
        f"[bold]{m['cpu']}[/], {m['cores']} cores, torch {m['torch']}, cuda: {m['cuda']}, load average {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}"
    )
    ft = Table(title="machine floors (same run)")
    for c in ("device / threads", "memory GB/s", "matmul n^3 GFLOP/s", "matmul 4096x128x128 GFLOP/s"):
        ft.add_column(c, justify="right")
    for key, f in report["floors"].items():
        ft.add_row(
            key,
            f"{f['memory_bandwidth_gb_s']:.1f}",
            f"{f['matmul_big_gflop_s']:.1f} (n={f['matmul_big_n']})",
            f"{f['matmul_mlp_4096x128x128_gflop_s']:.1f}",
        )
    console.print(ft)
    t = Table(title="scoring one user's candidates: reuse (Scorer) vs baseline (plain DLRM forward)")
    for c in (
        "device",
        "prec",
        "thr",
        "batch",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "emb ms",
        "mlp ms",
        "scores/s",
        "cpu ms",
        "base p50",
        "base p95",
        "base p99",
        "base emb",
        "base mlp",
        "base scores/s",
        "base cpu ms",
        "ratio",
    ):
        t.add_column(c, justify="right")
    cells = report["cells"]
    for ours, base in zip(cells[::2], cells[1::2], strict=True):
        t.add_row(
            ours["device"], ours["precision"], str(ours["threads"]), str(ours["batch"]),
            f"{ours['p50_ms']:.3f}", f"{ours['p95_ms']:.3f}", f"{ours['p99_ms']:.3f}", f"{ours['embedding_p50_ms']:.3f}", f"{ours['mlp_p50_ms']:.3f}",
            f"{ours['scores_per_s']:,.0f}", f"{ours['cpu_ms_per_call']:.3f}",
            f"{base['p50_ms']:.3f}", f"{base['p95_ms']:.3f}", f"{base['p99_ms']:.3f}", f"{base['embedding_p50_ms']:.3f}", f"{base['mlp_p50_ms']:.3f}",
            f"{base['scores_per_s']:,.0f}", f"{base['cpu_ms_per_call']:.3f}", f"{base['p50_ms'] / ours['p50_ms']:.2f}x",
        )  # fmt: skip
    console.print(t)
    a = report["int8_agreement"]
    tt = Table(title="targets (cpu fp32): ours vs the plain torchrec DLRM forward, same rows, same run")
    for c in ("figure", "ours", "baseline (plain DLRM)", "ratio", "target", "met"):
        tt.add_column(c, justify="right")
    for key, r in report["targets"].items():
        th = r.get("threads", 1)
        if key.startswith("rank_500"):
            met = "yes" if r["meets_target"] else "no"
            tt.add_row(
                f"rank 500 for one user, p50 ({th} thr)",
                f"{r['p50_ms']:.3f} ms",
                f"{r['baseline_p50_ms']:.3f} ms",
                f"{r['ratio_p50']:.2f}x",
                "<= 2 ms",
                met,
            )
            tt.add_row(
                f"rank 500 for one user, p99 ({th} thr)",
                f"{r['p99_ms']:.3f} ms",
                f"{r['baseline_p99_ms']:.3f} ms",
                f"{r['baseline_p99_ms'] / r['p99_ms']:.2f}x",
                "<= 5 ms",
                met,
            )
            tt.add_row(
                f"rank 500, CPU time per call ({th} thr)",
                f"{r['cpu_ms_per_call']:.3f} ms",
                f"{r['baseline_cpu_ms_per_call']:.3f} ms",
                f"{r['baseline_cpu_ms_per_call'] / r['cpu_ms_per_call']:.2f}x",
                "",
                "",
            )
        elif key.startswith("batch_scoring/processes"):
            tt.add_row(
                f"batch scoring {r['items']} items x {r['users_scored']} users, {r['processes']} processes x 1 thr",
                f"{r['scores_per_s']:,.0f} /s",
                f"{r['baseline_scores_per_s']:,.0f} /s",
                f"{r['ratio']:.2f}x",
                ">= 1,000,000 /s",
                "yes" if r["meets_target"] else "no",
            )
        else:
            tt.add_row(
                f"batch scoring {r['items']} items x {r['users_scored']} users ({th} thr)",
                f"{r['scores_per_s']:,.0f} /s",
                f"{r['baseline_scores_per_s']:,.0f} /s",
                f"{r['ratio']:.2f}x",
                ">= 1,000,000 /s",
                "yes" if r["meets_target"] else "no",
            )
            tt.add_row(
                f"batch scoring per CPU-second ({th} thr)",
                f"{r['scores_per_cpu_s']:,.0f} /s",
                f"{r['baseline_scores_per_cpu_s']:,.0f} /s",
                f"{r['scores_per_cpu_s'] / r['baseline_scores_per_cpu_s']:.2f}x",
                "",
                "",
            )
    console.print(tt)
    console.print(
        f"int8 vs fp32 ({a['users']} users x {a['candidates']} candidates): top-10 overlap mean {a['top10_overlap_mean']:.3f} "
        f"(min {a['top10_overlap_min']:.2f}), score correlation min {a['score_corr_min']:.5f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m recommender.bench", description="serving latency per device x precision x batch x threads"
    )
    p.add_argument("--out", type=Path, default=Path("var/bench/accelerator.json"))
    p.add_argument("--quick", action="store_true", help="small model, two batch sizes, one thread: seconds")
    p.add_argument("--batch-sizes", default=None, help="comma-separated, default 1,16,64,200,512,4096")
    p.add_argument("--threads", default=None, help="comma-separated, default 1,2")
    p.add_argument("--devices", default=None, help="comma-separated, default cpu (+ cuda when present)")
    p.add_argument(
        "--history-encoders",
        default=None,
        help="instead of the grid: rank-500 latency and training examples/s of these recent-items encoders "
        "(comma-separated, e.g. mean,din; the first is the reference), one thread, written to --out",
    )
    args = p.parse_args(argv)
    if args.history_encoders:
        encoders = [e.strip() for e in args.history_encoders.split(",") if e.strip()]
        if not encoders or any(e not in ("mean", "din") for e in encoders):
            p.error(f"--history-encoders: choose from mean, din (got {args.history_encoders!r})")
        out = args.out if args.out != Path("var/bench/accelerator.json") else Path("var/bench/history_encoders.json")
        report = history_encoder_cost(encoders, quick=args.quick)
        print_encoder_cost(report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
        return 0

    def ints(s: str | None) -> list[int] | None:
        return [int(x) for x in s.split(",") if x] if s else None

    report = run(
        quick=args.quick,
        batch_sizes=ints(args.batch_sizes),
        threads=ints(args.threads),
        devices=args.devices.split(",") if args.devices else None,
    )
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training: `train(examples, config) -> TrainResult`, and the CLI.

Embeddings are optimised the torchrec way, fused: on one process the tables are a
``FusedEmbeddingBagCollection`` (FBGEMM table-batched kernel, row-wise Adagrad applied inside backward);
under ``torchrun`` (``--distributed``) the plain ``EmbeddingBagCollection`` gets RowWiseAdagrad through
``_apply_optimizer_in_backward`` and ``DistributedModelParallel`` shards it table-wise and fuses the
optimizer into the sharded kernel. The MLPs use Adam in both cases.

CLI::

    python -m recommender.train [--synthetic-users N | --ta-feng PATH [--limit N] |
                                 --interactions P --items P] [--compare-baseline] [--out JSON]
    torchrun --nproc_per_node 2 -m recommender.train --distributed --synthetic-users 300 --out-dir DIR
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recommender.config import Config, TrainConfig, resolve_device
from recommender.data import Examples, ShopData, build_examples, split_by_time
from recommender.features import PRIOR_FEATURE, EncodedExamples, FeatureSpace
from recommender.metrics import auc_score, log_loss
from recommender.model import Ranker, RankerTrain, build_model, dense_parameters, embedding_parameters
from recommender.retrieval import SIGNALS
from recommender.rows import TrainingRows, training_rows
from recommender.rules import EXPLORE_BOOSTS, choose_explore_policy, explore_recall_by_slots


@dataclass
class TrainResult:
    """model: the trained `Ranker` (plain EmbeddingBagCollection, eval mode, on ``device``);
    features: the fitted `FeatureSpace` (vocabularies) that must travel with it; metrics: train_loss per
    epoch, valid_auc / valid_logloss when validation rows were given; examples_per_s: training throughput
    (batch building + forward + backward + optimiser); wall_time_s: the whole call."""

    model: Ranker
    features: FeatureSpace
    config: Config
    metrics: dict = field(default_factory=dict)
    examples_per_s: float = 0.0
    wall_time_s: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    validated: TrainResult | None = None  # the model before the refit on all rows (see train_rows)


@torch.no_grad()
def predict(model, encoded, *, batch_size: int = 8192, device: torch.device | str = "cpu") -> np.ndarray:
    """Probabilities (N,) for `EncodedExamples`, in row order."""
    model.eval()
    out = []
    for batch in encoded.batches(batch_size):
        b = batch.to(device)
        out.append(torch.sigmoid(model(b.dense_features, b.sparse_features)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _RunningAUC:
    def __init__(self, window: int):
        self.logits: collections.deque = collections.deque(maxlen=window)
        self.labels: collections.deque = collections.deque(maxlen=window)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.logits.append(logits.float().cpu().numpy())
        self.labels.append(labels.cpu().numpy())

    def value(self) -> float:
        if not self.labels:
            return float("nan")
        return auc_score(np.concatenate(self.labels), np.concatenate(self.logits))


def _run_epochs(
    step_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    encoded: EncodedExamples,
    config: Config,
    device: torch.device,
    *,
    rank: int = 0,
    world_size: int = 1,
    desc: str = "train",
    max_steps: int | None = None,
    check_every: int = 0,
    on_check: Callable[[int], None] | None = None,
) -> tuple[list[float], int, float]:
    """Shared loop. Returns (mean loss per epoch, examples seen, seconds in the loop, checks excluded).

    ``max_steps``: exactly that many updates (as many epochs as it takes; None: ``config.train.epochs``);
    ``on_check(updates)`` runs every ``check_every`` updates and after the last one."""
    tc = config.train
    epoch_losses: list[float] = []
    seen = 0
    running = _RunningAUC(tc.auc_window)
    show = tc.progress and rank == 0
    n_batches = -(-len(encoded) // tc.batch_size) // world_size
    total_steps = n_batches * tc.epochs if max_steps is None else max_steps
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc=desc, unit="batch", dynamic_ncols=True, leave=False)
    step_model.train()
    start = time.perf_counter()
    updates, in_checks = 0, 0.0

    checked = -1

    def check() -> None:
        nonlocal in_checks, checked
        if checked == updates:
            return
        checked = updates
        s = time.perf_counter()
        on_check(updates)
        step_model.train()
        in_checks += time.perf_counter() - s

    epoch = 0
    while epoch < tc.epochs if max_steps is None else updates < max_steps and len(encoded) > 0:
        total, count = 0.0, 0
        for step, batch in enumerate(
            encoded.batches(
                tc.batch_size,
                shuffle=True,
                seed=tc.seed + epoch,
                rank=rank,
                world_size=world_size,
                drop_last=world_size > 1,
            )
        ):
            batch = batch.to(device, non_blocking=True)
            loss, logits = step_model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            count += 1
            seen += len(batch)
            updates += 1
            if bar is not None:
                running.add(logits, batch.labels)
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{total / count:.4f}", auc=f"{running.value():.3f}")
            if on_check is not None and check_every and updates % check_every == 0 and updates != max_steps:
                check()
            if updates == max_steps:
                break
        epoch_losses.append(total / max(count, 1))
        epoch += 1
    if on_check is not None:
        check()
    seconds = time.perf_counter() - start - in_checks
    if bar is not None:
        bar.close()
    return epoch_losses, seen, seconds


def train(
    examples: Examples,
    config: Config | None = None,
    *,
    valid: Examples | None = None,
    space: FeatureSpace | None = None,
    stage1_order: bool = False,
    steps: int | None = None,
) -> TrainResult:
    """Fit vocabularies on ``examples`` (unless ``space`` is given), train, score ``valid`` if given.

    ``stage1_order``: ``examples`` are stage-1 candidate rows (as :func:`recommender.rows.training_rows`
    builds them): the ranker starts from stage 1's order (:func:`stage1_teacher`, ``TrainConfig.stage1_start``).
    On a small log (:func:`small_log`) that order is a fixed prior added to the network's output, whose last
    layer starts at zero: the untrained ranker *is* stage 1's order and learns departures from it. On a large
    log the whole network is first fitted to that order (``warm_start_steps`` updates of logit matching) and
    keeps all its capacity. With ``valid`` and ``validation_checks``, the validation log loss is measured
    during the run (the starting ranker included) and the best check's model is returned (early stopping; the
    metrics say at which update). ``steps``: exactly that many updates after the start, no early stopping (the
    refit on all rows).

    Why two starts (whole Ta Feng log, 20,388 customers, Recall@10 / NDCG@10 / explore recall; TIFU-KNN
    0.1195 / 0.1073, popularity's explore recall 0.0554): the prior with the network at zero 0.1194 / 0.1055 /
    0.0493 (seed 1: 0.1254 / 0.1043 / 0.0474), the prior with the network's random start 0.1383 / 0.1158 /
    0.0570, the warm start 0.1397 / 0.1196 / 0.0700. On demo snapshots of a few thousand rows the warm start
    left one of seven snapshots' mean NDCG@10 over three seeds 26% below stage 1's order (one seed
    significantly below); with the prior the worst was 6% below (no seed significantly), though the warm
    start's mean over the seven was higher (0.2327 against 0.2289; stage 1 0.2230). On 20-user snapshots
    the prior is the cautious choice, not the better one on average."""
    config = config or Config()
    previous_threads = torch.get_num_threads()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    try:
        return _train(examples, config, valid=valid, space=space, stage1_order=stage1_order, steps=steps)
    finally:
        torch.set_num_threads(previous_threads)


def stage1_teacher(examples: Examples) -> tuple[np.ndarray, dict]:
    """Stage 1's own order as a logit per row: the log-odds of a candidate at place p of stage 1's order
    (the ``s1_position`` signal, log1p(p)) being in the basket, fitted on ``examples``' labels as
    a + b * log(1 + p) (logistic regression, two parameters, Newton's method). Returns (logits (N,) float32,
    {"a", "b"}). The ranker adds it to its output (:meth:`recommender.model.Ranker.set_prior`), so it starts
    from the order it replaces: on a small log the labels then only move it as far as they support (a few
    dozen positives cannot teach a DLRM stage 1's order from scratch: it memorises ids instead)."""
    x = np.asarray(examples.signals[:, SIGNALS.index(PRIOR_FEATURE)], np.float64)
    y = np.asarray(examples.label, np.float64)
    X = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ w, -30, 30)))
        hessian = (X * (p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, X.T @ (y - p) - 1e-6 * w)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return (X @ w).astype(np.float32), {"a": float(w[0]), "b": float(w[1])}


class _MatchLogits(torch.nn.Module):
    """Warm-start objective (a large log): squared error between the ranker's logits and the teacher's
    (``batch.labels`` holds them), as logit-matching distillation does (Ba & Caruana 2014). Unlike
    cross-entropy on soft targets of a few percent, its gradient does not vanish where every target
    probability is small."""

    def __init__(self, model: Ranker):
        super().__init__()
        self.model = model

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.dense_features, batch.sparse_features)
        return torch.mean((logits - batch.labels) ** 2), logits.detach()


MIN_BATCH_SIZE = 64


def small_log(n_examples: int, tc: TrainConfig) -> bool:
    """Fewer than ``tc.min_steps`` updates at the configured batch size and epochs (a young shop's log)."""
    return n_examples > 0 and -(-n_examples // tc.batch_size) * tc.epochs < tc.min_steps


def step_schedule(n_examples: int, tc: TrainConfig) -> TrainConfig:
    """``tc`` with the batch size and epochs one process trains ``n_examples`` rows with: as configured when that
    makes at least ``tc.min_steps`` optimiser updates; otherwise smaller batches (down to 64 rows), then more
    epochs, until it does. The shop's first logs hold a few thousand candidate rows: at 2,048 rows a batch and
    three epochs that is nine updates, which leave the ranker at its random initialisation (validation AUC
    0.34-0.53 on a demo's first snapshot, where item popularity alone scores 0.77).

    Smaller batches also scale the embedding tables' learning rate by sqrt(batch / configured batch) (the
    square-root rule for batch size): ``embedding_lr`` is set for 2,048-row batches, and at 64 rows each id's
    row-wise Adagrad steps come about 32 times as often. Unscaled, a first snapshot's ids were memorised
    within a few dozen updates (validation log loss rising from the first check on, so early stopping kept
    stage 1's order on two of three demo snapshots); scaled, it fell below stage 1's order's on all three
    (seed 0: 0.0845 -> 0.0829, 0.0775 -> 0.0775, 0.0716 -> 0.0710; seeds 1 and 2 lower still)."""
    if not small_log(n_examples, tc):
        return tc
    batch = max(MIN_BATCH_SIZE, -(-n_examples * tc.epochs // tc.min_steps))
    batch = min(batch, tc.batch_size)
    per_epoch = -(-n_examples // batch)
    epochs = max(tc.epochs, -(-tc.min_steps // per_epoch))
    embedding_lr = tc.embedding_lr * (batch / tc.batch_size) ** 0.5
    return dataclasses.replace(tc, batch_size=batch, epochs=epochs, embedding_lr=embedding_lr)


def _train(
    examples: Examples,
    config: Config,
    *,
    valid: Examples | None,
    space: FeatureSpace | None,
    stage1_order: bool,
    steps: int | None,
) -> TrainResult:
    t0 = time.perf_counter()
    tc = config.train
    seed_everything(tc.seed)
    device = resolve_device(tc.device)
    space = space or FeatureSpace.fit(examples, config.features)
    encoded = space.id_dropout(space.encode(examples), examples, rate=config.features.id_dropout, seed=tc.seed)
    schedule = step_schedule(len(examples), tc)
    model = build_model(
        config.model,
        table_sizes=space.table_sizes(),
        table_features=space.table_features(),
        num_dense=space.num_dense,
        device=device,
        fused=schedule,
    )
    metrics: dict = {
        "train_examples": len(examples),
        "batch_size": schedule.batch_size,
        "embedding_lr": schedule.embedding_lr,
    }
    if stage1_order and tc.stage1_start and len(examples) and examples.label.any():
        teacher, fit = stage1_teacher(examples)
        if small_log(len(examples), tc):
            # a small log: stage 1's order is built in (a fixed prior) and the network starts at zero
            model.set_prior(fit["a"], fit["b"])
            metrics["stage1_prior"] = fit
        elif tc.warm_start_steps > 0:
            # a large log: the whole network is first fitted to stage 1's order, then learns from the labels
            warm_opt = torch.optim.Adam(dense_parameters(model), lr=tc.warm_start_lr)
            ws = time.perf_counter()
            warm_losses, _, _ = _run_epochs(
                _MatchLogits(model),
                warm_opt,
                dataclasses.replace(encoded, labels=teacher, weights=np.ones_like(teacher)),
                dataclasses.replace(config, train=dataclasses.replace(schedule, seed=tc.seed + 7919)),
                device,
                desc="stage-1 order",
                max_steps=tc.warm_start_steps,
            )
            metrics.update(
                warm_start_steps=tc.warm_start_steps,
                warm_start_loss=warm_losses,
                warm_start_seconds=round(time.perf_counter() - ws, 2),
                stage1_teacher=fit,
            )

    optimizer = torch.optim.Adam(dense_parameters(model), lr=tc.lr, weight_decay=tc.weight_decay)
    planned = -(-len(examples) // schedule.batch_size) * schedule.epochs if steps is None else steps
    checks: list[tuple[int, float]] = []
    best: dict = {}
    on_check, every = None, 0
    if steps is None and valid is not None and len(valid) and tc.validation_checks > 0 and valid.label.any():
        sample = np.arange(len(valid))
        if len(valid) > tc.validation_check_rows:
            sample = np.sort(np.random.default_rng(tc.seed).choice(len(valid), tc.validation_check_rows, replace=False))
        check_rows = valid.take(sample)
        check_encoded = space.encode(check_rows)
        every = max(1, planned // tc.validation_checks)

        def on_check(updates: int) -> None:
            loss = log_loss(check_rows.label, predict(model, check_encoded, device=device))
            checks.append((updates, round(float(loss), 6)))
            if not best or loss < best["loss"]:
                best.update(
                    loss=loss, updates=updates, state={k: v.detach().clone() for k, v in model.state_dict().items()}
                )

        if "stage1_prior" in metrics or "warm_start_steps" in metrics:
            on_check(0)  # the ranker as it starts (stage 1's order) is a candidate: labels may not improve on it
    losses, seen, seconds = _run_epochs(
        RankerTrain(model),
        optimizer,
        encoded,
        dataclasses.replace(config, train=schedule),
        device,
        max_steps=steps,
        check_every=every,
        on_check=on_check,
    )

    # Serve from a plain EmbeddingBagCollection (same state dict keys): quantisation and the registry want it.
    plain = build_model(
        config.model,
        table_sizes=space.table_sizes(),
        table_features=space.table_features(),
        num_dense=space.num_dense,
        device=device,
    )
    plain.load_state_dict(best["state"] if best else model.state_dict())
    plain.eval()
    metrics.update(
        train_loss=losses,
        epochs=schedule.epochs,
        steps=planned,
        # the updates the returned model had (early stopping keeps the best check's)
        best_steps=best["updates"] if best else planned,
        epochs_trained=(best["updates"] if best else planned) * schedule.batch_size / max(len(examples), 1),
    )
    if checks:
        metrics["validation_checks"] = checks
    if valid is not None and len(valid):
        probs = predict(plain, space.encode(valid), device=device)
        metrics["valid_auc"] = auc_score(valid.label, probs)
        metrics["valid_logloss"] = log_loss(valid.label, probs)
        metrics["valid_examples"] = len(valid)
    return TrainResult(
        model=plain,
        features=space,
        config=config,
        metrics=metrics,
        examples_per_s=seen / seconds if seconds > 0 else 0.0,
        wall_time_s=time.perf_counter() - t0,
        device=device,
    )


def train_on_interactions(data: ShopData, config: Config | None = None, *, refit: bool = True) -> TrainResult:
    """The shop's retrain: :func:`recommender.rows.training_rows` (the rows the evaluation measures), train
    on the training rows and measure on the validation rows, then (``refit``) train again on all rows, the
    freshest included, and return that model with the validated run's metrics."""
    config = config or Config()
    return train_rows(training_rows(data.interactions, data.items, config), config, refit=refit)


def train_rows(rows: TrainingRows, config: Config, *, refit: bool = True) -> TrainResult:
    """Train on ``rows.train``, validate on ``rows.valid``, then (``refit``) retrain on all of them.

    Returns the model to ship (the refit one) with the validated run's metrics; ``.validated`` is the model
    trained without the validation rows (what any metric on data after ``rows.cutoff`` must use)."""
    candidates = rows.kind == "stage-1 candidates"
    validated = train(rows.train, config, valid=rows.valid, stage1_order=candidates)
    validated.metrics.update(split_cutoff=rows.cutoff, training_rows=rows.kind)
    if candidates and config.data.exposure_power > 0:
        validated.metrics["exposure_weighting"] = exposure_summary(rows.train, config)
    if rows.kind == "stage-1 candidates" and len(rows.valid):
        table = explore_validation(validated, rows.valid)
        config.model.explore_slots, config.model.explore_boost = choose_explore_policy(table)
        validated.metrics.update(
            explore_slots=config.model.explore_slots, explore_boost=config.model.explore_boost, explore_validation=table
        )
    validated.validated = validated
    if not refit or not len(rows.valid):
        return validated
    steps = None
    if "validation_checks" in validated.metrics:  # early stopped: as many passes over all rows as validated best
        batch = step_schedule(len(rows.all), config.train).batch_size
        steps = round(validated.metrics["epochs_trained"] * len(rows.all) / batch)
    final = train(rows.all, config, stage1_order=candidates, steps=steps)
    final.metrics = {
        **validated.metrics,
        "refit_examples": len(rows.all),
        "refit_steps": final.metrics["best_steps"],
        "refit_train_loss": final.metrics["train_loss"],
    }
    final.examples_per_s = validated.examples_per_s
    final.wall_time_s += validated.wall_time_s
    final.validated = validated
    return final


def exposure_summary(rows: Examples, config: Config) -> dict:
    """How far exposure weighting (``DataConfig.exposure_power``) moved the training positives' weights."""
    w = rows.weight[rows.label > 0]
    return {
        "power": config.data.exposure_power,
        "positives": int(len(w)),
        "weight_min": round(float(w.min()), 4) if len(w) else None,
        "weight_max": round(float(w.max()), 4) if len(w) else None,
        "capped": int(np.count_nonzero(w >= config.data.exposure_weight_cap)),
    }


def explore_validation(result: TrainResult, valid: Examples, k: int = 10) -> dict:
    """:func:`recommender.rules.explore_recall_by_slots` of ``result``'s model on stage-1 candidate rows
    (``valid``: each request's candidates in stage 1's order, labelled by the next basket)."""
    probs = predict(result.model, result.features.encode(valid), device=result.device)
    group = pd.DataFrame({"u": valid.user_id, "t": valid.timestamp}).groupby(["u", "t"], sort=False).ngroup()
    return explore_recall_by_slots(
        group.to_numpy(), probs, valid.label, valid.user_item_count == 0, k=k,
        popularity=valid.item_popularity, boosts=EXPLORE_BOOSTS,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ plain baseline


def compare_throughput(
    examples: Examples, config: Config, space: FeatureSpace | None = None, *, batches: int = 200, block: int = 10
) -> dict:
    """Training examples/s of our step (fused row-wise Adagrad tables + Adam, weighted BCE) next to a plain
    torchrec ``DLRMTrain`` step (unfused EmbeddingBagCollection, torch Adagrad on the tables, Adam on the MLPs)
    on the same batches and architecture. The two alternate in blocks of ``block`` batches so that load from
    other processes on a shared machine hits both alike; each step includes building its batch."""
    from torchrec.datasets.utils import Batch as TorchrecBatch
    from torchrec.models.dlrm import DLRM, DLRMTrain
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    from recommender.model import table_configs

    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed)
    device = resolve_device(tc.device)
    space = space or FeatureSpace.fit(examples, config.features)
    encoded = space.encode(examples)
    kw = dict(table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense)
    ours = RankerTrain(build_model(config.model, **kw, device=device, fused=tc)).train()
    ours_opt = torch.optim.Adam(dense_parameters(ours.model), lr=tc.lr)
    ebc = EmbeddingBagCollection(
        tables=table_configs(space.table_sizes(), space.table_features(), config.model.embedding_dim), device=device
    )
    dlrm = DLRM(
        embedding_bag_collection=ebc,
        dense_in_features=space.num_dense,
        dense_arch_layer_sizes=list(config.model.dense_arch),
        over_arch_layer_sizes=list(config.model.over_arch),
        dense_device=device,
    )
    base = DLRMTrain(dlrm).to(device).train()
    base_emb = torch.optim.Adagrad([p for n, p in base.named_parameters() if "embedding_bag" in n], lr=tc.embedding_lr)
    base_dense = torch.optim.Adam([p for n, p in base.named_parameters() if "embedding_bag" not in n], lr=tc.lr)

    def step_ours(rows):
        b = encoded.batch(rows).to(device)
        loss, _ = ours(b)
        ours_opt.zero_grad(set_to_none=True)
        loss.backward()
        ours_opt.step()
        return len(b)

    def step_base(rows):
        b = encoded.batch(rows)
        tb = TorchrecBatch(dense_features=b.dense_features, sparse_features=b.sparse_features, labels=b.labels).to(
            device
        )
        loss, _ = base(tb)
        base_emb.zero_grad(set_to_none=True)
        base_dense.zero_grad(set_to_none=True)
        loss.backward()
        base_emb.step()
        base_dense.step()
        return len(b)

    rng = np.random.default_rng(tc.seed)
    n, bs = len(encoded), tc.batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(-(-batches * bs // max(n, 1)) + 1)])
    rows = [order[i * bs : (i + 1) * bs] for i in range(batches)]
    for r in rows[:3]:  # warm-up, not timed
        step_ours(r)
        step_base(r)
    t = {"ours": 0.0, "baseline": 0.0}
    seen = {"ours": 0, "baseline": 0}
    for i in range(0, batches, block):
        for name, fn in (("ours", step_ours), ("baseline", step_base)):
            s = time.perf_counter()
            for r in rows[i : i + block]:
                seen[name] += fn(r)
            t[name] += time.perf_counter() - s
    ours_eps, base_eps = seen["ours"] / t["ours"], seen["baseline"] / t["baseline"]
    return {
        "batch_size": bs,
        "batches": batches,
        "ours_examples_per_s": ours_eps,
        "baseline_examples_per_s": base_eps,
        "ratio": ours_eps / base_eps,
        "baseline": "torchrec DLRMTrain, plain EmbeddingBagCollection, Adagrad + Adam",
    }


# -------------------------------------------------------------------------------------- distributed


def train_distributed(examples: Examples, config: Config, *, valid: Examples | None = None) -> dict:
    """One rank of a torchrun job: DistributedModelParallel with table-wise sharding (gloo on CPU, nccl on
    GPU). Every rank builds the same examples and vocabularies (deterministic) and trains on every
    ``world_size``-th batch. Returns this rank's summary (losses averaged across ranks)."""
    import torch.distributed as dist
    from torch.distributed.optim import _apply_optimizer_in_backward
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.distributed.types import ShardingEnv, ShardingType
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter
    from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

    tc = config.train
    use_cuda = resolve_device(tc.device).type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    seed_everything(tc.seed)
    space = FeatureSpace.fit(examples, config.features)
    encoded = space.encode(examples)
    model = build_model(
        config.model,
        table_sizes=space.table_sizes(),
        table_features=space.table_features(),
        num_dense=space.num_dense,
        device=torch.device("cpu"),
    )
    # the tables only: a target-attention sparse arch also holds dense parameters, which Adam trains
    _apply_optimizer_in_backward(RowWiseAdagrad, embedding_parameters(model), {"lr": tc.embedding_lr})
    sharders = [EmbeddingBagCollectionSharder()]
    constraints = {
        f"t_{name}": ParameterConstraints(sharding_types=[ShardingType.TABLE_WISE.value])
        for name in space.table_sizes()
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=world, compute_device=device.type), constraints=constraints
    )
    wrapped = RankerTrain(model)
    plan = planner.collective_plan(wrapped, sharders, dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(
        module=wrapped,
        device=device,
        plan=plan,
        sharders=sharders,
        env=ShardingEnv.from_process_group(dist.GroupMember.WORLD),
    )
    dense_opt = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(dmp.named_parameters())),
        lambda params: torch.optim.Adam(params, lr=tc.lr),
    )
    optimizer = CombinedOptimizer([dmp.fused_optimizer, dense_opt])
    losses, seen, seconds = _run_epochs(
        dmp, optimizer, encoded, config, device, rank=rank, world_size=world, desc=f"rank {rank}"
    )
    mean = torch.tensor(losses, dtype=torch.float64)
    dist.all_reduce(mean)
    mean /= world
    tables = {name: str(p.sharding_type) + f" ranks={[s.placement.rank() for s in (p.sharding_spec.shards if p.sharding_spec else [])]}"
              for mod in plan.plan.values() for name, p in mod.items()}  # fmt: skip
    summary = {
        "rank": rank,
        "world_size": world,
        "backend": dist.get_backend(),
        "local_train_loss": losses,
        "train_loss": mean.tolist(),
        "local_examples": seen,
        "examples_per_s_local": seen / seconds if seconds else 0.0,
        "plan": tables,
    }
    dist.barrier()
    return summary


# ----------------------------------------------------------------------------------------------- CLI


def load_data(args: argparse.Namespace) -> ShopData:
    from recommender.data import Interactions, ItemTable, interactions_from_retail_log, synthetic_shop

    if args.ta_feng:
        return interactions_from_retail_log(args.ta_feng, limit=args.limit)
    if args.interactions:
        if not args.items:
            raise SystemExit("--interactions needs --items")
        return ShopData(Interactions.from_parquet(args.interactions), ItemTable.from_parquet(args.items))
    return synthetic_shop(n_users=args.synthetic_users, n_items=max(200, args.synthetic_users // 5), seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recommender.train", description="Train the DLRM ranker.")
    src = p.add_argument_group("data (default: synthetic shop with a planted signal)")
    src.add_argument("--synthetic-users", type=int, default=5000)
    src.add_argument("--ta-feng", type=Path, default=None, help="Ta Feng-format purchase log (.csv/.zip)")
    src.add_argument("--limit", type=int, default=None, help="first N lines of --ta-feng")
    src.add_argument("--interactions", type=Path, default=None, help="Parquet export of interactions")
    src.add_argument("--items", type=Path, default=None, help="Parquet export of items")
    p.add_argument("--arch", choices=["dlrm", "dlrm_dcn"], default="dlrm")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--embedding-lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--compare-baseline",
        action="store_true",
        help="also train a plain torchrec DLRMTrain loop on the same data; print both examples/s",
    )
    p.add_argument("--distributed", action="store_true", help="run as one rank under torchrun (DMP, table-wise)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--out-dir", type=Path, default=None, help="--distributed: each rank writes rank<N>.json here")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    config = Config()
    config.model.arch = args.arch
    config.train.epochs = args.epochs
    config.train.batch_size = args.batch_size
    config.train.seed = args.seed
    config.train.device = args.device
    config.train.threads = args.threads
    config.train.progress = not args.no_progress
    if args.lr is not None:
        config.train.lr = args.lr
    if args.embedding_lr is not None:
        config.train.embedding_lr = args.embedding_lr
    if args.ta_feng:
        config.data.positive_weights = {"purchase": 1.0}
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    data = load_data(args)
    examples = build_examples(data.interactions, data.items, config.data, features=config.features, seed=args.seed)
    tr, va, cutoff = split_by_time(examples, config.data.valid_fraction)
    prep = time.perf_counter() - t

    if args.distributed:
        summary = train_distributed(tr, config, valid=va)
        if args.out_dir:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            (args.out_dir / f"rank{summary['rank']}.json").write_text(json.dumps(summary, indent=2))
        if summary["rank"] == 0:
            print(json.dumps({k: summary[k] for k in ("world_size", "backend", "train_loss", "plan")}, indent=2))
        import torch.distributed as dist

        dist.destroy_process_group()
        return 0

    print(
        f"{len(data.interactions):,} interactions -> {len(tr):,} train / {len(va):,} validation examples "
        f"(positives {tr.positive_rate:.1%}) in {prep:.1f}s; torch threads {torch.get_num_threads()}"
    )
    result = train(tr, config, valid=va)
    report = {
        "arch": config.model.arch,
        "device": str(result.device),
        "threads": torch.get_num_threads(),
        "train_examples": len(tr),
        "valid_examples": len(va),
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "train_loss": result.metrics["train_loss"],
        "valid_auc": result.metrics.get("valid_auc"),
        "valid_logloss": result.metrics.get("valid_logloss"),
        "examples_per_s": result.examples_per_s,
    }
    print(
        f"ours (fused row-wise Adagrad + Adam): {result.examples_per_s:,.0f} examples/s, "
        f"loss {result.metrics['train_loss'][0]:.4f} -> {result.metrics['train_loss'][-1]:.4f}, "
        f"validation AUC {report['valid_auc']:.4f}, log loss {report['valid_logloss']:.4f}"
    )
    if args.compare_baseline:
        cmp = compare_throughput(tr, config, result.features)
        report["compare"] = cmp
        print(
            f"throughput, alternating blocks, batch {cmp['batch_size']}: ours {cmp['ours_examples_per_s']:,.0f} "
            f"examples/s, plain torchrec DLRMTrain {cmp['baseline_examples_per_s']:,.0f} examples/s, "
            f"ratio {cmp['ratio']:.2f}x"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one place the shop calls ``recommender/`` (plain data in, plain data out; no Django here).

Imports of torch/torchrec happen inside the functions: the web process never loads them, and a Celery
worker loads them in the process that runs the task (after the fork), never initialising CUDA in a parent.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVAL_USERS = 200  # users ranked over the whole catalogue for NDCG@10 / Recall@10 at training time
QUALITY_K = 10  # the k of the ranking metrics stored with each version (``ndcg@10``, ``best_sellers@10`` ...)


def training_note(metrics: Mapping[str, Any] | None) -> str | None:
    """A plain sentence when a version's ranker kept no update after its start (None otherwise). On stage-1
    candidate rows it starts from stage 1's order, so it then ranks as that order does; on pointwise rows (a
    log too short to cut) it starts untrained."""
    if not isinstance(metrics, Mapping) or metrics.get("model_updates") != 0:
        return None
    if metrics.get("training_rows") == "stage-1 candidates":
        return "no update improved its validation loss: it ranks as stage 1's order does"
    return "no update improved its validation loss: its ranker is untrained"


@dataclass
class Trained:
    version: str
    metrics: dict[str, Any]
    seconds: float
    examples: int
    device: str = ""


@dataclass
class GateOutcome:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def _deep_merge(base: dict, override: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def config_from_overrides(overrides: Mapping[str, Any] | None):
    from recommender.config import Config

    base = Config().to_dict()
    base["train"]["progress"] = False  # a worker's log is no terminal
    return Config.from_dict(_deep_merge(base, overrides or {}))


def load_snapshot(snapshot: Path):
    from recommender.data import load_parquet

    return load_parquet(snapshot / "interactions.parquet", snapshot / "items.parquet")


def _ranking_metrics_at(
    model, space, data, config, cutoff: int, *, k: int = QUALITY_K, users: int = EVAL_USERS
) -> dict:
    """Recall@k / NDCG@k of the served pipeline (stage 1 fitted before ``cutoff``, ``model`` ranking, rules)
    for up to ``users`` users, against what they engaged with after ``cutoff``; and under ``baselines`` the
    same figures on the same users for global popularity and for stage 1's own order through the same
    rules (``retrieval_only``), so a version's quality is read beside what it replaces."""
    from recommender.baselines import PopularityBaseline
    from recommender.holdout import make_holdout, served_ranking
    from recommender.metrics import BEST_SELLERS, best_seller_reach, ranking_metrics

    holdout = make_holdout(data, cutoff, config, users=users, seed=config.train.seed)
    popular = PopularityBaseline(holdout.history, tuple(config.data.positive_weights))
    best = popular.top[:BEST_SELLERS]
    out = served_ranking(holdout, model, space, config, k=k, best_sellers=best)
    out.pop("per_user_ndcg", None)
    if not len(holdout.users):
        return out
    stage1 = served_ranking(holdout, None, space, config, k=k, use_model=False, best_sellers=best)
    stage1.pop("per_user_ndcg", None)
    stage1.pop("ranked_users", None)
    popular_ranked = [popular.rank(u, holdout.cutoff, k) for u in holdout.users]
    out["baselines"] = {
        "popularity": ranking_metrics(popular_ranked, holdout.truth, k) | best_seller_reach(popular_ranked, best, k),
        "retrieval_only": stage1,
    }
    return out


def train_and_register(
    *,
    snapshot: Path,
    model_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Trained:
    """Train on a snapshot, measure AUC (validation rows) and NDCG@10 (ranking after the time split),
    and register the version (not yet active). Returns its id, metrics and training time."""
    from recommender.registry import Registry
    from recommender.stage1 import fit_retriever, retriever_state
    from recommender.train import train_on_interactions

    progress = progress or (lambda stage, fraction: None)
    config = config_from_overrides(overrides)
    data = load_snapshot(snapshot)
    progress("training", 0.0)
    t0 = time.perf_counter()
    result = train_on_interactions(data, config)
    seconds = time.perf_counter() - t0
    progress("ranking metrics", 0.8)
    # measured on the model trained without the validation rows; the one registered is then refit on all rows
    checked = result.validated or result
    ranking = _ranking_metrics_at(checked.model, checked.features, data, config, int(result.metrics["split_cutoff"]))
    metrics = {
        "auc": _finite(result.metrics.get("valid_auc")),
        "logloss": _finite(result.metrics.get("valid_logloss")),
        **{k: v for k, v in ranking.items()},
        "training_rows": result.metrics.get("training_rows"),
        # updates the shipped ranker had after its start (0: no update improved the validation loss; training_note)
        "model_updates": result.metrics.get("refit_steps", result.metrics.get("best_steps")),
        "exposure_weighting": result.metrics.get("exposure_weighting"),
        "refit_examples": int(result.metrics.get("refit_examples", 0)),
        "train_examples": int(result.metrics.get("train_examples", 0)),
        "valid_examples": int(result.metrics.get("valid_examples", 0)),
        "examples_per_s": round(float(result.examples_per_s), 1),
        "train_loss": [round(float(x), 5) for x in result.metrics.get("train_loss", [])],
        "device": str(result.device),
    }
    progress("holdout gate", 0.85)
    metrics["data_until"] = int(data.interactions.timestamp.max()) if len(data.interactions) else None
    metrics["holdout_gate"] = _holdout_gate(model_dir, checked, data, config, int(result.metrics["split_cutoff"]))
    progress("registering", 0.95)
    # stage 1 as the served pipeline fits it on this snapshot, saved with the ranker (a rollback restores both)
    retriever, user_index = fit_retriever(data.interactions, data.items, config=config)
    version = Registry(model_dir).register(
        weights=result.model,
        vocabularies={**result.features.to_state(), "stage1": retriever_state(retriever, user_index, data.items)},
        config=config.to_dict(),
        metrics=metrics,
    )
    return Trained(
        version=version, metrics=metrics, seconds=seconds, examples=metrics["train_examples"], device=str(result.device)
    )


def _holdout_gate(model_dir: Path, challenger, data, config, cutoff: int) -> dict:
    """The challenger (trained before ``cutoff``) against the active champion on the same fresh holdout
    (events after both were trained), through the served pipeline; see ``recommender.gate``."""
    from recommender.gate import holdout_gate
    from recommender.holdout import make_holdout
    from recommender.registry import ArtifactError, Registry
    from recommender.serving import model_from_artifact

    registry = Registry(model_dir)
    champion_version, champion, notes = registry.active(), None, []
    if champion_version:
        try:
            artifact = registry.load(champion_version)
            champion = model_from_artifact(artifact)
            until = artifact.metrics.get("data_until")
            if until is not None and int(until) + 1 > cutoff:
                fresh = make_holdout(data, int(until) + 1, config, users=EVAL_USERS, seed=config.train.seed)
                if len(fresh.users) >= 20:
                    cutoff = int(until) + 1  # after everything the champion saw: no advantage either way
                else:
                    notes.append(f"only {len(fresh.users)} users after the champion's data: holdout from {cutoff}")
        except (ArtifactError, FileNotFoundError, RuntimeError, ValueError) as e:
            notes.append(f"champion {champion_version} cannot be loaded for comparison ({e})")
            champion_version, champion = None, None
    holdout = make_holdout(data, cutoff, config, users=EVAL_USERS, seed=config.train.seed)
    decision = holdout_gate(
        holdout, (challenger.model, challenger.features), champion, config, champion_version=champion_version
    ).to_dict()
    decision["reasons"] = notes + decision["reasons"]
    decision["champion"] = registry.active()  # an unloadable champion cannot serve either: popularity decides
    return decision


def _finite(x) -> float | None:
    import math

    return float(x) if x is not None and math.isfinite(float(x)) else None


def gate_decide(*, model_dir: Path, version: str, tolerance: float) -> GateOutcome:
    """The champion/challenger decision for ``version``; moves nothing (the shop records, then follows)."""
    from recommender.registry import Registry

    decision = Registry(model_dir).decide(version, tolerance=tolerance)
    return GateOutcome(passed=decision.passed, reasons=list(decision.reasons))


class RegistryRefused(RuntimeError):
    """The registry would not switch: the artifact is missing or corrupt, or there is nothing to go back to."""


def registry_verify(*, model_dir: Path, version: str) -> None:
    """Check ``version``'s artifact before the shop makes it active: manifest, sizes and checksums, then a strict
    load into the model its config describes (every tensor present, every shape as built) with finite weights
    only. A version that passes is one the serving loader can load; one that fails raises RegistryRefused."""
    from recommender.registry import ArtifactError, Registry
    from recommender.serving import model_from_artifact

    try:
        model_from_artifact(Registry(model_dir).load(version))
    except (ArtifactError, FileNotFoundError) as e:
        raise RegistryRefused(str(e)) from e
    except (KeyError, TypeError, ValueError) as e:  # a config.json the model cannot be built from
        raise RegistryRefused(
            f"model {version}: config.json does not describe a model ({type(e).__name__}: {e})"
        ) from e


def registry_rollback_target(*, model_dir: Path) -> str:
    """The previously active version that still verifies (where a rollback goes), without moving the pointer."""
    from recommender.registry import ArtifactError, Registry

    try:
        return Registry(model_dir).rollback_target()
    except (ArtifactError, FileNotFoundError) as e:
        raise RegistryRefused(str(e)) from e


def registry_follow(*, model_dir: Path, version: str) -> bool:
    """Point the registry at ``version`` (the database's active one); return whether it moved.

    Back to the previous version it pops the history (as a rollback does), otherwise it pushes (a promotion).
    """
    from recommender.registry import ArtifactError, Registry

    registry = Registry(model_dir)
    try:
        if registry.active() == version:
            return False
        try:
            back = registry.rollback_target()
        except ArtifactError:
            back = None
        if back == version:
            registry.rollback()
        else:
            registry.promote(version)
    except (ArtifactError, FileNotFoundError) as e:
        raise RegistryRefused(str(e)) from e
    return True


# ------------------------------------------------------------------------------------------- serving


class PipelineRanker:
    """``recommender.pipeline.RecPipeline`` (retrieve -> rank -> rules) as of the snapshot's last event."""

    def __init__(self, pipeline, *, now: int):
        self.pipeline = pipeline
        self.now = now

    def recommend(self, user_keys: Sequence[str], *, k: int) -> list[list[tuple[str, float]]]:
        batch = self.pipeline.recommend_batch(list(user_keys), now=self.now, k=k, n_candidates=max(200, 2 * k))
        return [[(str(i), float(s)) for i, s in zip(r.item_ids, r.scores, strict=True)] for r in batch.results]


def load_ranker(*, model_dir: Path, version: str, snapshot: Path | None = None, max_per_category: int | None = None):
    """A ranker for ``version``: ``.recommend(user_keys, k=...) -> [[(item_id, score), ...], ...]``, best first.

    History and catalogue come from the latest snapshot (the data the version was trained on, or newer).
    """
    from recommender.pipeline import PipelineConfig, RecPipeline
    from recommender.registry import Registry

    artifact = Registry(model_dir).load(version)
    if snapshot is None:
        from .export import snapshot_latest

        snapshot = snapshot_latest()
        if snapshot is None:
            raise RuntimeError("no snapshot to take the shoppers' history from: export first")
    data = load_snapshot(snapshot)
    now = int(data.interactions.timestamp.max()) + 1 if len(data.interactions) else int(time.time())
    pipeline = RecPipeline.from_artifact(
        artifact,
        history=data.interactions,
        items=data.items,
        now=now,
        pipeline_config=PipelineConfig(max_per_category=max_per_category),
    )
    return PipelineRanker(pipeline, now=now)


def fit_stage1_pipeline(
    *, snapshot: Path, max_events: int, train_overrides: Mapping[str, Any] | None, max_per_category: int | None
):
    """A model-free pipeline on ``snapshot``: stage 1 fitted on its newest ``max_events`` events (0: all; the
    same fit a retrain saves with its model, :func:`recommender.stage1.fit_retriever`), the rules, no ranker.
    Returns (pipeline, events used, events in the snapshot)."""
    import numpy as np

    from recommender.features import FeatureSpace, Vocab
    from recommender.pipeline import PipelineConfig, RecPipeline

    data = load_snapshot(snapshot)
    history, items = data.interactions, data.items
    total = len(history)
    if 0 < max_events < total:  # the newest events: the snapshot is written in event order, but sort to be sure
        newest = np.argsort(history.timestamp, kind="stable")[total - max_events :]
        history = history.take(np.sort(newest))
    config = config_from_overrides(train_overrides)
    # No ranker reads features here; the pipeline's feature object only needs the catalogue keyed (ids it
    # does not know fall into an out-of-vocabulary row, as they would for a model).
    none = np.zeros(0, dtype=str)
    space = FeatureSpace(
        config.features,
        {
            "user": Vocab.fit(none, oov_buckets=1),
            "item": Vocab.fit(items.item_id, oov_buckets=1),
            "category": Vocab.fit(items.category, oov_buckets=1),
            "brand": Vocab.fit(items.brand, oov_buckets=1),
            "device": Vocab.fit(none, oov_buckets=1),
        },
        np.zeros(0),
    )
    pipeline = RecPipeline.build(
        history=history,
        items=items,
        model=None,
        space=space,
        config=config,
        pipeline_config=PipelineConfig(max_per_category=max_per_category),
    )
    return pipeline, len(history), total


# What the build server imports once, so that each build's child starts with torch and the recommender loaded.
_BUILD_PRELOAD = ["shop.recs.engine", "recommender.pipeline", "recommender.registry", "recommender.serving"]


def _build_child_start(nice: int) -> None:
    import os

    import torch

    if nice > 0:
        os.nice(nice)  # the web process's requests come first on a busy CPU
    torch.set_num_threads(1)


def build_apart(fn: Callable[..., Any], /, *, nice: int = 10, **kwargs: Any) -> tuple[Any, int]:
    """Run ``fn(**kwargs)`` in a child process and return (its result, the child's pid). ``fn`` is passed by
    name (a function of this module, or any the child can import); the result comes back whole, by pickle.

    Why: building a serving pipeline converts and sorts arrays as long as the snapshot (about 20 s at 50,000
    products and 5 million events), mostly inside numpy and pandas calls that hold the interpreter lock for up
    to a second each. In a web process, no request thread runs meanwhile. Here the web process only unpickles
    the result (``benchmarks.reload`` measures both).

    The child is forked from multiprocessing's fork server (started on the first build, from a fresh
    interpreter, never from this process's threads), which imports torch and the recommender once; it runs at
    ``nice`` and with one torch thread. It writes the result to a temporary file with pickle protocol 5,
    which this process reads back array by array: the file is read with the lock released, and each array
    wraps the bytes read for it without a copy (through a pipe, the whole result would be joined into one
    buffer first, one copy of it all with the lock held). A child whose web process died meanwhile writes
    nothing (nobody would read or delete the file). An exception raised by ``fn`` is raised here, with its
    type and message.
    """
    import multiprocessing
    import os
    import pickle
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_BUILD_PRELOAD)
    # The one pickle this code reads (tests/shop/test_security_static.py holds it to that): written by the child
    # this call started, in a folder this call made that only this user can open (mkdtemp: mode 0700), read
    # once and deleted. Nothing from outside (a registry artifact, a snapshot, a request) is ever unpickled.
    with tempfile.TemporaryDirectory(prefix="shop-serving-build-") as folder:
        path = Path(folder) / "result.pickle"
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=_build_child_start, initargs=(nice,)) as pool:
            pid = pool.submit(_in_child, fn, kwargs, path, os.getpid()).result()
        with path.open("rb") as f:
            return pickle.load(f), pid  # nosec B301  # our own child's result, from our private folder (above)


def _in_child(fn: Callable[..., Any], kwargs: Mapping[str, Any], path: Path, asker: int) -> int:
    import os
    import pickle

    result = fn(**kwargs)
    try:
        os.kill(asker, 0)  # the web process that asked is still there
    except ProcessLookupError:  # gone meanwhile: nobody would read (nor delete) the file,
        # nor ever send this pool worker more work or shut it down; its exit also lets the fork server go
        # (which waits for every process holding its pipe, this one included)
        os._exit(0)
    with path.open("wb") as f:
        pickle.dump(result, f, protocol=5)
    return os.getpid()


# -------------------------------------------------------------------------------------- evaluate/bench


def evaluate(*, snapshot: Path, model_dir: Path, version: str) -> dict:
    """AUC / log loss on the snapshot's validation part and NDCG@10 / Recall@10 after the time split."""
    import numpy as np

    from recommender.metrics import auc_score, log_loss
    from recommender.registry import Registry
    from recommender.rows import training_rows
    from recommender.serving import model_from_artifact
    from recommender.train import predict

    model, space, config = model_from_artifact(Registry(model_dir).load(version))
    data = load_snapshot(snapshot)
    rows = training_rows(data.interactions, data.items, config)  # the rows the version was validated on
    valid, cutoff = rows.valid, rows.cutoff
    probs = predict(model, space.encode(valid))
    out = {
        "auc": _finite(auc_score(valid.label, probs)),
        "logloss": _finite(log_loss(valid.label, probs)),
        "valid_examples": len(valid),
        "positive_rate": float(np.mean(valid.label)) if len(valid) else 0.0,
    }
    out.update(_ranking_metrics_at(model, space, data, config, cutoff))
    return out


def benchmark(*, model_dir: Path, options: Mapping[str, Any]) -> dict:
    """The recommender's accelerator benchmark (recommender.bench), on this node's devices."""
    try:
        from recommender import bench
    except ImportError as e:  # the benchmark module has not landed
        raise RuntimeError("recommender.bench is not available") from e
    run = getattr(bench, "run_benchmark", None) or getattr(bench, "run", None)
    if run is None:
        raise RuntimeError("recommender.bench has no run_benchmark()")
    return run(**dict(options))

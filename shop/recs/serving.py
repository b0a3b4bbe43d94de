"""The serving model of a web process: loaded once, off the request path, swapped whole.

A background thread (started by the first request that wants it) reads which model version is active and
which snapshot is the latest; when either changed it builds a new pipeline (registry artifact + snapshot
history, :func:`shop.recs.engine.load_ranker`) and replaces :data:`_current` in one assignment. A request
takes that reference once and uses it to the end, so it never sees half of an old and half of a new
catalogue; nothing mutates a published :class:`ServingModel`.

The pipeline is built in a child process and handed back whole (RECS_SERVING_BUILD_APART,
:func:`shop.recs.engine.build_apart`): building it in this process held the interpreter lock for up to a second
at a time (numpy and pandas converting and sorting the snapshot's arrays), and no request thread ran meanwhile.

A version that cannot be loaded (artifact missing or corrupt) leaves the previous model serving, and the
error is kept for the fallback reason. The same thread flushes the serving counters (:mod:`.stats`) and
reads the products' cards (:mod:`.cards`), so a request shows its items without a query.

Stage 1 without a model: the ``heuristic`` arm ranks by stage 1 alone, which must not wait for a DLRM to
pass the gate. While no model serves (none active yet, or the active one cannot be loaded), the same
thread fits stage 1 on the latest snapshot (its newest RECS_STAGE1_MAX_EVENTS events at most; the fit is
timed and logged) and publishes it the same way (:func:`serving_stage1`). Once a model serves, its own
stage 1 (saved with it, so a rollback restores both) answers the heuristic arm and the fitted one is
dropped.

After each load the thread freezes the heap (:func:`heap_freeze`): the imported modules (Django, torch,
torchrec: about 440,000 objects) and the model are long-lived, and without it each of the collector's full
collections walked them all, a pause of the whole web process (every request in flight) of up to 515 ms,
several times a minute under load.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from .cards import product_cards_refresh_due
from .export import snapshot_latest, snapshot_manifest
from .models import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    """An immutable, published serving model: the pipeline and what it was built from."""

    version: str
    pipeline: Any  # recommender.pipeline.RecPipeline (treated as read-only)
    snapshot: str
    max_event_id: int  # events with a larger id are "fresh": read per request from the database
    load_seconds: float
    stage1_only: bool = False  # stage 1 fitted on the snapshot, no ranker (the heuristic arm without a model)
    built_in_pid: int = 0  # the process that built the pipeline (a child: RECS_SERVING_BUILD_APART)


@dataclass(frozen=True)
class ServingStatus:
    model: ServingModel | None
    error: str  # why the active version is not the one serving ("" when it is)
    started: bool


_current: ServingModel | None = None
_kept: dict[tuple[str, str], ServingModel] = {}  # the models this process served last, newest last
# A version (on a snapshot) that failed to load is not loaded again at every poll: the next try waits
# RETRY_MIN_S, then twice as long after each failure, up to RETRY_MAX_S. key -> (next try, delay)
_failed: dict[tuple[str, str], tuple[float, float]] = {}
RETRY_MIN_S = 5.0
RETRY_MAX_S = 300.0
_error: str = "model not loaded yet"
_stage1: ServingModel | None = None  # stage 1 alone, while no model serves
_stage1_error: str = "stage 1 not fitted yet"
_lock = threading.Lock()  # guards starting the thread and a reload; requests never take it
_thread: threading.Thread | None = None
_wake = threading.Event()
_stop = threading.Event()


def serving_model() -> ServingModel | None:
    """The model this process serves now (one reference read; use it for the whole request)."""
    return _current


def serving_stage1() -> ServingModel | None:
    """Stage 1 fitted on the latest snapshot, without a ranker: published only while no model serves."""
    return _stage1


def serving_status() -> ServingStatus:
    return ServingStatus(model=_current, error=_error, started=_thread is not None)


def serving_stage1_error() -> str:
    """Why :func:`serving_stage1` is None ("" when it is not)."""
    return _stage1_error


def _wanted() -> tuple[str | None, Path | None]:
    version = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    return version, snapshot_latest()


def serving_reload() -> ServingModel | None:
    """Build and publish the active version if it (or the latest snapshot) differs from what serves.

    Called by the background thread; tests call it directly. Returns the model serving afterwards.
    """
    global _current, _error
    with _lock:
        version, snap = _wanted()
        cur = _current
        if version is None:
            _error = "no active model version"
            return cur
        if snap is None:
            _error = "no snapshot"
            return cur
        if cur is not None and cur.version == version and cur.snapshot == snap.name:
            _error = ""
            return cur
        kept = _kept.get((version, snap.name))
        if kept is not None:  # a rollback to a model this process served a moment ago: swap, no load
            _current = kept
            _error = ""
            log.info("serving: model %s on %s back from memory", version, snap.name)
            return kept
        key = (version, snap.name)
        failed = _failed.get(key)
        if failed is not None and time.monotonic() < failed[0]:
            return cur  # _error still says why; the next try comes after the back-off
        from . import engine

        t0 = time.perf_counter()
        try:
            ranker, pid = _build(
                engine.load_ranker,
                model_dir=Path(settings.MODEL_DIR),
                version=version,
                snapshot=snap,
                max_per_category=settings.RECS_MAX_PER_CATEGORY or None,
            )
            manifest = snapshot_manifest(snap)
        except Exception as exc:  # artifact missing or corrupt, snapshot unreadable: keep what serves
            _error = f"model {version} unavailable: {type(exc).__name__}: {exc}"[:300]
            delay = RETRY_MIN_S if failed is None else min(failed[1] * 2, RETRY_MAX_S)
            _failed[key] = (time.monotonic() + delay, delay)
            log.warning("serving: cannot load %s: %s (next try in %.0f s)", version, exc, delay)
            return cur
        _failed.pop(key, None)
        model = ServingModel(
            version=version,
            pipeline=ranker.pipeline,
            snapshot=snap.name,
            max_event_id=int(manifest["max_event_id"]),
            load_seconds=time.perf_counter() - t0,
            built_in_pid=pid,
        )
        _current = model  # the swap: one reference
        heap_freeze()
        _kept[(version, snap.name)] = model
        while len(_kept) > max(1, settings.RECS_SERVING_KEEP):
            del _kept[next(iter(_kept))]  # the oldest
        _error = ""
        log.info("serving: model %s on %s loaded in %.1fs%s", version, snap.name, model.load_seconds, _by(pid))
        return model


def _build(fn, **kwargs):
    """``fn(**kwargs)`` (a function of :mod:`.engine`) in a child process (RECS_SERVING_BUILD_APART, the
    default; :func:`.engine.build_apart` says why) or in this thread. Returns (result, pid that built it)."""
    from . import engine

    if settings.RECS_SERVING_BUILD_APART:
        return engine.build_apart(fn, nice=settings.RECS_SERVING_BUILD_NICE, **kwargs)
    return fn(**kwargs), os.getpid()


def serving_stage1_reload() -> ServingModel | None:
    """While no model serves, fit and publish stage 1 on the latest snapshot (when it changed); once a model
    serves, drop it (the model's pipeline carries its own stage 1). Returns what is published afterwards.

    Called by the background thread after :func:`serving_reload`; tests call it directly."""
    global _stage1, _stage1_error
    with _lock:
        if _current is not None:
            _stage1, _stage1_error = None, ""
            return None
        snap = snapshot_latest()
        if snap is None:
            _stage1_error = "no snapshot"
            return _stage1
        held = _stage1
        if held is not None and held.snapshot == snap.name:
            return held
        t0 = time.perf_counter()
        try:
            from . import engine

            (pipeline, used, total), pid = _build(
                engine.fit_stage1_pipeline,
                snapshot=snap,
                max_events=int(settings.RECS_STAGE1_MAX_EVENTS),
                train_overrides=settings.RECS_TRAIN_CONFIG,
                max_per_category=settings.RECS_MAX_PER_CATEGORY or None,
            )
            manifest = snapshot_manifest(snap)
        except Exception as exc:  # an unreadable snapshot: keep what serves, say why
            _stage1_error = f"stage 1 unavailable: {type(exc).__name__}: {exc}"[:300]
            log.warning("serving: cannot fit stage 1 on %s: %s", snap.name, exc)
            return held
        stage1 = ServingModel(
            version="",
            pipeline=pipeline,
            snapshot=snap.name,
            max_event_id=int(manifest["max_event_id"]),
            load_seconds=time.perf_counter() - t0,
            stage1_only=True,
            built_in_pid=pid,
        )
        _stage1, _stage1_error = stage1, ""
        heap_freeze()
        log.info(
            "serving: no model serves; stage 1 fitted on %s (%d of %d events, RECS_STAGE1_MAX_EVENTS=%d) in %.1fs%s",
            snap.name,
            used,
            total,
            settings.RECS_STAGE1_MAX_EVENTS,
            stage1.load_seconds,
            _by(pid),
        )
        return stage1


def _by(pid: int) -> str:
    return "" if pid == os.getpid() else f" (built in child process {pid})"


def heap_freeze() -> None:
    """Move every object alive now into the interpreter's permanent generation (``gc.freeze``), which the
    cyclic collector no longer scans: its full collections then walk only what was allocated since.

    Called when the loader thread starts (torch imported) and after a model (or stage 1) is published; the
    web server does the same once the application is loaded (``shop/ops/gunicorn_conf.py``).
    Frozen objects are still freed by reference counting when dropped: a model evicted later goes as any
    object does; only what it held in reference cycles stays (about ten objects per model, measured). The
    young generations are collected first, so the garbage of requests in flight is not frozen with it.
    Off with RECS_GC_FREEZE=false.
    """
    if settings.RECS_GC_FREEZE:
        gc.collect(1)
        gc.freeze()


def serving_forget() -> None:
    """Drop the loaded model and stage 1 (tests; a process that must not serve a stale one)."""
    global _current, _error, _stage1, _stage1_error
    with _lock:
        _current = None
        _kept.clear()
        _failed.clear()
        _error = "model not loaded yet"
        _stage1, _stage1_error = None, "stage 1 not fitted yet"


def _loop() -> None:
    from .stats import serving_stats_flush

    last_flush = time.monotonic()
    while not _stop.is_set():
        try:
            serving_reload()
            serving_stage1_reload()
        except Exception:  # the database may be down for a moment: try again next round
            log.exception("serving: reload check failed")
        try:
            product_cards_refresh_due()  # what a recommendation shows: read here, not on requests
        except Exception:
            log.exception("serving: product cards refresh failed")
        if time.monotonic() - last_flush >= settings.RECS_STATS_FLUSH_S:
            try:
                serving_stats_flush()
            except Exception:
                log.exception("serving: stats flush failed")
            last_flush = time.monotonic()
        close_old_connections()
        _wake.wait(min(settings.RECS_SERVING_POLL_S, settings.RECS_STATS_FLUSH_S))
        _wake.clear()
    close_old_connections()


def serving_start() -> bool:
    """Start this process's loader thread once (no-op when RECS_SERVING_LOAD is off); never blocks on
    the model. Sets torch's intra-op threads for the web process (gunicorn threads x torch threads must
    not oversubscribe the cores)."""
    global _thread
    if _thread is not None or not settings.RECS_SERVING_LOAD:
        return _thread is not None
    with _lock:
        if _thread is not None:
            return True
        import torch

        torch.set_num_threads(settings.RECS_TORCH_THREADS)
        heap_freeze()  # torch's modules (about 135,000 objects) stay whether or not a model ever loads
        _thread = threading.Thread(target=_loop, name="recs-serving", daemon=True)
        _thread.start()
    return True


def serving_stop(timeout: float = 10.0) -> None:
    """Stop the loader thread (tests; it is a daemon otherwise and dies with the process)."""
    global _thread
    thread = _thread
    if thread is None:
        return
    _stop.set()
    _wake.set()
    thread.join(timeout)
    with _lock:
        _thread = None
    _stop.clear()

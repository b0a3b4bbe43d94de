"""Celery worker operations: a heartbeat file for the container health check, a Prometheus endpoint per
worker (``WORKER_METRICS_PORT``) and the duration of every task.

Connected from ``OpsConfig.ready()``: Celery sets Django up in each worker process, so every worker gets
these without the tasks knowing. In the web process the signals simply never fire.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from celery import signals

from . import metrics

log = logging.getLogger(__name__)

_started: dict[str, float] = {}
_connected = False


def heartbeat_path() -> Path:
    return Path(os.environ.get("WORKER_HEARTBEAT_FILE", "/tmp/worker-heartbeat"))  # noqa: S108 - per container  # nosec B108


def heartbeat_interval_s() -> float:
    return float(os.environ.get("WORKER_HEARTBEAT_S", "10"))


def _write_heartbeat(hostname: str) -> None:
    path = heartbeat_path()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"hostname": hostname, "pid": os.getpid(), "at": time.time()}))
    os.replace(tmp, path)


def _heartbeat_loop(hostname: str, stop: threading.Event) -> None:
    # A thread, not a Celery timer: with --pool solo the event loop is blocked while a long task runs,
    # yet the worker is healthy; the thread proves the process is alive and past start-up.
    while not stop.is_set():
        try:
            _write_heartbeat(hostname)
        except OSError as e:
            log.warning("cannot write the worker heartbeat %s: %s", heartbeat_path(), e)
        stop.wait(heartbeat_interval_s())


_stop = threading.Event()


def on_worker_init(**kwargs) -> None:
    """Before the pool forks: drop other processes' files from the multi-process metrics folder (a restarted
    container keeps its /tmp; stale files would add old counts). This process's own files stay: Django is
    already set up here, so its metrics exist."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    mine = f"_{os.getpid()}.db"
    for f in Path(folder).glob("*.db"):
        if not f.name.endswith(mine):
            f.unlink(missing_ok=True)


def on_worker_ready(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", "") or ""
    threading.Thread(target=_heartbeat_loop, args=(hostname, _stop), name="heartbeat", daemon=True).start()
    port = int(os.environ.get("WORKER_METRICS_PORT", "0") or 0)
    if port:
        from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

        registry = REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        try:
            # loopback unless told otherwise: the metrics carry no authentication (the stack sets 0.0.0.0 on
            # its private network for Prometheus)
            start_http_server(port, addr=os.environ.get("WORKER_METRICS_ADDR", "127.0.0.1"), registry=registry)
            log.info("worker metrics on :%s/metrics", port)
        except OSError as e:  # a second worker on the same host: run without metrics rather than not at all
            log.warning("worker metrics port %s unavailable: %s", port, e)


def on_worker_shutdown(**kwargs) -> None:
    _stop.set()
    heartbeat_path().unlink(missing_ok=True)


def on_task_prerun(task_id=None, **kwargs) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


def on_task_postrun(task_id=None, task=None, state=None, **kwargs) -> None:
    t0 = _started.pop(task_id, None) if task_id else None
    if t0 is None or task is None:
        return
    metrics.task_finished(task=task.name, outcome=str(state or "UNKNOWN").lower(), seconds=time.perf_counter() - t0)


def connect_signals() -> None:
    global _connected
    if _connected:
        return
    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    signals.task_prerun.connect(on_task_prerun, weak=False)
    signals.task_postrun.connect(on_task_postrun, weak=False)
    _connected = True

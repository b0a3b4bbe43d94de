"""gunicorn settings for the shop (``gunicorn shop.wsgi:application --config python:shop.ops.gunicorn_conf``).

Command-line flags override these. Prometheus multi-process mode: with ``PROMETHEUS_MULTIPROC_DIR`` set,
the folder is emptied when the master starts (stale files would add old counts) and a worker's live
files are dropped when it exits.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
from pathlib import Path


def _number(name: str, default: str, cast=int, minimum: float = 0, maximum: float | None = None):
    """``name`` from the environment as a number, or a one-line error naming it (not a traceback)."""
    raw = os.environ.get(name, default)
    kind = "an integer" if cast is int else "a number"
    expected = f"expected {kind} >= {minimum:g}" if maximum is None else f"expected {kind} {minimum:g}-{maximum:g}"
    try:
        value = cast(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: {expected}") from None
    if not value >= minimum or (maximum is not None and value > maximum):  # also refuses nan
        raise SystemExit(f"{name}={raw!r}: {expected}")
    return value


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = _number("WEB_CONCURRENCY", "2", minimum=1)
threads = _number("WEB_THREADS", "4", minimum=1)
# Threads, so a kept-alive connection waits in the worker's poller instead of holding a process
# between a shopper's pages; README "Serving" has the measurement behind the numbers.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
# Longer than a shopper's usual pause between pages (gunicorn's default of 2 s closes most of them).
keepalive = _number("WEB_KEEPALIVE_S", "5")
backlog = 2048
# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections over them.
# On one shared socket every idle worker is woken for each new connection and the first to run takes it:
# under paced load the worker that was already running took about three connections in four, so one
# process (one core's worth of Python) queued while the other idled. README "Serving" has the measurement.
reuse_port = _number("WEB_REUSE_PORT", "1", maximum=1) == 1
# Model loading and the first request of a process can take a while on a small CPU.
timeout = _number("WEB_TIMEOUT_S", "60", minimum=1)
graceful_timeout = 30
# One line per request: "-" (the default) is stdout, as a container's log collector expects; a path writes
# there instead (`make demo` keeps its console for the shoppers' rounds and the lift table); empty: none.
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
# gunicorn's lines, built from the atoms the format names only (shop/ops/access_log.py)
logger_class = "shop.ops.access_log.AccessLogger"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Web processes share 2 cores with torch; one torch thread each (see the design's live-serving rules).
raw_env = [] if "OMP_NUM_THREADS" in os.environ else ["OMP_NUM_THREADS=1"]


#: how long a worker thread waits for a new connection's first bytes before handing the connection to the
#: poller (gunicorn's gthread waits 5 s, holding the thread). A browser sends as soon as it connects; an idle
#: connection (a speculative preconnect, a load generator's connections opened together, a slow client) held
#: a thread each, so as many idle connections as threads (8) stopped a process answering for 5 s.
first_bytes_wait_s = _number("WEB_FIRST_BYTES_WAIT_MS", "10") / 1000.0


def post_fork(server, worker) -> None:
    from gunicorn.workers import gthread

    # gunicorn 27's gthread has no setting for it: a module constant (5 s) bounds both the wait for a new
    # connection's first bytes and, after each response, the drain of an unread request body. Only the first
    # is shortened here. With the constant itself at 10 ms, a thread that waited more than 10 ms for a core or
    # the interpreter between taking the drain's deadline and checking it (a few statements, even for a GET
    # with no body) closed a connection its response had just kept alive, and the client's next request on it
    # failed (tests/ops/test_gunicorn_metrics.py::test_a_slow_thread_keeps_the_connection_alive).
    conn_cls = getattr(gthread, "TConn", None)
    wait = getattr(conn_cls, "wait_for_data", None)
    if wait is None:
        server.log.warning("gunicorn's gthread has no TConn.wait_for_data: WEB_FIRST_BYTES_WAIT_MS not applied")
        return
    if getattr(wait, "first_bytes_wait_s", None) is not None:
        wait = wait.__wrapped__  # set again in this process (tests): wrap gunicorn's own method, once

    def wait_for_data(self, timeout):  # gunicorn calls it with its 5 s, for new connections only
        return wait(self, first_bytes_wait_s)

    wait_for_data.__wrapped__ = wait
    wait_for_data.first_bytes_wait_s = first_bytes_wait_s
    conn_cls.wait_for_data = wait_for_data


#: how long a thread may hold the interpreter while another waits for it (Python's default 5 ms). A thread whose
#: database or cache answer has arrived waits up to that long while another thread of its process computes,
#: at every round trip of its request; 0 keeps Python's default.
gil_switch_interval_s = _number("WEB_GIL_SWITCH_MS", "0", cast=float) / 1000.0


#: how many of the collector's middle passes go by before it may make a full one (Python's default 10). Each
#: full pass walks every object made since the freeze below (the held cards, product pages and lists): at
#: 50,000 products 35-72 ms, a stall of every request in flight in the process, 13 in 108 s of load; at 100,
#: 2-3 passes in the same time. Short-lived cycles are still collected by the young passes.
gc_full_every = _number("WEB_GC_FULL_EVERY", "100", minimum=1)


def url_conf_load() -> None:
    """Import every module the URL configuration names (the views and what they import), as Django's first
    resolve of a URL would. Done in each worker before it answers anyone: otherwise a process's first request
    paid for it (in one process 0.5 s for the first request without it, 0.1 s with it; README "Serving"). A
    URL configuration that cannot be imported stops the worker here."""
    from django.urls import get_resolver

    resolver = get_resolver()
    resolver.check()  # walks every pattern, importing each included URL module and its views
    resolver.reverse_dict  # noqa: B018  # builds the names' table that reverse() and {% url %} read


def post_worker_init(worker) -> None:
    if gil_switch_interval_s > 0:
        sys.setswitchinterval(gil_switch_interval_s)
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, gc_full_every)
    url_conf_load()
    # torch imported and the model's loader thread started before this worker answers anyone: started by the
    # first recommendation request instead, that request paid for the import (1.0-1.7 s behind gunicorn) and
    # the model began to load only then (README "Serving")
    from shop.recs.serving import serving_start

    serving_start()
    # the application is loaded (Django's apps, URLs, views, torch): long-lived objects the cyclic collector
    # need not scan again; the serving thread freezes again after each model load (serving.heap_freeze)
    from django.conf import settings

    if settings.RECS_GC_FREEZE:
        gc.collect()
        gc.freeze()


def when_ready(server) -> None:
    if reuse_port:  # the master binds nothing then, and gunicorn's own line says "Listening at:  (pid)"
        server.log.info("Listening at: %s (each worker on its own socket)", ", ".join(server.cfg.bind))


def on_starting(server) -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

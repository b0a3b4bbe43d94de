"""Live recommendations under load: ``GET /api/recommendations`` with a live re-rank of stage 1's candidates.

    .venv/bin/python -m benchmarks.recs [--events 1000000] [--clients 100] [--duration 15] [--products 5000]

Starts a throwaway PostgreSQL, migrates, seeds the catalog, writes a synthetic interaction log with
``COPY`` (``--events`` rows from ``events / 50`` visitors), trains a small DLRM on the first
``--train-events`` of them (the model is not what is measured), exports the whole log as the serving
snapshot, and serves with gunicorn (the web processes load the model in their background thread and
swap it in). Then, with ``wrk`` as the load generator on the same machine, ``--clients`` concurrent
clients request, in the same run:

- ``live``: ``/api/recommendations?placement=home.recommended`` for random active visitors, each with its
  own signed visitor cookie (anonymous shoppers, as a browser asks): this visitor's cart and events since
  the snapshot read from PostgreSQL (one round trip), stage 1's candidates (``RECS_LIVE_CANDIDATES``) re-ranked
  by the DLRM, rules, products loaded;
- ``popularity``: ``placement=home.trending`` on the same endpoint (the popularity list, no model);
- ``plain JSON``: ``/api/categories`` (the floor: DRF without authentication, the category tree's stamp from
  the cache, the list serialised once per tree and rendered; no database statement). It used to serialise
  its 176 categories on every request, about 5 ms of CPU against the 1.1-1.8 ms it costs now, so the
  ``x plain`` ratios of runs before that change compare the live request with a heavier floor.

Each is run paced (each client waits an exponential think time of mean 1/``--rate`` s, at most half a
second under the server's keep-alive, before every request, its first included: the clients arrive over
the first seconds) and closed loop. History: every paced run once showed a client-side p99 of 4.5-5 s,
plain JSON included, while the server's own p99 stayed under 60 ms: wrk opens its 100 connections at once
and each sat idle for a think time before its first request, and gunicorn's gthread worker gives a new
connection a thread that waits up to 5 s for its first bytes (8 threads in all), so the requests of the
other connections queued behind idle ones. The benchmark then sent every first request at once, a burst
of 100 requests that set the paced server-side p99 by itself (about a tenth of a run's requests, each
several times its usual time). The server now hands an idle new connection to its poller after
WEB_FIRST_BYTES_WAIT_MS (``shop/ops/gunicorn_conf.py``), so the clients arrive as shoppers do. A think
time past the keep-alive made the server close the connection and wrk reconnect at once, then wait on the
new one: hence the cap. Reported: client-side p50/p99 (wrk, corrected for coordinated omission), server-side p50/p99 of
each request (gunicorn's access log, %(D)s) and of the recommendation service (its own timer, per
request, from the serving counters), the serving mix
(live / fallback and why), and server CPU (gunicorn + PostgreSQL) per request, with the ratios to the
baselines. JSON under ``var/bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from rich.table import Table

from . import harness
from .harness import BENCH_DIR, CpuMeter, Stack, console, events_copy

TARGET_P99_MS = 15.0
EVENTS_PER_VISITOR = 50
SNAPSHOT_REUSE_MAX_NEW = 1000  # events written since a kept snapshot that still let a run reuse it
TRAIN_CONFIG = {
    "data": {"negatives_ratio": 2},
    "model": {"embedding_dim": 16, "dense_arch": [32, 16], "over_arch": [32, 1]},
    "train": {"epochs": 1, "batch_size": 2048, "threads": 2, "device": "cpu"},
}


# --------------------------------------------------------------------------- load


WRK_SCRIPT = r"""
local paths = __PATHS__
local cookies = __COOKIES__
local think_ms = __THINK_MS__
local out_path = "__OUT__"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  math.randomseed(__SEED__ + tid * 7919)
end
function request()
  local i = math.random(#paths)
  return wrk.format("GET", paths[i], {["Cookie"] = cookies[1 + (i - 1) % #cookies], ["Accept"] = "application/json"})
end
__DELAY__
function done(summary, latency, requests)
  local f = assert(io.open(out_path, "w"))
  local e = summary.errors
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, ' ..
    '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "max_us": %d}',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  f:close()
end
"""
WRK_DELAY = r"""
local cap_ms = __THINK_CAP_MS__
function delay()
  -- wrk calls delay() before each connection's first request too: the clients arrive over the first
  -- think time, as shoppers do, instead of all at one moment (an idle new connection goes to gunicorn's
  -- poller after WEB_FIRST_BYTES_WAIT_MS instead of holding a thread: shop/ops/gunicorn_conf.py).
  -- Exponential think time, at most cap_ms: past the server's keep-alive the server closes the idle
  -- connection and wrk reconnects at once and then waits on the new one (a browser would open its next
  -- connection only when it sends)
  local d = -math.log(1 - math.random()) * think_ms
  if d > cap_ms then d = cap_ms end
  return math.floor(d)
end
"""


def think_cap_ms() -> float:
    """The longest think time of a paced client: half a second under the server's keep-alive."""
    return max(100.0, 1000.0 * float(os.environ.get("WEB_KEEPALIVE_S", "5")) - 500.0)


def run_wrk(*, base_url: str, paths: list[str], cookies: list[str], clients: int, duration_s: int, think_ms: float,
            seed: int, tmp: Path) -> dict[str, Any]:  # fmt: skip
    out = tmp / f"wrk-{time.monotonic_ns()}.json"
    # few wrk threads (each drives clients / threads connections): wrk shares the 2 cores with the server
    threads = max(1, min(4, clients))
    script = (
        WRK_SCRIPT.replace("__PATHS__", "{" + ",".join(json.dumps(p) for p in paths) + "}")
        .replace("__COOKIES__", "{" + ",".join(json.dumps(c) for c in cookies) + "}")
        .replace("__THINK_MS__", f"{think_ms:.3f}")
        .replace("__OUT__", str(out))
        .replace("__SEED__", str(seed))
        .replace("__DELAY__", WRK_DELAY if think_ms > 0 else "")
        .replace("__THINK_CAP_MS__", f"{think_cap_ms():.0f}")
    )
    lua = tmp / f"wrk-{time.monotonic_ns()}.lua"
    lua.write_text(script)
    argv = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration_s}s", "--timeout", "10s", "-s", str(lua),
            base_url]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(out.read_text())
    wall = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / wall, 1) if wall else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p90_ms": round(raw["p90_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "max_ms": round(raw["max_us"] / 1000, 3),
        "errors": raw["errors"],
        "non_2xx": raw["status_errors"],
    }


def _get_json(url: str, cookie: str) -> dict:
    req = urllib.request.Request(url, headers={"Cookie": cookie, "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # nosec B310  # http URL of the server this benchmark started
        return json.loads(r.read())


def wait_serving(base_url: str, cookie: str, *, snapshot: str, timeout_s: float, workers: int) -> float:
    """Until ``workers`` distinct web processes have answered that they serve ``snapshot``, and the last 10
    answers (any process) all did: a process still loading would answer the first run's requests with
    fallbacks (``model_loading``)."""
    t0 = time.perf_counter()
    streak = 0
    ready: set[int] = set()
    with console.status(f"Waiting for the web processes to load the model on {snapshot}..."):
        while time.perf_counter() - t0 < timeout_s:
            # a recommendation request starts the loader thread of the process that answers it (once each)
            try:
                _get_json(f"{base_url}/api/recommendations?placement=home.trending&k=1", cookie)
                # two asks: a proxy that alternates between processes would send every second request to one
                procs = [_get_json(f"{base_url}/api/recs/serving-stats?minutes=1", cookie)["process"] for _ in range(2)]
            except (TimeoutError, OSError):  # a process busy loading a large snapshot may answer late
                streak = 0
                continue
            for proc in procs:
                if proc["snapshot"] == snapshot:
                    streak += 1
                    ready.add(proc["pid"])
                else:
                    streak = 0
            if streak >= 10 and len(ready) >= workers:
                return time.perf_counter() - t0
            time.sleep(0.3)
    raise RuntimeError(f"the web processes did not load {snapshot} within {timeout_s:.0f}s")


def staff_cookie() -> str:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recs", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="logged events (default 1,000,000)")
    p.add_argument("--train-events", type=int, default=200_000, help="events the model is trained on")
    p.add_argument("--products", type=int, default=5000)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument(
        "--rate", type=float, default=0.5,
        help="requests per second per client in the paced runs (0.5: 50/s from 100 clients, what a busy 2-core box carries)",
    )  # fmt: skip
    p.add_argument("--duration", type=int, default=15, help="seconds per run")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument(
        "--server", choices=harness.WEB_SERVERS, default="gunicorn",
        help="web server: gunicorn (deployed), granian (the same application and process/thread counts) or "
        "nginx (least_conn in front of --workers gunicorns of one process each)",
    )  # fmt: skip
    p.add_argument(
        "--candidates", type=int, default=None,
        help="RECS_LIVE_CANDIDATES of the web processes: stage-1 candidates the DLRM re-ranks per live request "
        "(default: the deployed setting)",
    )  # fmt: skip
    p.add_argument(
        "--serving-threads", type=int, default=None,
        help="RECS_SERVING_THREADS of the web processes (default: the deployed setting; 0: each request scores "
        "on its own thread)",
    )  # fmt: skip
    p.add_argument(
        "--endpoints", default="live,popularity,plain JSON",
        help="which endpoints to measure, comma-separated (live, popularity, plain JSON)",
    )  # fmt: skip
    p.add_argument("--modes", default="paced,closed loop", help="paced, closed loop, or both (comma-separated)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--database-url", default=None, help="a loopback PostgreSQL to use (and reuse) instead of a throwaway one"
    )
    p.add_argument(
        "--work-dir", type=Path, default=None,
        help="keep models and snapshots here: a later run on the same --database-url reuses the model, the log "
        "and (when no event came since) the snapshot",
    )  # fmt: skip
    p.add_argument(
        "--prepare-only", action="store_true",
        help="write the log, train and export the snapshot (kept with --database-url and --work-dir), then stop: "
        "a later run measures without doing it again",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.endpoints = _choice(p, "--endpoints", args.endpoints, ("live", "popularity", "plain JSON"))
    args.modes = _choice(p, "--modes", args.modes, ("paced", "closed loop"))
    if args.serving_threads is not None and args.serving_threads < 0:
        p.error(f"--serving-threads must be 0 or more, got {args.serving_threads}")
    return args


def _choice(p: argparse.ArgumentParser, flag: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    picked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in picked if v not in allowed]
    if unknown or not picked:
        p.error(f"{flag}: {', '.join(unknown) or 'nothing given'} not one of {', '.join(allowed)}")
    return picked


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (scripts/system-deps.sh installs it)")
    out_path = (
        args.out
        or BENCH_DIR / f"recs-{args.events // 1_000_000 or args.events}{'M' if args.events >= 1_000_000 else ''}.json"
    )
    if args.prepare_only and (args.work_dir is None or args.database_url is None):
        raise SystemExit("--prepare-only keeps what it prepares: give --database-url and --work-dir")
    keep = args.work_dir is not None
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="shop-bench-recs-"))
    work.mkdir(parents=True, exist_ok=True)
    access_log = work / f"access-{time.monotonic_ns()}.log"
    env = {
        "MODEL_DIR": str(work / "models"),
        "SNAPSHOT_DIR": str(work / "snapshots"),
        "RECS_TRAIN_CONFIG": json.dumps(TRAIN_CONFIG),
        "RECS_SERVING_POLL_S": "1",
        "RECS_STATS_FLUSH_S": "1",
        "CELERY_BROKER_URL": "memory://localhost/",
        "EXPERIMENTS_CACHE_TTL_S": "60",
        "OMP_NUM_THREADS": "1",
        # every client comes from 127.0.0.1: the throttles stay on (their cost is measured), far above the load
        "RECS_THROTTLE_RATE": harness.BENCH_THROTTLE_RATE,
        "RECS_IP_THROTTLE_RATE": harness.BENCH_THROTTLE_RATE,
        # the server's own duration of each request (gunicorn's %(D)s: from the parsed request to the last
        # byte written; the deployed configuration logs every request to stdout, this to a file instead)
        "GUNICORN_CMD_ARGS": f"--access-logfile {access_log} --access-logformat '%(U)s %(s)s %(D)s %(p)s'",
    }
    if args.serving_threads is not None:
        env["RECS_SERVING_THREADS"] = str(args.serving_threads)
    if args.candidates is not None:
        env["RECS_LIVE_CANDIDATES"] = str(args.candidates)
    visitors = max(1, args.events // EVENTS_PER_VISITOR)
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": harness.machine_info()}
    try:
        with Stack(database_url=args.database_url, products=args.products, seed=args.seed, workers=args.workers,
                   threads=args.threads, extra_env=env, server=args.server,
                   access_log=access_log if args.server != "gunicorn" else None) as stack:  # fmt: skip
            from django.db import connection

            from shop.events.middleware import visitor_cookie_value
            from shop.experiments.models import Experiment
            from shop.recs import execution, export, runs
            from shop.recs.models import ModelVersion, TaskRun

            # no experiment: every request is the full pipeline (arms are measured by the experiment itself)
            Experiment.objects.update(status=Experiment.Status.STOPPED)
            t = time.perf_counter()
            active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
            if active and (work / "models" / "versions" / active).exists():
                console.print(f"Reusing model {active} from {work}")
            else:
                events_copy(upto=min(args.train_events, args.events), seed=args.seed, total_visitors=visitors)
                with console.status("Training a small DLRM on the first events (not what is measured)..."):
                    run = runs.task_run_start(kind=TaskRun.Kind.RETRAIN, enqueue=False)
                    execution.task_run_execute(run_id=run.id)
                run.refresh_from_db()
                if run.state != "succeeded":
                    raise RuntimeError(f"training failed: {run.error}")
                if not ModelVersion.objects.filter(is_active=True).exists():
                    # the holdout gate refused it (a small log): serving speed is measured here, not quality
                    from shop.recs.promotion import model_version_promote

                    version = ModelVersion.objects.order_by("-created_at").values_list("version", flat=True).first()
                    model_version_promote(version=version, by="benchmark")
                    console.print(f"The gate refused {version}; promoted for the benchmark (speed, not quality)")
            result["training_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            events_copy(upto=args.events, seed=args.seed, total_visitors=visitors)
            result["copy_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            with connection.cursor() as cur:
                cur.execute("SELECT count(*), coalesce(max(id), 0) FROM events_event")
                n_events, max_id = cur.fetchone()
            latest = export.snapshot_latest()
            since = max_id - int(export.snapshot_manifest(latest)["max_event_id"]) if latest is not None else None
            # each start of the stack writes a few events (the readiness probe's home page records its rails'
            # impressions): a snapshot that lacks only those is reused, and they are read as fresh events
            if since is not None and 0 <= since <= SNAPSHOT_REUSE_MAX_NEW:
                snap = {"snapshot": latest.name, "events": n_events, "seconds": 0.0}
                console.print(f"Reusing snapshot {latest.name} ({n_events:,} events, {since:,} since)")
            else:
                with console.status(f"Exporting {n_events:,} events as the serving snapshot..."):
                    snap = export.training_data_export()
            result["export_s"] = round(time.perf_counter() - t, 1)
            result["events_logged"] = n_events
            console.print(f"Snapshot {snap['snapshot']}: {snap['events']:,} events in {snap['seconds']:.1f}s")
            if args.prepare_only:
                console.print("Prepared (--prepare-only): nothing measured.")
                return 0

            cookie = staff_cookie()
            base = stack.web.base_url
            result["model_load_wait_s"] = round(
                wait_serving(base, cookie, snapshot=snap["snapshot"], timeout_s=900, workers=args.workers), 1
            )
            rng = np.random.default_rng(args.seed)
            picks = rng.choice(visitors, size=min(2000, visitors), replace=False) + 1
            # shoppers: each path goes with that visitor's own signed cookie (anonymous, as a browser asks)
            shoppers = [f"vid={visitor_cookie_value(uuid.UUID(int=int(v)))}" for v in picks]
            runs_spec = {
                "live": ["/api/recommendations?placement=home.recommended&k=8"] * len(picks),
                "popularity": ["/api/recommendations?placement=home.trending&k=8"] * len(picks),
                "plain JSON": ["/api/categories"],
            }
            placements = {"live": "home.recommended", "popularity": "home.trending"}
            for c in shoppers[:20]:  # warm up each worker's first requests (imports, caches)
                _get_json(base + runs_spec["live"][0], c)
            pids = {
                "gunicorn": stack.web.pid,
                "postgres": stack.postgres.postmaster_pid if stack.postgres else _postmaster_pid(),
            }
            rows = []
            modes = {"paced": 1000.0 / args.rate, "closed loop": 0.0}
            for mode, think_ms in ((m, t) for m, t in modes.items() if m in args.modes):
                for name, paths in ((n, p) for n, p in runs_spec.items() if n in args.endpoints):
                    time.sleep(2.5)  # counters of the previous run flushed
                    mark = harness.serving_mark()
                    log_from = access_log.stat().st_size if access_log.exists() else 0
                    meter = CpuMeter(pids=pids).start()
                    console.print(f"[bold]{mode}[/] {name}: {args.clients} clients, {args.duration}s")
                    w = run_wrk(base_url=base, paths=paths, cookies=shoppers, clients=args.clients,
                                duration_s=args.duration, think_ms=think_ms, seed=args.seed, tmp=work)  # fmt: skip
                    cpu = meter.stop()
                    time.sleep(2.5)
                    server = (
                        harness.serving_mix(after_id=mark, placement=placements[name]) if name in placements else None
                    )
                    used = cpu["cpu_seconds"]
                    server_cpu = used.get("gunicorn", 0.0) + used.get("postgres", 0.0)
                    waits = cpu.get("run_queue_wait_s", {})
                    server_wait = waits.get("gunicorn", 0.0) + waits.get("postgres", 0.0)
                    rows.append({
                        "mode": mode, "endpoint": name, **w,
                        "server_cpu_ms_per_request": round(1000 * server_cpu / w["requests"], 3) if w["requests"] else None,
                        # seconds the server's threads (gunicorn, PostgreSQL) were runnable but waited for a core
                        "run_queue_wait_ms_per_request": round(1000 * server_wait / w["requests"], 3) if w["requests"] else None,
                        "request_ms": request_durations(access_log, start=log_from, path=paths[0].split("?")[0]),
                        "cpu": cpu, "server": server,
                    })  # fmt: skip
            result["runs"] = rows
            result["settings"] = stack.settings_used() if hasattr(stack, "settings_used") else {}
            from django.conf import settings as web_settings  # the web processes' own, unless overridden above

            result["recs_serving_threads"] = int(env.get("RECS_SERVING_THREADS", web_settings.RECS_SERVING_THREADS))
            result["recs_live_candidates"] = int(env.get("RECS_LIVE_CANDIDATES", web_settings.RECS_LIVE_CANDIDATES))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    report(result, args)
    harness.write_json(out_path, result)
    console.print(f"JSON: {out_path}")
    return 0


def _postmaster_pid() -> int | None:
    """The PostgreSQL server's pid when it runs on this machine (a given --database-url)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    try:
        return psutil.Process(backend).ppid()
    except psutil.Error:
        return None


def request_durations(log: Path, *, start: int, path: str) -> dict[str, Any]:
    """p50/p99/mean of the server's own request durations (gunicorn access log, microseconds) for ``path``
    from byte ``start`` of the log: from the parsed request to its last byte written, as the server sees
    it (the time a request waits in the listen queue before a thread reads it is not in it)."""
    durations: list[float] = []
    codes: dict[str, int] = {}
    per_process: Counter[str] = Counter()
    if log.exists():
        with log.open("rb") as f:
            f.seek(start)
            for line in f.read().decode(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[0] == path:  # path, status, duration, "<pid>" that answered
                    codes[parts[1]] = codes.get(parts[1], 0) + 1
                    # gunicorn's %(D)s: microseconds; granian's dt_ms: milliseconds, "ms" suffixed (harness.Granian)
                    # nginx's request_time: seconds, "s" suffixed (harness.NginxGunicorn)
                    if parts[2].endswith("ms"):
                        durations.append(float(parts[2][:-2]) / 1e3)
                    elif parts[2].endswith("s"):
                        durations.append(float(parts[2][:-1]))
                    else:
                        durations.append(int(parts[2]) / 1e6)
                    per_process[parts[3].strip("<>")] += 1
    out = {"requests": len(durations), "status": codes, **harness.latency_summary_ms(durations)}
    if per_process:
        # how evenly the web processes shared the requests: each process is one core's worth of Python at most
        out["per_process"] = dict(per_process.most_common())
        out["busiest_process_share"] = round(max(per_process.values()) / sum(per_process.values()), 3)
    return out


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(
        title=f"/api/recommendations, {args.clients} clients (paced: {args.rate:g} req/s each), "
        f"{result.get('events_logged', args.events):,} logged events, {result.get('recs_live_candidates', '?')} candidates "
        f"(target: live p99 <= {TARGET_P99_MS:.0f} ms server side); scoring threads per process: "
        f"{result.get('recs_serving_threads', '?')} (0: on the request's thread)"
    )
    cols = ("mode", "endpoint", "req/s", "p50", "p99", "srv p50", "srv p99", "svc p99", "CPU ms/req", "x plain",
            "wait ms/req", "other CPU")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("mode", "endpoint") else "right")
    by = {(r["mode"], r["endpoint"]): r for r in result["runs"]}
    notes = []
    for r in result["runs"]:
        plain = by.get((r["mode"], "plain JSON"))
        cpu, base = r["server_cpu_ms_per_request"], plain["server_cpu_ms_per_request"] if plain else None
        x = harness.ratio(cpu or 0, base or 0) if base else None
        s = r["server"] or {}
        req = r.get("request_ms") or {}
        table.add_row(
            r["mode"], r["endpoint"], f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{req.get('p50_ms', 0):.1f}", f"{req.get('p99_ms', 0):.1f}",
            f"<={s['p99_ms_bucket']}" if s else "", f"{cpu:.2f}", "" if x is None else f"{x:.2f}",
            f"{r['run_queue_wait_ms_per_request']:.1f}", f"{r['cpu']['share_of_machine'].get('other', 0):.0%}",
        )  # fmt: skip
        if s:
            notes.append(
                f"{r['mode']} {r['endpoint']}: served {s['by_source']}, fallback reasons {s['reasons']}, "
                f"errors {r['errors']} non-2xx {r['non_2xx']}; status {req.get('status')}; "
                f"mean ms per stage {s['stage_ms_mean']}"
            )
    console.print(table)
    cis = [
        f"{r['mode']} {r['endpoint']} {harness.ci_text(r['request_ms']['p99_ci_ms'])}"
        for r in result["runs"]
        if (r.get("request_ms") or {}).get("p99_ci_ms")
    ]
    if cis:
        console.print("srv p99, 95% CI (order statistics): " + ", ".join(cis))
    for n in notes:
        console.print(n)
    shares = [
        f"{r['mode']} {r['endpoint']} {r['request_ms']['busiest_process_share']:.0%}"
        for r in result["runs"]
        if (r.get("request_ms") or {}).get("busiest_process_share") is not None
    ]
    if shares:
        settings = result.get("settings", {}).get("gunicorn", {})
        console.print(
            f"Requests answered by the busiest of {settings.get('workers', '?')} web processes "
            f"(reuse_port {settings.get('reuse_port')}): " + ", ".join(shares)
        )
    server = result.get("settings", {}).get("web_server", "gunicorn")
    measured = {
        "gunicorn": "gunicorn access log: parsed request to last byte written",
        "granian": "granian access log: the application called to the response handed back, after granian parsed it",
        "nginx": "nginx access log: first byte of the request read to last byte sent, the wait for a free "
        "process included; millisecond resolution",
    }.get(server, server)
    console.print(
        f"Web server: {server}. "
        "ms throughout. p50/p99: client side (wrk, corrected for coordinated omission), including the listen "
        "queue and wrk itself on the same cores. srv p50/p99: the server's own duration of each request "
        f"({measured}; middleware, DRF, the service and the "
        "response); its 95% CI from the order statistics, below the table (a p99 of 800 requests is about the 8th largest, "
        "so a run's p99 moves within this interval by chance alone; '>' when it reaches past the largest). svc p99: the recommendation service's own timer (upper bound of its latency bucket). "
        "CPU ms/req: web server (the 'gunicorn' of the JSON) + PostgreSQL CPU per request; x plain: that over the plain JSON endpoint's in "
        "the same mode. wait ms/req: the time the server's threads (gunicorn, PostgreSQL) were ready to run but "
        "waited for a core, per request (schedstat run delay: queueing behind other threads and processes, not "
        "work). other CPU: the share of the machine (all cores) used by every process but gunicorn and PostgreSQL "
        "(wrk and this process included)."
    )


if __name__ == "__main__":
    sys.exit(main())

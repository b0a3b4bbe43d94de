"""What both benchmarks share: a throwaway PostgreSQL, a migrated and seeded database, gunicorn on a
loopback port, CPU accounting per process tree, machine facts, console charts and the JSON file.

Everything started here is stopped by :class:`Stack` on the way out (``finally``, ``atexit`` and
SIGTERM/SIGHUP), killing whole process groups, so an interrupted benchmark leaves nothing running.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parent.parent
PG_CTL = ROOT / "scripts" / "pg_ctl"
BENCH_DIR = ROOT / "var" / "bench"
LOOPBACK = "127.0.0.1"
DEFAULT_PRODUCTS = 5000
# The deployed gunicorn settings (worker class, workers, threads, keep-alive, backlog): the benchmark
# serves with the very file the Procfile and the images use; flags given here override it.
GUNICORN_CONFIG = "python:shop.ops.gunicorn_conf"
WEB_SERVERS = ("gunicorn", "granian", "nginx")
# Far above anything a benchmark can post, so ingest is measured, not the throttle. DRF keeps one
# timestamp per request in the window, so a per-second window also keeps that history short.
BENCH_THROTTLE_RATE = "1000000/s"

# Wide enough for the tables when the output goes to a file or a CI log (rich assumes 80 there).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A free TCP port on the loopback interface (bound to 127.0.0.1 only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0,1"`` or ``"0-3"`` -> {0, 1} / {0, 1, 2, 3}; None when not given."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def pinned(cpus: set[int] | None, *, die_with_parent: bool = False):
    """A ``preexec_fn`` that pins a child (and everything it starts) to ``cpus`` and, with
    ``die_with_parent``, has the kernel SIGTERM it if this process dies without cleaning up."""
    if not cpus and not die_with_parent:
        return None

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if die_with_parent and sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def percentile_ci(sorted_values: Sequence[float], p: float, *, confidence: float = 0.95) -> tuple[float, float | None]:
    """A distribution-free confidence interval for the ``p``-th percentile of what ``sorted_values`` sample:
    the order statistics whose ranks the binomial distribution of "samples below the true percentile" puts
    at (1 - confidence) / 2 and (1 + confidence) / 2. The upper bound is None when it lies beyond the
    largest sample (too few samples to bound it). A p99 from 800 requests is about the 8th largest; this says
    how far the next run's may move (roughly from the 14th largest to the 3rd) before a change is read."""
    from scipy.stats import binom

    n = len(sorted_values)
    if n == 0:
        raise ValueError("no samples")
    tail = (1 - confidence) / 2
    low = max(1, int(binom.ppf(tail, n, p / 100)))
    high = int(binom.ppf(1 - tail, n, p / 100)) + 1
    return float(sorted_values[low - 1]), (float(sorted_values[high - 1]) if high <= n else None)


def latency_summary_ms(latencies_s: Iterable[float]) -> dict[str, Any]:
    values = sorted(v * 1000 for v in latencies_s)
    if not values:
        return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0, "min_ms": 0.0}
    p99_low, p99_high = percentile_ci(values, 99)
    return {
        "min_ms": round(values[0], 3),
        "p50_ms": round(percentile(values, 50), 3),
        "p90_ms": round(percentile(values, 90), 3),
        "p99_ms": round(percentile(values, 99), 3),
        # 95% interval of the p99 (order statistics); high None: beyond the largest sample
        "p99_ci_ms": [round(p99_low, 3), None if p99_high is None else round(p99_high, 3)],
        "max_ms": round(values[-1], 3),
        "mean_ms": round(sum(values) / len(values), 3),
    }


def ci_text(ci: Sequence[float | None] | None) -> str:
    """A ``[low, high]`` interval as table text; ``>low`` when its upper bound is past the largest sample."""
    if not ci:
        return ""
    low, high = ci
    return f">{low:.1f}" if high is None else f"{low:.1f}-{high:.1f}"


def ratio(ours: float, baseline: float) -> float | None:
    return round(ours / baseline, 3) if baseline else None


def add_common_arguments(parser: argparse.ArgumentParser, *, default_json: Path) -> None:
    parser.add_argument(
        "--database-url",
        help="use this PostgreSQL (postgres://...) instead of starting a throwaway one; it is migrated and, "
        "when it has no products, seeded. Must be on loopback.",
    )
    parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS, help="catalog size to seed (default 5000)")
    parser.add_argument("--seed", type=int, default=42, help="catalog and load generator seed")
    parser.add_argument(
        "--workers", type=int, default=None, help="gunicorn worker processes (default: the deployed configuration)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="gunicorn threads per worker (default: the deployed configuration)"
    )
    parser.add_argument(
        "--worker-class", default=None, help="gunicorn worker class (default: the deployed configuration)"
    )
    parser.add_argument(
        "--server",
        choices=WEB_SERVERS,
        default="gunicorn",
        help="the web server in front of shop.wsgi: gunicorn (deployed: shop/ops/gunicorn_conf.py), granian "
        "(a Rust HTTP server running the same WSGI application on as many processes and threads), to compare "
        "what the server itself costs a request, or nginx (in front of --workers gunicorns of one process each, "
        "each request sent to the process with the fewest in flight), to compare where requests queue",
    )
    parser.add_argument(
        "--server-cpus",
        type=parse_cpus,
        help="pin PostgreSQL and gunicorn to these CPUs (e.g. 0,1 to model a 2-core server on a bigger machine)",
    )
    parser.add_argument(
        "--client-cpus", type=parse_cpus, help="pin the load generator to these CPUs (e.g. 2,3); default: unpinned"
    )
    parser.add_argument("--json", type=Path, default=default_json, help=f"where to write the results ({default_json})")


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with the flag named when the common options contradict each other."""
    if args.server == "granian" and args.worker_class:
        parser.error(f"--worker-class is gunicorn's: {args.server} runs the application on --threads threads a process")


# --------------------------------------------------------------------------- machine facts


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def tool_version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


def machine_info() -> dict[str, Any]:
    import django
    import gunicorn

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "wrk": tool_version(["wrk", "-v"]) if shutil.which("wrk") else None,
    }


# --------------------------------------------------------------------------- CPU accounting


def tree_cpu_by_pid(pid: int | None, *, children: bool = True) -> dict[int, float]:
    """User + system CPU seconds used so far by a process and (``children``) its descendants, per live
    process. With ``children`` each process's figure includes the children it has waited for: a
    database backend closed by ``CONN_MAX_AGE`` or a replaced worker leaves the live list, and its CPU
    moves into its parent's (the postmaster's, gunicorn's) instead of vanishing, so the tree's sum never
    drops when one of its processes exits."""
    if pid is None:
        return {}
    try:
        root = psutil.Process(pid)
        procs = [root] + (root.children(recursive=True) if children else [])
    except psutil.Error:
        return {}
    out: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)
    return out


def _thread_run_delays(pid: int) -> float:
    """Seconds the threads of one process spent runnable but waiting for a core (schedstat field 2)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def tree_run_delay_by_pid(pid: int | None, *, children: bool = True) -> dict[int, float]:
    """Run-queue wait (seconds) so far of a process and (``children``) its live descendants: time
    their threads were ready to run while the cores were busy with something else. Empty where the
    kernel keeps no schedstats."""
    if pid is None:
        return {}
    try:
        root = psutil.Process(pid)
        procs = [root] + (root.children(recursive=True) if children else [])
    except psutil.Error:
        return {}
    return {proc.pid: _thread_run_delays(proc.pid) for proc in procs}


def cpu_pressure_total_s() -> float | None:
    """Pressure stall information: seconds during which at least one runnable task waited for a
    core, machine-wide, so far (``/proc/pressure/cpu``, Linux 4.20+); None where it is missing."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, every process)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _children_rusage_seconds() -> float:
    """CPU seconds of this process's finished (waited-for) children, e.g. a wrk run."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class CpuMeter:
    """CPU seconds used by named process trees between :meth:`start` and :meth:`stop`, and by
    everything else on the machine (``other``: other people's work competing for the cores).

    A process of a tree that exits in between is counted through its parent's waited-for children
    (:func:`tree_cpu_by_pid`): a database backend closed by ``CONN_MAX_AGE`` during a long run stays
    PostgreSQL's, not "other"; one that starts in between counts from zero. A child of this process
    that runs for the measured span only (wrk) is counted through its rusage once it is waited for.
    """

    pids: dict[str, int | None]
    # trees counted without their children (this process: gunicorn is its child)
    exclude_children: set[str] = field(default_factory=set)
    # name under which the CPU of children finished (and waited for) during the span is counted
    finished_children_as: str | None = None
    wall_s: float = 0.0
    _t0: float = 0.0
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    _busy0: float = 0.0
    _rusage0: float = 0.0
    _delay0: dict[str, dict[int, float]] = field(default_factory=dict)
    _pressure0: float | None = None
    used_s: dict[str, float] = field(default_factory=dict)
    run_queue_wait_s: dict[str, float] = field(default_factory=dict)
    cpu_pressure_s: float | None = None

    def _cpu(self, name: str, pid: int | None) -> dict[int, float]:
        return tree_cpu_by_pid(pid, children=name not in self.exclude_children)

    def _used(self, name: str, pid: int | None) -> float:
        # the tree's sum: a process that ended moved its whole CPU into its parent's figure, so its
        # share before the span cancels with its own figure at the start; one that started counts from zero
        before = sum(self._start.get(name, {}).values())
        return max(0.0, sum(self._cpu(name, pid).values()) - before)

    def start(self) -> CpuMeter:
        self._start = {name: self._cpu(name, pid) for name, pid in self.pids.items()}
        self._delay0 = {
            name: tree_run_delay_by_pid(pid, children=name not in self.exclude_children)
            for name, pid in self.pids.items()
        }
        self._pressure0 = cpu_pressure_total_s()
        self._busy0 = _busy_seconds()
        self._rusage0 = _children_rusage_seconds()
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> dict[str, Any]:
        self.wall_s = time.perf_counter() - self._t0
        self.used_s = {name: self._used(name, pid) for name, pid in self.pids.items()}
        if self.finished_children_as:
            self.used_s[self.finished_children_as] = self.used_s.get(self.finished_children_as, 0.0) + (
                _children_rusage_seconds() - self._rusage0
            )
        busy = _busy_seconds() - self._busy0
        self.used_s["other"] = max(0.0, busy - sum(self.used_s.values()))
        for name, pid in self.pids.items():
            before = self._delay0.get(name, {})
            now = tree_run_delay_by_pid(pid, children=name not in self.exclude_children)
            self.run_queue_wait_s[name] = sum(max(0.0, d - before.get(p, 0.0)) for p, d in now.items())
        pressure = cpu_pressure_total_s()
        if pressure is not None and self._pressure0 is not None:
            self.cpu_pressure_s = pressure - self._pressure0
        return self.report()

    def report(self) -> dict[str, Any]:
        cores = os.cpu_count() or 1
        capacity = max(self.wall_s * cores, 1e-9)
        return {
            "wall_s": round(self.wall_s, 3),
            "cores": cores,
            "cpu_seconds": {k: round(v, 3) for k, v in self.used_s.items()},
            # share of the whole machine (all cores x wall time) each used; "other" = everything else
            "share_of_machine": {k: round(v / capacity, 4) for k, v in self.used_s.items()},
            "load_average_1m": round(os.getloadavg()[0], 2),
            # time the named trees' threads were ready but waited for a core (not work: queueing
            # behind other threads and processes), and the share of the span during which any task
            # on the machine waited so (PSI "some")
            "run_queue_wait_s": {k: round(v, 3) for k, v in self.run_queue_wait_s.items()},
            "cpu_pressure_share": (
                round(self.cpu_pressure_s / max(self.wall_s, 1e-9), 4) if self.cpu_pressure_s is not None else None
            ),
        }


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port (durable defaults: fsync on).

    Runs through ``scripts/pg_ctl``, which as root hands the data directory to the ``postgres``
    user (PostgreSQL refuses to run as root), as the tests do.
    """

    def __init__(self, *, dbname: str = "shop", cpus: set[int] | None = None) -> None:
        self.dbname = dbname
        self.cpus = cpus
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="shop-bench-pg-"))
        self.datadir = self.tmp / "data"
        self.logfile = self.tmp / "postgres.log"
        self.started = False

    @property
    def url(self) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{self.dbname}"

    def _pg_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        env.pop("PGDATA", None)
        return subprocess.run(
            [str(PG_CTL), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            preexec_fn=pinned(self.cpus),  # the postmaster and its backends inherit the pinning
        )

    def start(self) -> Postgres:
        out = self._pg_ctl("initdb", "-D", str(self.datadir), "-o", "-U postgres -A trust -E UTF8 --locale=C.UTF-8")
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout}\n{out.stderr}")
        opts = (
            f"-p {self.port} -c listen_addresses={LOOPBACK} -c unix_socket_directories={self.tmp} "
            "-c max_connections=200 -c logging_collector=off"
        )
        out = self._pg_ctl("start", "-D", str(self.datadir), "-w", "-t", "60", "-l", str(self.logfile), "-o", opts)
        self.started = out.returncode == 0
        if not self.started:
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start:\n{out.stdout}\n{out.stderr}\n{log}")
        import psycopg

        with psycopg.connect(host=LOOPBACK, port=self.port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.dbname}"')
        return self

    @property
    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def stop(self) -> None:
        if self.started:
            self.started = False
            out = self._pg_ctl("stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30", timeout=60)
            if out.returncode != 0:
                pid = self.postmaster_pid
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                    time.sleep(1)
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_loopback_url(url: str) -> None:
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit(f"--database-url must point at a loopback host, not {host!r}")


def postgres_facts(database_url: str) -> dict[str, Any]:
    import psycopg

    facts: dict[str, Any] = {}
    with psycopg.connect(_psycopg_dsn(database_url), autocommit=True) as c:
        facts["version"] = c.execute("SHOW server_version").fetchone()[0]
        for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections", "wal_level"):
            facts[name] = c.execute(f"SHOW {name}").fetchone()[0]
    return facts


def _psycopg_dsn(database_url: str) -> str:
    return database_url.replace("postgres://", "postgresql://", 1)


# --------------------------------------------------------------------------- synthetic interaction log

EVENTS_PER_VISITOR = 50
COPY_CHUNK = 500_000
EVENT_TYPES = ("view", "impression", "click", "add_to_cart", "purchase")
EVENT_TYPE_P = (0.55, 0.25, 0.10, 0.07, 0.03)


def events_copy(*, upto: int, seed: int, total_visitors: int) -> int:
    """Grow ``events_event`` to ``upto`` rows with COPY (PostgreSQL; rows already there count, so a
    database can be reused), visitors first. Each visitor prefers a few products near its own point of
    a skewed catalogue; times over the last 90 days. Idempotency keys are ``bench:<n>``. Returns the
    rows written."""
    import numpy as np
    import psycopg
    from django.db import connection

    from shop.catalog.models import Product

    if connection.vendor != "postgresql":
        raise RuntimeError("generating an interaction log needs PostgreSQL")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM events_event")
        have = cur.fetchone()[0]
    if have >= upto:
        console.print(f"Interaction log already holds {have:,} events.")
        return 0
    products = np.array(sorted(Product.objects.filter(is_active=True).values_list("id", flat=True)))
    with connection.cursor() as cur:  # the visitors (ids 1..N as uuids), once
        cur.execute(
            "INSERT INTO events_visitor (id, attributes, created_at) "
            "SELECT lpad(to_hex(g), 32, '0')::uuid, '{}'::jsonb, now() - interval '91 days' "
            "FROM generate_series(1, %s) g ON CONFLICT DO NOTHING",
            [total_visitors],
        )
    rng = np.random.default_rng(seed + have)
    types = np.array(EVENT_TYPES)
    visitors = [f"{v:032x}" for v in range(1, total_visitors + 1)]
    s = connection.settings_dict
    dsn = dict(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], password=s["PASSWORD"] or None)
    now = time.time()
    with psycopg.connect(**dsn) as conn, conn.cursor() as cur:
        with Progress(
            TextColumn("[bold]COPY interaction log"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("events", total=upto, completed=have)
            lo = have
            while lo < upto:
                n = min(COPY_CHUNK, upto - lo)
                vis = rng.integers(0, total_visitors, n)
                # a visitor's taste: products near its own point of the catalogue, plus skewed popular ones
                home = (vis * 7919) % len(products)
                near = (home + rng.integers(-20, 21, n)) % len(products)
                popular = np.minimum((rng.power(0.3, n) * len(products)).astype(np.int64), len(products) - 1)
                pid = products[np.where(rng.random(n) < 0.7, near, popular)]
                kind = types[rng.choice(len(types), n, p=EVENT_TYPE_P)]
                ts = now - rng.random(n) * 90 * 86400
                when = [time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t)) for t in ts]
                with cur.copy(
                    "COPY events_event (idempotency_key, visitor_id, product_id, type, placement, quantity, source,"
                    " device, occurred_at, received_at) FROM STDIN"
                ) as cp:
                    cp.write(
                        "".join(
                            f"bench:{lo + i}\t{visitors[vis[i]]}\t{pid[i]}\t{kind[i]}\t\t1\timport\tdesktop"
                            f"\t{when[i]}\t{when[i]}\n"
                            for i in range(n)
                        )
                    )
                conn.commit()
                lo += n
                progress.update(task, completed=lo)
        cur.execute("ANALYZE events_event")
        conn.commit()
    console.print(f"Interaction log: {upto:,} events from {total_visitors:,} visitors.")
    return upto - have


def events_generate(total: int, *, seed: int) -> int:
    """Grow the interaction log to ``total`` synthetic rows (:func:`events_copy`, one visitor per
    ``EVENTS_PER_VISITOR`` events)."""
    return events_copy(upto=total, seed=seed, total_visitors=max(1, total // EVENTS_PER_VISITOR))


# --------------------------------------------------------------------------- gunicorn


def deployed_gunicorn_settings(env: dict[str, str]) -> dict[str, Any]:
    """Worker class, workers, threads, keep-alive and interpreter switch interval (None: Python's
    default) of the deployed gunicorn configuration, as it reads them from ``env``."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, shop.ops.gunicorn_conf as c; print(json.dumps({'workers': c.workers, "
            "'threads': c.threads, 'worker_class': getattr(c, 'worker_class', 'sync'), "
            "'keepalive': getattr(c, 'keepalive', 2), "
            "'gil_switch_ms': 1000 * getattr(c, 'gil_switch_interval_s', 0) or None, "
            "'reuse_port': bool(getattr(c, 'reuse_port', False))}))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _answers(url: str) -> bool:
    """Whether the server this harness started answers ``url`` with anything but a server error."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # nosec B310  # http URL of a server this harness started
            r.read()
        return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


class Gunicorn:
    """gunicorn serving ``shop.wsgi`` on a free loopback port, in its own process group."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        workers: int | None,
        threads: int | None,
        log_dir: Path,
        cpus: set[int] | None = None,
        worker_class: str | None = None,
    ) -> None:
        self.port = free_port()
        self.cpus = cpus
        self.env = env
        deployed = deployed_gunicorn_settings(env)
        self.workers = workers or deployed["workers"]
        self.threads = threads or deployed["threads"]
        self.worker_class = worker_class or deployed["worker_class"]
        self.keepalive = deployed["keepalive"]
        self.gil_switch_ms = deployed.get("gil_switch_ms")  # None: Python's default (5 ms)
        self.reuse_port = deployed.get("reuse_port")  # each worker on its own listening socket
        self.log = log_dir / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "shop.wsgi:application",
            "--config",
            GUNICORN_CONFIG,
            "--bind",
            f"{LOOPBACK}:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-class",
            self.worker_class,
            "--graceful-timeout",
            "5",
            "--no-control-socket",
            "--error-logfile",
            str(self.log),
        ]

    def _output(self) -> contextlib.AbstractContextManager:
        """(stdout, stderr) of the server process: gunicorn writes its own log (``--error-logfile``)."""
        return contextlib.nullcontext((subprocess.DEVNULL, subprocess.DEVNULL))

    def start(self, *, ready_path: str = "/", timeout: float = 60) -> Gunicorn:
        with self._output() as (stdout, stderr):
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group: one killpg stops master and workers
                preexec_fn=pinned(self.cpus, die_with_parent=True),
            )
        return self._wait_ready(ready_path=ready_path, timeout=timeout)

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def _wait_ready(self, *, ready_path: str, timeout: float) -> Gunicorn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if _answers(self.base_url + ready_path) and self._all_workers_up():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {ready_path} within {timeout:.0f} s:\n{self.log_tail()}")

    def _all_workers_up(self) -> bool:
        try:
            return len(psutil.Process(self.proc.pid).children()) >= self.workers
        except psutil.Error:
            return False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kill_group(self.proc, first=signal.SIGINT, grace=10)  # SIGINT: gunicorn's quick shutdown


class Granian(Gunicorn):
    """granian serving the same ``shop.wsgi`` with gunicorn's deployed process and thread counts (``--workers``
    processes, ``--blocking-threads`` threads each running the application), for comparison: its HTTP parsing,
    connection handling and keep-alive are Rust, off the interpreter. ``access_log``: one line per request,
    ``path status duration`` (milliseconds, ``ms`` suffixed) ``<pid>``, as gunicorn's is with the format
    benchmarks.recs gives it. gunicorn's configuration hooks (first-bytes wait, switch interval, heap freeze
    after start) do not apply; the application's own (serving thread, its heap freeze) do."""

    ACCESS_FORMAT = "%(path)s %(status)d %(dt_ms).3fms"

    def __init__(self, *, access_log: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log = self.log.with_name("granian.log")
        self.access_log = access_log
        self.reuse_port = False  # one listening socket, shared by the processes
        self.worker_class = "granian wsgi"
        self.keepalive = None  # granian's own keep-alive handling: no WEB_KEEPALIVE_S
        self.gil_switch_ms = None  # gunicorn_conf's WEB_GIL_SWITCH_MS does not apply

    @property
    def argv(self) -> list[str]:
        argv = [
            sys.executable, "-m", "granian", "--interface", "wsgi", "--host", LOOPBACK, "--port", str(self.port),
            "--workers", str(self.workers), "--blocking-threads", str(self.threads),
            "--http1-keep-alive", "--backlog", "2048", "--workers-kill-timeout", "5",
        ]  # fmt: skip
        if self.access_log is not None:  # the configuration file is written when the server starts (_output)
            argv += ["--log-config", str(self._log_config_path), "--access-log", "--access-log-fmt", self.ACCESS_FORMAT]
        return [*argv, "shop.wsgi:application"]

    @property
    def _log_config_path(self) -> Path:
        return self.log.with_name("granian-logging.json")

    @staticmethod
    def _log_config(access_log: Path) -> dict[str, Any]:
        # granian merges this over its own configuration by top-level key: its console formatter and handler
        # are restated; access lines go to the file, with the answering process's pid
        return {
            "formatters": {
                "generic": {"()": "logging.Formatter", "fmt": "[%(levelname)s] %(message)s"},
                "access": {"()": "logging.Formatter", "fmt": "%(message)s <%(process)d>"},
            },
            "handlers": {
                "console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
                "access": {"formatter": "access", "class": "logging.FileHandler", "filename": str(access_log)},
            },
        }

    @contextlib.contextmanager
    def _output(self):
        # granian has no log file setting: its output is the log
        if self.access_log is not None:
            self._log_config_path.write_text(json.dumps(self._log_config(self.access_log)))
        with self.log.open("ab") as out:
            yield out, subprocess.STDOUT


def _nginx_quoted(path: Path) -> str:
    """``path`` as one nginx configuration word (a working directory may hold spaces or quotes)."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class NginxGunicorn(Gunicorn):
    """nginx in front of ``--workers`` gunicorn servers of one process each (``--threads`` threads, the deployed
    configuration otherwise), for comparison. nginx keeps the clients' connections and sends each request to the
    process with the fewest requests in flight (``least_conn``) over kept-alive upstream connections: a burst of
    requests is spread over the processes instead of queueing in the one its connections were accepted by.
    ``access_log``: nginx's line per request, ``path status duration`` (seconds, ``s`` suffixed, millisecond
    resolution: from the request's first byte read to the response's last byte sent, the wait for a process
    included) ``<upstream address>``; the gunicorns' own lines go to ``access-upstream.log`` beside it."""

    def __init__(self, *, access_log: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.access_log = access_log
        self.upstream_ports = [free_port() for _ in range(self.workers)]
        self.conf = self.log.with_name("nginx.conf")
        self.reuse_port = False  # one process per gunicorn: nothing to spread
        self.upstream_worker_class = self.worker_class
        self.worker_class = f"{self.worker_class} behind nginx (least_conn)"
        if access_log is not None and "GUNICORN_CMD_ARGS" in self.env:  # gunicorn's own lines beside nginx's
            self.env = {
                **self.env,
                "GUNICORN_CMD_ARGS": self.env["GUNICORN_CMD_ARGS"].replace(
                    str(access_log), str(access_log.with_name("access-upstream.log"))
                ),
            }

    def _gunicorn_argv(self, port: int) -> list[str]:
        argv = super().argv
        argv[argv.index("--bind") + 1] = f"{LOOPBACK}:{port}"
        argv[argv.index("--workers") + 1] = "1"
        argv[argv.index("--error-logfile") + 1] = str(self.log.with_name(f"gunicorn-{port}.log"))
        argv[argv.index("--worker-class") + 1] = self.upstream_worker_class
        return argv

    @property
    def argv(self) -> list[str]:
        # one shell leads the group: its tree holds the gunicorns and nginx (the CPU meter counts the tree)
        lines = [" ".join(shlex.quote(a) for a in self._gunicorn_argv(p)) + " &" for p in self.upstream_ports]
        lines.append(f"{shlex.quote(shutil.which('nginx') or '/usr/sbin/nginx')} -c {shlex.quote(str(self.conf))} &")
        lines.append("wait")
        return ["sh", "-c", "\n".join(lines)]

    def _nginx_conf(self) -> str:
        tmp = self.log.parent
        access = f"access_log {_nginx_quoted(self.access_log)} bench;" if self.access_log else "access_log off;"
        servers = "\n".join(f"        server {LOOPBACK}:{p};" for p in self.upstream_ports)
        keepalive = self.keepalive if self.keepalive is not None else 5
        return f"""daemon off;
worker_processes 1;
pid {_nginx_quoted(tmp / "nginx.pid")};
error_log {_nginx_quoted(tmp / "nginx-error.log")} warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$uri $status ${{request_time}}s <$upstream_addr>';
    {access}
    client_body_temp_path {_nginx_quoted(tmp / "nginx-body")};
    proxy_temp_path {_nginx_quoted(tmp / "nginx-proxy")};
    fastcgi_temp_path {_nginx_quoted(tmp / "nginx-fastcgi")};
    uwsgi_temp_path {_nginx_quoted(tmp / "nginx-uwsgi")};
    scgi_temp_path {_nginx_quoted(tmp / "nginx-scgi")};
    keepalive_timeout {keepalive}s;
    upstream shop {{
        least_conn;
{servers}
        keepalive 64;
    }}
    server {{
        listen {LOOPBACK}:{self.port} backlog=2048;
        location / {{
            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffers 16 32k;
            proxy_max_temp_file_size 0;
            # bodies pass through as they arrive: nginx's workers may not write temporary files here, and the
            # application's own limit (413) is the one measured
            proxy_request_buffering off;
            client_max_body_size 0;
        }}
    }}
}}
"""

    def _output(self) -> contextlib.AbstractContextManager:
        self.conf.write_text(self._nginx_conf())  # written when the server starts, as granian's logging file
        return contextlib.nullcontext((subprocess.DEVNULL, subprocess.DEVNULL))

    def _all_workers_up(self) -> bool:
        return all(_answers(f"http://{LOOPBACK}:{port}/") for port in self.upstream_ports)

    def log_tail(self, chars: int = 3000) -> str:
        logs = [self.log.with_name(f"gunicorn-{p}.log") for p in self.upstream_ports]
        logs.append(self.log.with_name("nginx-error.log"))
        return "".join(f.read_text(errors="replace")[-chars:] for f in logs if f.exists())


def kill_group(proc: subprocess.Popen, *, first: int = signal.SIGTERM, grace: float = 5) -> None:
    """Signal the process group (``first``), then SIGKILL it if it is still there after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- a Celery worker


class CeleryWorker:
    """``celery -A worker worker -Q default,gpu`` (``--pool solo`` unless ``pool`` says otherwise) in its
    own process group: start, SIGKILL, restart. The reliability benchmark and the worker tests use it.

    Start ``n`` logs to ``<log_dir>/<name>-<n>.log`` under the node name ``<name><n>@<host>``.
    """

    def __init__(
        self, env: dict[str, str], log_dir: Path, *, pool: Sequence[str] = ("--pool", "solo"), name: str = "worker"
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.pool = tuple(pool)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self, timeout: float = 90.0) -> float:
        """Start it and wait for "ready."; returns the seconds that took."""
        import threading

        t0 = time.perf_counter()
        self.starts += 1
        # the kernel's parent-death signal fires when the *thread* that started the child exits: only
        # the main thread may ask for it (a worker restarted from a fault thread must outlive that thread)
        main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "-Q",
                    "default,gpu",
                    *self.pool,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-n",
                    f"{self.name}{self.starts}@%h",
                    "--loglevel",
                    "INFO",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pinned(None, die_with_parent=main),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{self.log()}")
            if b"ready." in self.log_path.read_bytes():
                return time.perf_counter() - t0
            time.sleep(0.1)
        raise RuntimeError(f"celery worker not ready within {timeout:.0f} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, nothing acknowledged or requeued by the worker itself."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Cold shutdown (SIGQUIT to the group: quick), SIGKILL if it is still there after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, first=signal.SIGQUIT, grace=15)

    def log(self, chars: int | None = None) -> str:
        """Every start's log, oldest first (the last ``chars`` of each when given)."""
        parts = []
        for n in range(1, self.starts + 1):
            path = self.log_dir / f"{self.name}-{n}.log"
            if path.exists():
                text = path.read_text(errors="replace")
                parts.append(text[-chars:] if chars else text)
        return "\n".join(parts)


# --------------------------------------------------------------------------- the whole stack


class Stack:
    """PostgreSQL (throwaway or given), migrated and seeded, Django set up in this process for
    reads (row counts, product URLs), and gunicorn in front. Use as a context manager."""

    def __init__(
        self,
        *,
        database_url: str | None,
        products: int,
        seed: int,
        workers: int | None,
        events: int = 0,
        threads: int | None,
        worker_class: str | None = None,
        extra_env: dict[str, str] | None = None,
        server_cpus: set[int] | None = None,
        client_cpus: set[int] | None = None,
        server: str = "gunicorn",
        access_log: Path | None = None,
    ) -> None:
        if server not in WEB_SERVERS:
            raise ValueError(f"server must be one of {', '.join(WEB_SERVERS)}, got {server!r}")
        self.server = server
        self.access_log = access_log  # granian's access lines (gunicorn's come through GUNICORN_CMD_ARGS)
        self.given_url = database_url
        self.server_cpus = server_cpus
        self.client_cpus = client_cpus
        self.products = products
        self.events = events
        self.seed = seed
        self.workers = workers
        self.threads = threads
        self.worker_class = worker_class
        self.extra_env = extra_env or {}
        self.postgres: Postgres | None = None
        self.web: Gunicorn | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="shop-bench-"))
        self.env: dict[str, str] = {}
        self.database_url = ""
        self.seconds: dict[str, float] = {}
        self._closed = False
        self._old_handlers: dict[int, Any] = {}

    # -- lifecycle
    def __enter__(self) -> Stack:
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks, which tear down

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.web is not None:
            with contextlib.suppress(Exception):
                self.web.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            if "shop.recs.serving" in sys.modules:  # this process's own loader thread, if a page started it
                from shop.recs.serving import serving_stop

                serving_stop()
            connections.close_all()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler)

    # -- steps
    def _start(self) -> None:
        t = time.perf_counter()
        if self.given_url:
            check_loopback_url(self.given_url)
            self.database_url = self.given_url
            console.print(f"[bold]PostgreSQL[/]: using {self.database_url}")
        else:
            self.postgres = Postgres(cpus=self.server_cpus)  # assigned first: close() cleans up a failed start
            with console.status("Starting a throwaway PostgreSQL on loopback..."):
                self.postgres.start()
            self.database_url = self.postgres.url
            console.print(f"[bold]PostgreSQL[/]: throwaway cluster at {self.database_url} (fsync on, defaults)")
        self.seconds["postgres_start"] = time.perf_counter() - t

        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "DATABASE_URL": self.database_url,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": f"{LOOPBACK},testserver",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        # Django in this process reads the very same settings as the server.
        for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "LOG_LEVEL"):
            os.environ[key] = self.env[key]
        os.environ.update(self.extra_env)

        t = time.perf_counter()
        with console.status("Migrating..."):
            self._manage("migrate", "--noinput", "-v", "0")
        self.seconds["migrate"] = time.perf_counter() - t

        import django

        django.setup()

        t = time.perf_counter()
        have = self.product_count()
        if have == 0:
            console.print(f"Seeding {self.products:,} products (seed_catalog --seed {self.seed})...")
            self._manage("seed_catalog", "--products", str(self.products), "--seed", str(self.seed), quiet=False)
        elif self.given_url:
            console.print(f"Database already holds {have:,} products: not seeding.")
        self.seconds["seed"] = time.perf_counter() - t

        if self.events:
            t = time.perf_counter()
            written = events_generate(self.events, seed=self.seed)
            self.seconds["events"] = time.perf_counter() - t
            # the decayed scores beat keeps: built once from the whole log in SQL (when this run wrote the
            # log), then beat's refresh reads only what is new
            steps = [("popularity_refresh_incremental", ("popularity_refresh",))]
            if written:
                steps.insert(0, ("popularity_rebuild", ("popularity_refresh", "--rebuild")))
            for step, argv in steps:
                t = time.perf_counter()
                self._manage(*argv, quiet=False)
                self.seconds[step] = time.perf_counter() - t

        t = time.perf_counter()
        with console.status("Collecting static files (whitenoise serves them with DEBUG=false)..."):
            self._manage("collectstatic", "--noinput", "-v", "0")
        self.seconds["collectstatic"] = time.perf_counter() - t

        t = time.perf_counter()
        common = {
            "env": self.env,
            "workers": self.workers,
            "threads": self.threads,
            "worker_class": self.worker_class,
            "log_dir": self.tmp,
            "cpus": self.server_cpus,
        }
        servers = {"granian": Granian, "nginx": NginxGunicorn}
        if self.server in servers:
            self.web = servers[self.server](access_log=self.access_log, **common)
        else:
            self.web = Gunicorn(**common)
        self.workers, self.threads = self.web.workers, self.web.threads
        self.worker_class = self.web.worker_class
        with console.status(f"Starting {self.server}..."):
            self.web.start()
        self.seconds["gunicorn_start"] = time.perf_counter() - t
        setup = {
            "gunicorn": f"{self.worker_class}, keep-alive {self.web.keepalive} s, {GUNICORN_CONFIG}",
            "granian": "blocking threads per process, granian's defaults otherwise; the CPU columns' 'gunicorn' is granian",
            "nginx": f"{self.worker_class}: one gunicorn a process, {GUNICORN_CONFIG}; the CPU columns' 'gunicorn' is "
            "nginx and the gunicorns",
        }[self.server]
        console.print(
            f"[bold]{self.server}[/]: {self.web.base_url}  workers={self.workers} threads={self.threads} "
            f"({setup}), DEBUG=false, fresh SECRET_KEY, ALLOWED_HOSTS=127.0.0.1"
        )
        if self.server_cpus or self.client_cpus:
            console.print(
                f"CPU pinning: server (PostgreSQL, gunicorn) on {sorted(self.server_cpus or [])}, "
                f"load generator on {sorted(self.client_cpus or []) or 'any'}"
            )
        if self.client_cpus:
            os.sched_setaffinity(0, self.client_cpus)  # this process generates load (or starts wrk)

    def wait_idle(self, *, busy_share: float = 0.05, window_s: float = 0.25, timeout_s: float = 30.0) -> float:
        """Wait until gunicorn and PostgreSQL are idle (below ``busy_share`` of one core for two windows
        in a row); returns the seconds waited. After an overloaded run gunicorn still works off the
        requests queued in its threads' queues (their clients are gone): a run started before that is
        done measures the previous run's backlog, not its own target."""
        pids = {"gunicorn": self.web.pid if self.web else None, "postgres": self.postgres_pid}
        t0 = time.perf_counter()
        quiet = 0
        while time.perf_counter() - t0 < timeout_s and quiet < 2:
            meter = CpuMeter(pids=pids).start()
            time.sleep(window_s)
            used = meter.stop()["cpu_seconds"]
            quiet = quiet + 1 if used.get("gunicorn", 0) + used.get("postgres", 0) < busy_share * window_s else 0
        return time.perf_counter() - t0

    def _manage(self, *args: str, quiet: bool = True) -> None:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.PIPE if quiet else None,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")

    # -- reads through Django (this process)
    def product_count(self) -> int:
        from shop.catalog.models import Product

        return Product.objects.filter(is_active=True).count()

    def settings_used(self) -> dict[str, Any]:
        from django.conf import settings

        db = settings.DATABASES["default"]
        return {
            "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE"),
            "debug": settings.DEBUG,
            "database_engine": db["ENGINE"],
            "conn_max_age": db.get("CONN_MAX_AGE"),
            "web_server": self.server,
            "gunicorn": {  # the web server's settings (granian's under --server granian; each gunicorn's behind nginx)
                "workers": self.workers,
                "threads": self.threads,
                "worker_class": self.worker_class,
                "keepalive_s": self.web.keepalive if self.web else None,
                "gil_switch_ms": (self.web.gil_switch_ms or 5.0) if self.web else None,
                "reuse_port": self.web.reuse_port if self.web else None,
                "config": GUNICORN_CONFIG if self.server != "granian" else None,
            },
            "server_cpus": sorted(self.server_cpus) if self.server_cpus else None,
            "client_cpus": sorted(self.client_cpus) if self.client_cpus else None,
            "events_max_batch": getattr(settings, "EVENTS_MAX_BATCH", None),
            "events_throttle_rate": settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get("events"),
            "throwaway_postgres": self.postgres is not None,
            "products": self.product_count(),
            "setup_seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }

    def postgres_facts(self) -> dict[str, Any]:
        try:
            return postgres_facts(self.database_url)
        except Exception as exc:  # facts are a courtesy; never fail the benchmark for them
            return {"error": str(exc)}

    @property
    def postgres_pid(self) -> int | None:
        """The postmaster (its backends are its children): of the throwaway cluster, or of the given
        loopback server (found from this process's backend), so its CPU is counted either way."""
        if self.postgres:
            return self.postgres.postmaster_pid
        if getattr(self, "_given_postmaster", None) is None:
            from django.db import connection

            with contextlib.suppress(Exception), connection.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                self._given_postmaster = psutil.Process(cur.fetchone()[0]).ppid()
        return getattr(self, "_given_postmaster", None)


# --------------------------------------------------------------------------- output


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def bar(value: float, maximum: float, width: int = 40, style: str = "cyan") -> Text:
    filled = 0 if maximum <= 0 else value / maximum * width
    full = int(filled)
    eighths = int((filled - full) * 8)
    glyphs = "█" * full + ("▏▎▍▌▋▊▉"[eighths - 1] if eighths else "")
    return Text(glyphs or ("▏" if value > 0 else ""), style=style)


def comparison_chart(title: str, rows: Sequence[tuple[str, float, str]], *, unit: str) -> Table:
    """Horizontal bars for a few named figures (``(label, value, style)``)."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(justify="right", style="bold")
    table.add_column()
    table.add_column(justify="right")
    top = max((v for _, v, _ in rows), default=0)
    for label, value, style in rows:
        table.add_row(label, bar(value, top, style=style), f"{value:,.1f} {unit}")
    return table


# Latency buckets in milliseconds for the console histogram (upper bounds; last is open-ended).
HISTOGRAM_EDGES_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000)


def histogram_from_samples(latencies_ms: Iterable[float]) -> list[dict[str, float]]:
    counts = [0] * (len(HISTOGRAM_EDGES_MS) + 1)
    for v in latencies_ms:
        for i, edge in enumerate(HISTOGRAM_EDGES_MS):
            if v <= edge:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
    return _histogram_rows(counts)


def histogram_from_buckets(buckets: dict[float, int]) -> list[dict[str, float]]:
    """``buckets`` maps a latency in ms to a count (wrk's microsecond buckets, converted)."""
    counts = [0] * (len(HISTOGRAM_EDGES_MS) + 1)
    for value, n in buckets.items():
        for i, edge in enumerate(HISTOGRAM_EDGES_MS):
            if value <= edge:
                counts[i] += n
                break
        else:
            counts[-1] += n
    return _histogram_rows(counts)


def _histogram_rows(counts: list[int]) -> list[dict[str, float]]:
    rows = []
    lower = 0.0
    for i, n in enumerate(counts):
        upper = HISTOGRAM_EDGES_MS[i] if i < len(HISTOGRAM_EDGES_MS) else math.inf
        rows.append({"from_ms": lower, "to_ms": upper, "count": n})
        lower = upper
    # trim empty buckets at both ends for display and JSON
    while rows and rows[-1]["count"] == 0:
        rows.pop()
    while rows and rows[0]["count"] == 0:
        rows.pop(0)
    return rows


def histogram_chart(title: str, rows: Sequence[dict[str, float]], *, target_ms: float | None = None) -> Table:
    table = Table(title=title, box=None, pad_edge=False)
    table.add_column("latency (ms)", justify="right")
    table.add_column("")
    table.add_column("requests", justify="right")
    table.add_column("cum. %", justify="right")
    total = sum(r["count"] for r in rows) or 1
    top = max((r["count"] for r in rows), default=0)
    cumulative = 0
    for r in rows:
        cumulative += r["count"]
        upper = "inf" if math.isinf(r["to_ms"]) else f"{r['to_ms']:g}"
        over = target_ms is not None and r["from_ms"] >= target_ms
        table.add_row(
            f"{r['from_ms']:g}-{upper}",
            bar(r["count"], top, style="red" if over else "green"),
            f"{r['count']:,}",
            f"{100 * cumulative / total:.1f}",
        )
    return table


CONTENDED_SHARE = 0.15  # other processes using more than this share of the machine make figures unrepresentative


def efficiency(cpu: dict[str, Any], units: float, *, cores: int = 2) -> dict[str, Any]:
    """Work per CPU-second of this run's own processes, and what ``cores`` uncontended cores would do.

    The projection assumes the run is CPU-bound (true at saturation) and that the server and the
    load generator share the ``cores``, as on the 2-core target; it does not depend on how much
    other work happened to be running on the machine.
    """
    used = cpu["cpu_seconds"]
    own = sum(used.get(k, 0.0) for k in ("gunicorn", "postgres", "load_generator"))
    server = sum(used.get(k, 0.0) for k in ("gunicorn", "postgres"))
    per_cpu_s = units / own if own else 0.0
    return {
        "own_cpu_seconds": round(own, 3),
        "server_cpu_ms_per_unit": round(1000 * server / units, 3) if units else None,
        "units_per_own_cpu_second": round(per_cpu_s, 1),
        f"projected_per_s_on_{cores}_uncontended_cores": round(per_cpu_s * cores, 1),
        "other_share_of_machine": cpu["share_of_machine"].get("other", 0.0),
        "contended": cpu["share_of_machine"].get("other", 0.0) > CONTENDED_SHARE,
    }


def contention_warning(runs: Iterable[dict[str, Any]]) -> None:
    worst = max((r["cpu"]["share_of_machine"].get("other", 0.0) for r in runs), default=0.0)
    if worst > CONTENDED_SHARE:
        console.print(
            f"[bold yellow]Warning:[/] other processes used up to {100 * worst:.0f}% of this machine's CPU during "
            "the runs; the measured rates and latencies are lower/higher than on a quiet machine. The CPU-normalised "
            "figures (per CPU-second, projection) do not depend on that; rerun on a quiet machine for the rest."
        )


def verdict(ok: bool) -> str:
    return "[bold green]meets target[/]" if ok else "[bold red]misses target[/]"


def wait_serving_live(
    base_url: str,
    cookies: Sequence[str],
    *,
    placement: str = "home.recommended",
    in_a_row: int = 20,
    timeout_s: float = 300.0,
) -> float | None:
    """Wait until ``in_a_row`` answers in a row of the recommendations API are ranked ``live``, each asked on
    a new connection (the kernel spreads new connections over the web processes, each on its own socket) by
    the next of ``cookies`` (``Cookie`` headers of visitors with activity; one visitor would meet its
    throttle). Then every web process has built its model off the request path (a process starts building
    at its first request that wants one; at 5 million events a build takes 20-25 s of CPU) and a measured
    run is not sharing the cores with builds. Returns the seconds waited, or None at ``timeout_s``."""
    if not cookies:
        raise ValueError("wait_serving_live needs at least one visitor's cookie")
    t0 = time.perf_counter()
    streak, n = 0, 0
    while streak < in_a_row:
        if time.perf_counter() - t0 > timeout_s:
            return None
        req = urllib.request.Request(
            f"{base_url}/api/recommendations?placement={placement}&k=8",
            headers={"Cookie": cookies[n % len(cookies)], "Accept": "application/json", "Connection": "close"},
        )
        n += 1
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # nosec B310  # http URL of the server this harness started
                live = json.loads(r.read()).get("source") == "live"
        except (urllib.error.URLError, OSError, ValueError):
            live = False
        streak = streak + 1 if live else 0
        if not live:
            time.sleep(0.25)
    return time.perf_counter() - t0


# -- the recommendation service's own counters (written by the web processes every RECS_STATS_FLUSH_S)
def serving_mark() -> int:
    """The newest serving counter row now: :func:`serving_mix` counts what was written after it."""
    from shop.recs.models import ServingStat

    return ServingStat.objects.order_by("-id").values_list("id", flat=True).first() or 0


def serving_mix(*, after_id: int, placement: str) -> dict[str, Any]:
    """The recommendation service's own per-request timer and serving mix, from the serving counters
    the web processes wrote after ``after_id``."""
    from shop.recs.models import ServingStat
    from shop.recs.stats import BUCKETS, _quantile

    hist = [0] * (len(BUCKETS) + 1)
    by_source: dict[str, int] = {}
    reasons: dict[str, int] = {}
    stages: dict[str, float] = {}
    n = 0
    total_ms = 0.0
    for r in ServingStat.objects.filter(id__gt=after_id, placement=placement):
        n += r.requests
        total_ms += r.latency_ms_sum
        hist = [a + b for a, b in zip(hist, r.latency_hist, strict=True)]
        by_source[r.source] = by_source.get(r.source, 0) + r.requests
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + r.requests
        for k, v in r.stage_ms_sum.items():
            stages[k] = stages.get(k, 0.0) + v
    return {
        "requests": n,
        "mean_ms": round(total_ms / n, 3) if n else None,
        "p50_ms_bucket": _quantile(hist, 0.5),
        "p99_ms_bucket": _quantile(hist, 0.99),
        "by_source": by_source,
        "reasons": reasons,
        "stage_ms_mean": {k: round(v / n, 3) for k, v in stages.items()} if n else {},
    }

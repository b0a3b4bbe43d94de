"""The Docker Compose topology, run natively (no Docker engine here): PostgreSQL, Redis, the one-shot migrate
+ seed, gunicorn, two workers, beat, the console and the simulator, each started with the command and the
environment that docker/compose.yaml gives it (read with PyYAML and interpolated like Compose does, from
.env.example plus this test's values), not copied into the test.

What differs from the containers, and only that: hosts and ports (every process shares one loopback, so
each listening port is a free one), the two workers' node names (one host), container paths (/data, the
shared volume, and /tmp, private to each container, become folders under the test's tmp dir) and the
executables, taken from this virtualenv.

Checks: storefront 200, /readyz 200, a model trained (beat -> retrain) and promoted, batch scoring split
across both workers, live recommendations served, console 200, metrics exported by web and workers. Then
it times a batch score with two workers and with one, and writes the figures to var/bench/topology.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from tests.worker.conftest import TINY_TRAIN

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


# ------------------------------------------------------------------------------------------ compose file


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: ``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``; a default may hold braces (``${X:-{}}``)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if not text.startswith("${", i):
            out.append(text[i])
            i += 1
            continue
        depth, j = 1, i + 2
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        body = text[i + 2 : j - 1]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])(.*))?", body, re.S)
        assert m, f"unsupported variable {body!r}"
        name, colon, op, arg = m.groups()
        value = env.get(name)
        missing = value is None or (colon == ":" and value == "")
        if op == "-" and missing:
            value = interpolate(arg, env)
        elif op == "?" and missing:
            raise AssertionError(f"compose requires {name}: {arg}")
        out.append(value or "")
        i = j
    return "".join(out)


def _resolve(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(x, env) for x in node]
    if isinstance(node, dict):
        return {k: _resolve(v, env) for k, v in node.items()}
    return node


def dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def compose_services(env: dict[str, str]) -> dict[str, dict]:
    """Services with commands and environments resolved (YAML anchors and merges are PyYAML's own)."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return {name: _resolve(svc, env) for name, svc in raw["services"].items()}


# ------------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.5, logs=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, psycopg.Error):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"\n{logs()}" if logs else ""))


class Topology:
    """Processes started from compose services; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, root: Path, data_dir: Path):
        self.root = root
        self.data_dir = data_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def container_path(self, value: str, instance: str) -> str:
        # /data is the named volume every app container mounts; /tmp is private to each container
        places = {"/data": str(self.data_dir), "/tmp": str(self.root / instance / "tmp")}  # noqa: S108
        return re.sub(r"(?<![\w/])(/data|/tmp)(?=/|$)", lambda m: places[m.group(1)], value)  # one pass

    def prepare(self, service: dict, instance: str, extra_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        (self.root / instance / "tmp").mkdir(parents=True, exist_ok=True)
        env = {k: self.container_path(str(v), instance) for k, v in service.get("environment", {}).items()}
        env.update(extra_env)
        argv = [self.container_path(a, instance) for a in service["command"]]
        base = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.root / instance), "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
        return argv, {**base, **env}

    def start(self, instance: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.root / f"{instance}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[instance] = proc
        return proc

    def run(self, instance: str, argv: list[str], env: dict[str, str], timeout: float) -> None:
        proc = self.start(instance, argv, env)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{instance} did not finish in {timeout}s\n{self.log(instance)}") from None
        assert rc == 0, f"{instance} exited {rc}\n{self.log(instance)}"

    def stop(self, instance: str) -> None:
        proc = self.procs.get(instance)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for instance in reversed(list(self.procs)):
            self.stop(instance)

    def log(self, instance: str, tail: int = 4000) -> str:
        path = self.root / f"{instance}.log"
        return f"--- {instance}\n" + (path.read_text(errors="replace")[-tail:] if path.exists() else "(no log)")

    def logs(self) -> str:
        return "\n".join(self.log(name) for name in self.procs)


def _replace_after(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


# -------------------------------------------------------------------------------------------------- test


@pytest.fixture
def topology_db(postgresql_proc):
    name = f"topology_{uuid.uuid4().hex[:8]}"
    admin = dict(host=postgresql_proc.host, port=postgresql_proc.port, user=postgresql_proc.user,
                 password=postgresql_proc.password or None, dbname="postgres", autocommit=True)  # fmt: skip
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {**admin, "dbname": name}
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_compose_topology_natively(postgresql_proc, redis_proc, topology_db, tmp_path):
    import redis

    redis.Redis(host=redis_proc.host, port=redis_proc.port).flushall()
    web_port, console_port = free_port(), free_port()
    metrics_ports = {"worker-1": free_port(), "worker-2": free_port()}
    web_url = f"http://127.0.0.1:{web_port}"
    # what a user's .env holds, then this machine's hosts and a tiny demo
    env = {
        **dotenv(ROOT / ".env.example"),
        "SECRET_KEY": f"topology-{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "POSTGRES_USER": postgresql_proc.user,
        "POSTGRES_PASSWORD": postgresql_proc.password or "unused",
        "POSTGRES_HOST": postgresql_proc.host,
        "POSTGRES_PORT": str(postgresql_proc.port),
        "POSTGRES_DB": topology_db["dbname"],
        "REDIS_HOST": redis_proc.host,
        "REDIS_PORT": str(redis_proc.port),
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "2",
        "DEMO_PRODUCTS": "150",
        "RECS_TRAIN_CONFIG": json.dumps(TINY_TRAIN),
        "RECS_CHECK_EVERY_S": "2",
        "RECS_SCORE_CHUNK": "8",
        "SIMULATOR_URL": web_url,
        "SIMULATOR_SHOPPERS": "40",
        "SIMULATOR_MINUTES": "0.1",
        "SIMULATOR_CONCURRENCY": "4",
        "SIMULATOR_THINK": "0.02",
        "CONSOLE_API_URL": web_url,
    }
    services = compose_services(env)
    topo = Topology(tmp_path, tmp_path / "data")
    (tmp_path / "data" / "models").mkdir(parents=True)
    (tmp_path / "data" / "snapshots").mkdir()
    db = psycopg.connect(**topology_db)

    def query(sql: str, *params):
        with db.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    try:
        # migrate + seed, to completion (the others wait for it: service_completed_successfully)
        argv, penv = topo.prepare(services["migrate"], "migrate", {})
        topo.run("migrate", argv, penv, timeout=300)
        assert query("SELECT count(*) FROM catalog_product")[0][0] == 150

        # web
        argv, penv = topo.prepare(services["web"], "web", {})
        argv = _replace_after(argv, "--bind", f"127.0.0.1:{web_port}")
        topo.start("web", argv, penv)
        wait_for(lambda: httpx.get(f"{web_url}/healthz").status_code == 200, timeout=90, what="web", logs=topo.logs)
        home = httpx.get(f"{web_url}/", timeout=30)
        assert home.status_code == 200 and "<html" in home.text.lower()
        ready = httpx.get(f"{web_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert (
            ready.json()["checks"]["broker"]["ok"]
            and ready.json()["checks"]["database"]["detail"]["vendor"] == "postgresql"
        )

        # two workers, as `docker compose up --scale worker=2` would run them
        for n in (1, 2):
            name = f"worker-{n}"
            argv, penv = topo.prepare(services["worker"], name, {"WORKER_METRICS_PORT": str(metrics_ports[name])})
            topo.start(name, [*argv, "-n", f"worker{n}@%h"], penv)
        for n in (1, 2):
            hb = tmp_path / f"worker-{n}" / "tmp" / "worker-heartbeat"
            wait_for(hb.exists, timeout=120, what=f"worker-{n} heartbeat", logs=topo.logs)
            check = subprocess.run([str(BIN / "python"), "-m", "shop.ops.worker_health", "--file", str(hb)],
                                   cwd=ROOT, capture_output=True, text=True)  # fmt: skip
            assert check.returncode == 0, check.stderr

        # console
        if (ROOT / "dashboard" / "app.py").exists():
            argv, penv = topo.prepare(services["console"], "console", {})
            argv = _replace_after(
                _replace_after(argv, "--server.port", str(console_port)), "--server.address", "127.0.0.1"
            )
            topo.start("console", argv, penv)

        # the simulator (profile demo) browses over HTTP until it has run its sessions
        argv, penv = topo.prepare(services["simulator"], "simulator", {})
        topo.run("simulator", argv, penv, timeout=300)
        events = query("SELECT count(*), count(DISTINCT visitor_id) FROM events_event")[0]
        assert events[0] > 100 and events[1] >= 10, events

        # beat: "never trained" + events -> retrain -> promotion -> batch score fanned out over both workers
        argv, penv = topo.prepare(services["beat"], "beat", {})
        topo.start("beat", argv, penv)
        version = wait_for(
            lambda: (query("SELECT version FROM recs_modelversion WHERE is_active") or [[None]])[0][0],
            timeout=300, what="a trained, promoted model", logs=topo.logs,
        )  # fmt: skip
        batch = wait_for(
            lambda: (query("SELECT result, started_at, finished_at FROM recs_taskrun WHERE kind = 'batch_score' "
                           "AND state = 'succeeded' ORDER BY finished_at") or [None])[0],
            timeout=300, what="the first batch score", logs=topo.logs,
        )  # fmt: skip
        result = batch[0]
        assert result["model_version"] == version and result["chunks"] >= 2
        assert sorted(h.split("@")[0] for h in result["workers"]) == ["worker1", "worker2"], result
        pointer = query(
            "SELECT s.id, s.status, s.rows FROM recs_servingpointer p JOIN recs_scoreset s ON s.id = p.score_set_id"
        )
        assert pointer[0][0] == result["score_set"] and pointer[0][1] == "complete" and pointer[0][2] > 0

        ready = httpx.get(f"{web_url}/readyz", timeout=10).json()
        assert ready["checks"]["model"]["detail"]["version"] == version

        # live recommendations for the simulator's visitors, through the public API (the arm decides the source;
        # a visitor in the DLRM arm gets a live re-rank once the web process has loaded the new version)
        vids = [
            r[0]
            for r in query("SELECT visitor_id FROM events_event GROUP BY visitor_id ORDER BY count(*) DESC LIMIT 30")
        ]

        from django.test import override_settings

        from shop.events.middleware import visitor_cookie_value

        with override_settings(SECRET_KEY=env["SECRET_KEY"]):  # the stack's key signs its visitor cookies
            cookies = {vid: visitor_cookie_value(vid) for vid in vids}

        def live_answer():
            for vid in vids:
                r = httpx.get(f"{web_url}/api/recommendations", params={"placement": "home.recommended"},
                              cookies={"vid": cookies[vid]}, timeout=30)  # fmt: skip
                if r.status_code == 200 and r.json()["source"] == "live":
                    return r.json()
            return None

        served = wait_for(live_answer, timeout=90, what="a live recommendation", logs=topo.logs)
        assert served["items"] and served["reason"] == "", served

        # console
        if "console" in topo.procs:
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{console_port}/_stcore/health").text == "ok",
                     timeout=120, what="the console", logs=topo.logs)  # fmt: skip
            assert httpx.get(f"http://127.0.0.1:{console_port}/").status_code == 200

        # metrics: web (loopback may scrape) and each worker's own endpoint
        text = httpx.get(f"{web_url}/metrics", timeout=10).text
        assert "django_http_requests_latency_seconds_by_view_method_count" in text
        assert f'shop_model_version_info{{role="active",version="{version}"}} 1.0' in text
        assert re.search(r"^shop_events_ingested_total [1-9]", text, re.M), "events ingested not counted"
        assert re.search(r'^shop_recs_served_total\{source="live"\} [1-9]', text, re.M)
        for name, port in metrics_ports.items():
            wtext = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert re.search(
                r'shop_task_duration_seconds_count\{outcome="success",task="worker.tasks.batch_score_chunk"\} [1-9]',
                wtext,
            ), name

        # batch-scoring time, two workers then one (both warm: each has loaded the model once)
        manage = [str(BIN / "python"), "manage.py", "batch_score", "--wait", "--timeout", "300"]
        timings = {}
        for workers in (2, 1):
            if workers == 1:
                topo.stop("worker-2")
            argv, penv = topo.prepare(services["web"], f"batch-{workers}", {})
            topo.run(f"batch-{workers}", manage, penv, timeout=320)
            row = query("SELECT result, extract(epoch FROM finished_at - started_at) FROM recs_taskrun "
                        "WHERE kind = 'batch_score' AND state = 'succeeded' ORDER BY finished_at DESC LIMIT 1")[0]  # fmt: skip
            timings[workers] = {"seconds": round(float(row[1]), 3), "visitors": row[0]["visitors"],
                                "chunks": row[0]["chunks"], "workers": row[0]["workers"]}  # fmt: skip
            if workers == 1:
                assert list(row[0]["workers"]) == [h for h in row[0]["workers"] if h.startswith("worker1@")]
        report = {"benchmark": "batch score, native compose topology", "cpu_count": os.cpu_count(), **{
            f"{n}_workers": t for n, t in timings.items()}, "ratio_one_over_two": round(
            timings[1]["seconds"] / max(timings[2]["seconds"], 1e-9), 2)}  # fmt: skip
        out = ROOT / "var" / "bench" / "topology.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"\nbatch score of {timings[2]['visitors']} visitors in {timings[2]['chunks']} chunks: "
              f"2 workers {timings[2]['seconds']:.2f} s, 1 worker {timings[1]['seconds']:.2f} s "
              f"(1/2 = {report['ratio_one_over_two']:.2f}x on {os.cpu_count()} CPUs); wrote {out}")  # fmt: skip
    except BaseException:
        print(topo.logs())
        raise
    finally:
        topo.stop_all()
        db.close()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)

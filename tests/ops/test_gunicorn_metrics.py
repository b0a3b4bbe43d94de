"""gunicorn with two worker processes in Prometheus multi-process mode: /metrics adds up every process's
samples, whichever process answers the scrape."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_requests_served_by_both_processes_are_all_counted(tmp_path):
    port = _free_port()
    folder = tmp_path / "prometheus"
    (folder).mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: dropped at start
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "SECRET_KEY": "gunicorn-metrics-test-0123456789abcdefghijklmnopqrstuvwxyz",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "RECS_SERVING_LOAD": "false",
    }
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "shop.wsgi:application", "--config", "python:shop.ops.gunicorn_conf",
           "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "gunicorn did not start"
            time.sleep(0.2)
        pattern = re.compile(
            r'django_http_requests_latency_seconds_by_view_method_count\{method="GET",view="ops:healthz"\} (\S+)'
        )

        def healthz_count() -> float:
            m = pattern.search(httpx.get(f"{url}/metrics", timeout=10).text)
            return float(m.group(1)) if m else 0.0

        before = healthz_count()  # start-up polls included
        n = 40
        with httpx.Client() as client:  # one connection per request: the processes share the listening socket
            for _ in range(n):
                assert client.get(f"{url}/healthz", headers={"Connection": "close"}).status_code == 200
        pids = {p.name.rsplit("_", 1)[1].split(".")[0] for p in folder.glob("*.db")}
        assert "999999" not in pids and len(pids) == 2, pids  # both processes wrote samples; the stale file is gone
        assert healthz_count() == before + n  # every request counted, whichever process served it
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_the_loaded_application_is_frozen_out_of_the_collectors_passes(settings):
    """gunicorn's post_worker_init (the application loaded) moves Django's long-lived objects out of the
    cyclic collector's full passes; RECS_GC_FREEZE=false leaves them."""
    import gc

    from shop.ops import gunicorn_conf

    try:
        gc.unfreeze()
        settings.RECS_GC_FREEZE = False
        gunicorn_conf.post_worker_init(None)
        assert gc.get_freeze_count() == 0
        settings.RECS_GC_FREEZE = True
        gunicorn_conf.post_worker_init(None)
        assert gc.get_freeze_count() > 10_000  # Django's apps, URLs and views at least
    finally:
        gc.unfreeze()

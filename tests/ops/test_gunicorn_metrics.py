"""gunicorn with two worker processes in Prometheus multi-process mode: /metrics adds up every process's
samples, whichever process answers the scrape."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn(tmp_path, *, extra_env: dict[str, str], workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "SECRET_KEY": "gunicorn-test-0123456789abcdefghijklmnopqrstuvwxyz-0123456789",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "RECS_SERVING_LOAD": "false",
        **extra_env,
    }
    if "PROMETHEUS_MULTIPROC_DIR" not in extra_env:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "shop.wsgi:application", "--config", "python:shop.ops.gunicorn_conf",
           "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    raise AssertionError("gunicorn did not start")


def test_requests_served_by_both_processes_are_all_counted(tmp_path):
    folder = tmp_path / "prometheus"
    (folder).mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: dropped at start
    proc, url = _gunicorn(tmp_path, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(folder)}, workers=2, threads=1)
    try:
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


def test_each_worker_loads_the_url_configuration_before_it_answers(settings):
    """post_worker_init imports every URL module and view and builds the names' table: a process's first request
    no longer pays for it (0.5 s of CPU in one process before, 0.1 s after)."""
    from django.urls import URLResolver, clear_url_caches, get_resolver

    from shop.ops import gunicorn_conf

    settings.RECS_GC_FREEZE = False
    clear_url_caches()
    try:
        fresh = get_resolver()
        assert "url_patterns" not in fresh.__dict__  # a new resolver: nothing imported through it yet
        gunicorn_conf.post_worker_init(None)
        assert get_resolver() is fresh

        def loaded(resolver: URLResolver) -> int:
            assert "url_patterns" in resolver.__dict__, resolver  # its URL module imported, views with it
            return 1 + sum(loaded(p) for p in resolver.url_patterns if isinstance(p, URLResolver))

        assert loaded(fresh) > 5  # the root and the apps' included configurations
        assert fresh._populated  # reverse() and {% url %} read a table already built
    finally:
        clear_url_caches()


@pytest.mark.parametrize("load", [True, False])
def test_each_worker_starts_the_models_loader_before_it_answers(settings, monkeypatch, load):
    """post_worker_init starts this process's model loader (torch imported, the thread running) when the web
    processes load models (RECS_SERVING_LOAD), so the first recommendation request neither pays for the import
    nor waits for the load to begin; with it off, no loader starts."""
    import threading

    import torch

    from shop.ops import gunicorn_conf
    from shop.recs import serving

    torch_threads = torch.get_num_threads()  # the loader's start sets the web process's own (one)
    settings.RECS_GC_FREEZE = False
    settings.RECS_SERVING_LOAD = load
    ran: list[str] = []
    monkeypatch.setattr(serving, "_loop", lambda: ran.append(threading.current_thread().name))  # no database
    assert serving._thread is None
    try:
        gunicorn_conf.post_worker_init(None)
        if load:
            serving._thread.join(10)
            assert ran == ["recs-serving"] and "torch" in sys.modules
        else:
            assert serving._thread is None and ran == []
    finally:
        serving.serving_stop()
        torch.set_num_threads(torch_threads)


@contextlib.contextmanager
def _conf_with(monkeypatch, name: str, value: str | None):
    """``shop.ops.gunicorn_conf`` read again with ``name`` set to ``value`` (unset when None), and read again
    without it afterwards."""
    import importlib

    from shop.ops import gunicorn_conf

    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)
    try:
        yield importlib.reload(gunicorn_conf)
    finally:
        monkeypatch.delenv(name, raising=False)
        importlib.reload(gunicorn_conf)


@pytest.mark.parametrize(("env", "expected_s"), [(None, None), ("0", None), ("1", 0.001), ("2.5", 0.0025)])
def test_the_interpreter_switch_interval_is_set_only_when_asked(settings, monkeypatch, env, expected_s):
    """WEB_GIL_SWITCH_MS sets how long a thread may hold the interpreter while another waits (applied in each
    worker once the application is loaded); unset or 0 leaves Python's own interval."""
    settings.RECS_GC_FREEZE = False
    before = sys.getswitchinterval()
    try:
        with _conf_with(monkeypatch, "WEB_GIL_SWITCH_MS", env) as conf:
            sys.setswitchinterval(0.005)
            conf.post_worker_init(None)
            assert sys.getswitchinterval() == pytest.approx(expected_s or 0.005)
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize(("env", "expected"), [(None, 100), ("10", 10), ("250", 250)])
def test_a_full_collection_waits_for_more_middle_ones(settings, monkeypatch, env, expected):
    """WEB_GC_FULL_EVERY (100; Python's own 10) sets how many middle passes of the collector go by before a
    full one, which walks every object made since the freeze and stalls the process's requests meanwhile."""
    import gc

    settings.RECS_GC_FREEZE = False
    before = gc.get_threshold()
    try:
        with _conf_with(monkeypatch, "WEB_GC_FULL_EVERY", env) as conf:
            gc.set_threshold(700, 10, 10)
            conf.post_worker_init(None)
            assert gc.get_threshold() == (700, 10, expected)
    finally:
        gc.set_threshold(*before)


def test_a_slow_thread_keeps_the_connection_alive(monkeypatch):
    """After a response that announced keep-alive, gunicorn drains any unread request body within a deadline.
    WEB_FIRST_BYTES_WAIT_MS (10 ms) used to set that deadline too, so a thread that waited more than 10 ms for
    a core or the interpreter between two readings of the clock closed the connection, even after a GET with
    no body, and the client's next request on it failed. Here every reading of the clock is 11 ms after the
    one before; the first-bytes wait stays 10 ms."""
    import itertools
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser
    from gunicorn.workers import gthread

    from shop.ops import gunicorn_conf

    # what post_fork changes in this process is put back after the test
    monkeypatch.setattr(gthread.TConn, "wait_for_data", gthread.TConn.wait_for_data)
    gunicorn_conf.post_fork(SimpleNamespace(log=SimpleNamespace(warning=print)), None)

    client, server = socket.socketpair()
    try:
        client.sendall(b"GET /p/1/ HTTP/1.1\r\nHost: shop\r\n\r\n")
        parser = RequestParser(Config(), server, ("127.0.0.1", 1))
        assert next(parser).path == "/p/1/"
        start, ticks = time.monotonic(), itertools.count()
        with monkeypatch.context() as m:
            m.setattr(time, "monotonic", lambda: start + next(ticks) * 0.011)
            kept = gthread.ThreadWorker._keepalive_after(None, SimpleNamespace(parser=parser), True)
        assert kept, "the connection was closed after a GET whose response announced keep-alive"
    finally:
        client.close()
        server.close()

    silent, other = socket.socketpair()  # a new connection that sends nothing: its thread gives up at once
    try:
        conn = gthread.TConn(Config(), silent, ("127.0.0.1", 1), ("127.0.0.1", 2))
        t = time.monotonic()
        assert conn.wait_for_data(gthread.DEFAULT_WORKER_DATA_TIMEOUT) is False
        assert time.monotonic() - t < 1.0
    finally:
        silent.close()
        other.close()


def test_the_access_log_goes_where_web_access_log_says(tmp_path):
    """`make demo` writes the request lines to a file (its console is for the shoppers' rounds and the lift
    table); the default stays stdout."""
    log = tmp_path / "access.log"
    proc, url = _gunicorn(tmp_path, extra_env={"WEB_ACCESS_LOG": str(log)}, workers=1, threads=2)
    try:
        assert httpx.get(f"{url}/healthz?from=access-log-test", timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while "from=access-log-test" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"no request line in {log}"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize(("value", "expected"), [(None, "-"), ("-", "-"), ("", None), ("var/x.log", "var/x.log")])
def test_the_access_log_setting(monkeypatch, value, expected):
    import importlib

    from shop.ops import gunicorn_conf

    if value is None:
        monkeypatch.delenv("WEB_ACCESS_LOG", raising=False)
    else:
        monkeypatch.setenv("WEB_ACCESS_LOG", value)
    try:
        assert importlib.reload(gunicorn_conf).accesslog == expected
    finally:
        monkeypatch.undo()
        importlib.reload(gunicorn_conf)


@pytest.mark.parametrize(
    ("name", "value"),
    [("WEB_GIL_SWITCH_MS", "fast"), ("WEB_GIL_SWITCH_MS", "nan"), ("WEB_GIL_SWITCH_MS", "-1"), ("WEB_THREADS", "0"),
     ("WEB_CONCURRENCY", "two"), ("WEB_FIRST_BYTES_WAIT_MS", "1.5"), ("WEB_REUSE_PORT", "yes"),
     ("WEB_REUSE_PORT", "2"), ("WEB_GC_FULL_EVERY", "0"), ("WEB_GC_FULL_EVERY", "often")],
)  # fmt: skip
def test_a_bad_serving_setting_is_one_line_naming_it(name, value):
    """gunicorn reads its settings from the environment: a bad value stops it with a line naming the variable."""
    out = subprocess.run(
        [sys.executable, "-c", "import shop.ops.gunicorn_conf"],
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().startswith(f"{name}={value!r}: expected"), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("wait_ms", "held"), [(None, False), ("5000", True)], ids=["deployed", "gunicorn-default"])
def test_idle_connections_do_not_hold_the_threads(tmp_path, wait_ms, held):
    """A connection that sends nothing (a browser's speculative preconnect, a slow client) must not hold one of
    the process's threads: with gunicorn's own 5 s wait for the first bytes, as many idle connections as
    threads stopped the process answering anyone for 5 s. The deployed setting hands them to the poller."""
    proc, url = _gunicorn(
        tmp_path, extra_env={} if wait_ms is None else {"WEB_FIRST_BYTES_WAIT_MS": wait_ms}, workers=1, threads=2
    )
    idle = []
    try:
        for _ in range(4):  # twice the threads
            idle.append(socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))))
        time.sleep(0.3)  # accepted and handed to threads
        t0 = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        waited = time.monotonic() - t0
        if held:
            assert waited > 3.0, waited  # the control: the request queued behind the idle connections
            return
        assert waited < 2.0, waited
        # an idle connection is still served once it speaks (from the poller)
        idle[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        idle[0].settimeout(10)
        got = idle[0].recv(64)
        assert got.startswith(b"HTTP/1.1 200"), got
    finally:
        for s in idle:
            s.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _listening_sockets(pid: int, port: int) -> set[int]:
    """The inodes of the TCP sockets ``pid`` listens on at ``port``."""
    import psutil

    fds = {
        c.fd for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == "LISTEN" and c.laddr.port == port
    }
    return {int(os.readlink(f"/proc/{pid}/fd/{fd}").split("[")[1].rstrip("]")) for fd in fds}


@pytest.mark.parametrize(("reuse_port", "own"), [(None, True), ("0", False)], ids=["deployed", "shared-socket"])
def test_each_worker_listens_on_its_own_socket_and_connections_spread(tmp_path, reuse_port, own):
    """On one shared listening socket every idle worker is woken for a new connection and whichever runs first
    takes it: under paced load one process took up to three kept-alive connections in four (and a process is
    one core's worth of Python). Deployed, each worker has its own socket (SO_REUSEPORT) and the kernel spreads
    new connections over them."""
    import psutil

    log = tmp_path / "access.log"  # one line per request: the pid of the process that answered
    env = {"GUNICORN_CMD_ARGS": f"--access-logfile {log} --access-logformat '%(p)s'"}
    proc, url = _gunicorn(
        tmp_path, extra_env=env if reuse_port is None else {**env, "WEB_REUSE_PORT": reuse_port}, workers=2, threads=2
    )
    port = int(url.rsplit(":", 1)[1])
    try:
        workers = [c.pid for c in psutil.Process(proc.pid).children()]
        assert len(workers) == 2
        inodes = [_listening_sockets(pid, port) for pid in workers]
        assert all(len(i) == 1 for i in inodes), inodes
        assert (inodes[0] != inodes[1]) is own, inodes  # the control: one socket, inherited from the master
        if not own:
            return
        start = log.stat().st_size
        n = 60
        for _ in range(n):  # a new connection each: the kernel picks the socket by the connection's addresses
            assert httpx.get(f"{url}/healthz", headers={"Connection": "close"}, timeout=10).status_code == 200
        time.sleep(0.5)  # the last lines written
        with log.open() as f:
            f.seek(start)
            answered_by = Counter(line.strip().strip("<>") for line in f if line.strip())
        assert set(answered_by) == {str(pid) for pid in workers}, answered_by
        assert min(answered_by.values()) >= 0.2 * n, answered_by  # each at least 12 of 60 (a fair coin: ~1 in 10^6)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_the_address_is_logged_when_each_worker_binds_its_own_socket():
    """The master binds nothing with reuse_port, so gunicorn's own start line names no address."""
    from types import SimpleNamespace

    from shop.ops import gunicorn_conf

    lines: list[str] = []
    server = SimpleNamespace(
        cfg=SimpleNamespace(bind=["127.0.0.1:8000"]), log=SimpleNamespace(info=lambda m, *a: lines.append(m % a))
    )
    gunicorn_conf.when_ready(server)
    assert lines == ["Listening at: 127.0.0.1:8000 (each worker on its own socket)"]

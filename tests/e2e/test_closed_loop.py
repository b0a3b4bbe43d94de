"""The demo's closed loop on its own SQLite path: a fresh database, a real server process, shoppers,
a retrain and batch score, a fresh experiment, shoppers again, a lift table."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sqlite_env(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "SECRET_KEY": "closed-loop-test-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "MODEL_DIR": str(tmp_path / "models"),
        "SNAPSHOT_DIR": str(tmp_path / "snapshots"),
        "CELERY_BROKER_URL": "memory://",  # the loop runs its tasks inline; nothing may reach a real worker
        "EXPERIMENTS_CACHE_TTL_S": "1",
        "RECS_TRAIN_CONFIG": '{"train": {"epochs": 2}}',
        "CACHE_URL": "locmemcache://",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, "manage.py"]
    for args in (["migrate", "--noinput", "-v", "0"], ["seed_catalog", "--products", "300", "--seed", "42"]):
        subprocess.run(manage + args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return env


@pytest.fixture
def server(sqlite_env, tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "shop.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "4"],
        cwd=ROOT, env=sqlite_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_closed_loop_on_sqlite_trains_a_model_and_prints_the_lift_table(server, sqlite_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "closed_loop", "--url", server, "--shoppers", "15", "--minutes", "0",
         "--think", "0", "--concurrency", "2", "--inline"],
        cwd=ROOT, env=sqlite_env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "retrain succeeded" in out and "batch_score succeeded" in out
    assert re.search(r"version v\d+: promoted=True", out)
    # how far the version leans on the best sellers, beside stage 1's order, on its training holdout
    assert re.search(
        r"best sellers: \d+% of its top-10 places hold the shop's 40 best sellers \(stage 1's order \d+%\)", out
    )
    assert "Lift table: closed-loop-" in out
    for arm in ("popularity (control)", "heuristic", "dlrm"):
        assert arm in out
    assert "SRM:" in out and "server errors" in out
    assert " 0 server errors" in out
    visitors = re.search(r"│ visitors\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│", out)
    assert visitors is not None, out[-3000:]
    assert sum(int(v.replace(",", "")) for v in visitors.groups()) > 0  # rails recorded the visitors' arms
    # what each arm served, from the serving counters of the experiment's window
    assert "What each arm served" in out
    renders = re.search(r"│ rail renders\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│", out)
    assert renders is not None, out[-3000:]
    assert all(int(v.replace(",", "")) > 0 for v in renders.groups())  # every arm's renders were counted
    popular = re.search(r"│ popular list \(the arm's ranking\)\s+│\s+([\d,]+) \(100%\)", out)
    assert popular is not None, out[-3000:]  # the control serves nothing but the popular list
    # what the rails showed, read back from the cards the pages recorded
    assert "What the personalised rails showed" in out
    cards = re.search(r"│ cards shown\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│", out)
    assert cards is not None, out[-3000:]
    assert all(int(v.replace(",", "")) > 0 for v in cards.groups())

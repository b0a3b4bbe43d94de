"""The worker's container health check reads the heartbeat file the worker refreshes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shop.ops.worker_health", "--file", str(path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_fresh_heartbeat_is_healthy_stale_or_missing_is_not(tmp_path):
    beat = tmp_path / "hb"
    missing = _check(beat)
    assert missing.returncode == 1 and "no heartbeat file" in missing.stderr
    beat.write_text(json.dumps({"hostname": "celery@box", "pid": 1, "at": time.time()}))
    ok = _check(beat)
    assert ok.returncode == 0 and "celery@box" in ok.stdout
    beat.write_text(json.dumps({"hostname": "celery@box", "pid": 1, "at": time.time() - 120}))
    stale = _check(beat, "--max-age", "60")
    assert stale.returncode == 1 and "last heartbeat 120s ago" in stale.stderr
    beat.write_text("not json")
    assert _check(beat).returncode == 1


def test_heartbeat_writer_and_reader_agree(tmp_path, monkeypatch):
    from shop.ops import worker

    path = tmp_path / "hb"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(path))
    worker._write_heartbeat("celery@node1")
    assert _check(path).returncode == 0
    assert json.loads(path.read_text())["hostname"] == "celery@node1"

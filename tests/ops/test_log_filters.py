"""The web process's log (Django's LOGGING) without fbgemm-gpu's and torchrec's INFO chatter.

A web process loads fbgemm-gpu when it loads the serving model, and fbgemm-gpu logs one INFO line per
native library through the root logger: 14 lines per process in `make demo`'s console, before anything
a student came to read. The worker has filtered them since its memory tests; the web processes now do too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import logging
import django

django.setup()
import fbgemm_gpu  # noqa: F401  (logs "Successfully loaded: '....so'" at INFO per native library)

root = logging.getLogger()
path = fbgemm_gpu.__file__
root.handle(logging.LogRecord("root", logging.WARNING, path, 1, "a library warning stays", None, None))
logging.getLogger("shop.recs.serving").info("our own info stays")
"""


def test_the_web_process_log_drops_library_info_but_keeps_warnings_and_our_own_info():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "ENV_FILE": os.devnull,
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Successfully loaded" not in log, log[-3000:]
    assert "a library warning stays" in log
    assert "our own info stays" in log

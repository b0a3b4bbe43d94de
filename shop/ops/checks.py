"""Readiness checks: can this web process serve a shopper right now?

Each check returns a :class:`Check`; none raises. Errors are reported by kind (the exception's class and
a short reason), never with connection strings or hostnames, because the probes are unauthenticated.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection


@dataclass
class Check:
    ok: bool
    ms: float = 0.0
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not out["error"]:
            out.pop("error")
        if not out["detail"]:
            out.pop("detail")
        return out


def _timed(fn) -> Check:
    t0 = time.perf_counter()
    try:
        check = fn()
    except Exception as exc:  # a probe reports, it never raises
        check = Check(ok=False, error=type(exc).__name__)
    check.ms = round((time.perf_counter() - t0) * 1000, 2)
    return check


def database_check() -> Check:
    def run() -> Check:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return Check(ok=True, detail={"vendor": connection.vendor})

    return _timed(run)


def broker_check() -> Check:
    """Open (and close) one connection to the Celery broker, with a short timeout."""

    def run() -> Check:
        from kombu import Connection

        url = settings.CELERY_BROKER_URL
        timeout = settings.READYZ_TIMEOUT_S
        options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS or {})
        if url.startswith("filesystem://"):
            folder = Path(options.get("data_folder_in", "."))
            if not folder.is_dir():
                return Check(ok=False, error="broker folder missing")
            return Check(ok=True, detail={"transport": "filesystem"})
        with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            transport = conn.transport_cls
        return Check(ok=True, detail={"transport": str(transport)})

    return _timed(run)


def model_check() -> Check:
    """The active model version (if any) and its artifact: manifest present, every file there at its size.

    Sizes, not checksums: this runs on every probe; the registry verifies checksums when it loads a version.
    With no version active yet the shop still serves (popular rails): ready, unless READYZ_REQUIRE_MODEL.
    """

    def run() -> Check:
        from shop.recs.models import ModelVersion

        version = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
        if version is None:
            if settings.READYZ_REQUIRE_MODEL:
                return Check(ok=False, error="no active model version")
            return Check(ok=True, detail={"version": None, "serving": "popular fallback until a model is trained"})
        path = Path(settings.MODEL_DIR) / "versions" / version
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            files = manifest["files"]
        except FileNotFoundError:
            return Check(ok=False, error=f"model {version}: manifest.json missing", detail={"version": version})
        except (ValueError, KeyError, TypeError):
            return Check(ok=False, error=f"model {version}: manifest.json unreadable", detail={"version": version})
        for name, meta in files.items():
            f = path / name
            if not f.is_file():
                return Check(ok=False, error=f"model {version}: {name} missing", detail={"version": version})
            if f.stat().st_size != meta.get("size"):
                return Check(ok=False, error=f"model {version}: {name} truncated", detail={"version": version})
        return Check(ok=True, detail={"version": version})

    return _timed(run)


def readiness() -> tuple[bool, dict[str, dict[str, Any]]]:
    checks = {"database": database_check(), "broker": broker_check(), "model": model_check()}
    return all(c.ok for c in checks.values()), {name: c.as_dict() for name, c in checks.items()}

"""Test servers: a throwaway PostgreSQL (pytest-postgresql) and Redis (pytest-redis) on free
loopback ports, started from the installed binaries and torn down after the session."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

import pytest
from pytest_postgresql import factories as pg_factories
from pytest_redis import factories as redis_factories

TESTS = Path(__file__).resolve().parent

# the Chromium fixtures (browser, page) for every browser test, one browser per session
pytest_plugins = ["tests.browser"]

postgresql_proc = pg_factories.postgresql_proc(
    executable=str(TESTS.parent / "scripts" / "pg_ctl"), host="127.0.0.1", port=None, dbname="shop"
)
redis_proc = redis_factories.redis_proc(
    executable=shutil.which("redis-server") or "/usr/bin/redis-server", host="127.0.0.1", port=None
)


@pytest.fixture(autouse=True)
def _no_pending_serving_counters():
    """Each process counts served recommendations in memory until a flush writes them; a test's counts,
    left unwritten, were written into a later test's figures by its flush (an order-dependent failure)."""
    yield
    stats = sys.modules.get("shop.recs.stats")  # nothing to drop where no test has loaded it
    if stats is not None:
        stats.serving_stats_forget()


@pytest.fixture(autouse=True)
def _no_sold_out_held():
    """Each process holds the sold-out products' ids for a few seconds; another test's catalog may reuse them."""
    stock = sys.modules.get("shop.catalog.stock")
    if stock is not None:
        stock.sold_out_forget()
    yield
    stock = sys.modules.get("shop.catalog.stock")
    if stock is not None:
        stock.sold_out_forget()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgresql_proc):
    """Point Django at the throwaway PostgreSQL before pytest-django creates the test database."""
    from django.conf import settings
    from django.db import connections

    db = settings.DATABASES["default"]
    # mutate in place: Django's connection handler already holds this very dict
    db.clear()
    db.update(
        {
            "ENGINE": "shop.ops.postgresql",
            "NAME": "shop",
            "USER": postgresql_proc.user,
            "PASSWORD": postgresql_proc.password or "",
            "HOST": postgresql_proc.host,
            "PORT": postgresql_proc.port,
            "CONN_MAX_AGE": 0,
            "ATOMIC_REQUESTS": False,
            "AUTOCOMMIT": True,
            "CONN_HEALTH_CHECKS": False,
            "OPTIONS": {},
            "TIME_ZONE": None,
            "TEST": {"NAME": "test_shop", "MIRROR": None, "CHARSET": None, "COLLATION": None, "MIGRATE": True},
        }
    )
    # drop the connection object built for the default (SQLite) engine so the next use builds one for PostgreSQL
    for conn in connections.all(initialized_only=True):
        conn.close()
    with contextlib.suppress(AttributeError):  # never opened yet: nothing to drop
        del connections["default"]

"""The PostgreSQL backend's per-request connection check (``shop/ops/postgresql``): no ``SELECT 1`` round trip
on a healthy connection, and a connection the server closed is still replaced before a request uses it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, connections

from shop.ops.postgresql.base import socket_quiet
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checks(monkeypatch, request):
    """Health checks on for this thread's connection (the deployed settings), each ``SELECT 1`` counted."""
    if connection.vendor != "postgresql":
        pytest.skip("the check is PostgreSQL's")
    wrapper = connections["default"]
    assert type(wrapper).__module__ == "shop.ops.postgresql.base"  # the tests run the deployed backend
    calls: list[int] = []
    real = wrapper.is_usable
    monkeypatch.setattr(wrapper, "is_usable", lambda: calls.append(1) or real())
    monkeypatch.setitem(wrapper.settings_dict, "CONN_HEALTH_CHECKS", True)  # a connection opened in the test
    enabled = wrapper.health_check_enabled
    wrapper.health_check_enabled = True  # the one open now
    request.addfinalizer(lambda: setattr(wrapper, "health_check_enabled", enabled))
    return calls


def _other_connection():
    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"] or None, dbname=s["NAME"],
        autocommit=True,
    )  # fmt: skip


def _page(client, path):
    connection.health_check_done = False  # a new request on a persistent connection (what Django does)
    # a shopper whose cart has been seen with lines: the page's one statement is the header's cart read
    client.cookies["cart_hint"] = "1"
    return client.get(path)


def test_a_request_on_a_healthy_connection_sends_no_select_1(client, checks):
    """A category page's only statement is the header's cart read (a shopper with a cart); Django's check sent a
    ``SELECT 1`` before it on every request (two round trips for one statement). Now the socket is asked instead."""
    category = CategoryFactory(name="Pantry", slug="pantry")
    ProductFactory(category=category)
    client.get("/")  # a visitor, and the connection opened
    for _ in range(3):
        assert _page(client, f"/c/{category.slug}/").status_code == 200
    assert checks == []


def test_a_connection_the_server_closed_is_replaced_before_the_request_uses_it(client, checks):
    category = CategoryFactory(name="Pantry", slug="pantry")
    ProductFactory(category=category)
    assert _page(client, f"/c/{category.slug}/").status_code == 200
    old_pid = connection.connection.info.backend_pid
    with _other_connection() as other:  # waits (up to 5 s) until the backend has gone
        assert other.execute("SELECT pg_terminate_backend(%s, 5000)", [old_pid]).fetchone()[0]
    assert _page(client, f"/c/{category.slug}/").status_code == 200
    assert checks == [1]  # the socket was not quiet: Django's own check ran, failed and reconnected
    assert connection.connection.info.backend_pid != old_pid


def test_only_an_idle_open_connection_with_nothing_to_read_is_quiet():
    if connection.vendor != "postgresql":
        pytest.skip("the check is PostgreSQL's")
    with _other_connection() as conn:
        assert socket_quiet(conn)
        conn.autocommit = False
        conn.execute("SELECT 1")
        assert not socket_quiet(conn)  # a transaction left open: Django's check decides
        conn.rollback()
        assert socket_quiet(conn)
        conn.autocommit = True
        with _other_connection() as killer:
            pid = conn.info.backend_pid
            assert killer.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]
        assert not socket_quiet(conn)  # the server's last words and end of file are waiting
    assert not socket_quiet(conn)  # closed

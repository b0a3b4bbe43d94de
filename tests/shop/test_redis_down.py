"""Redis (cache and broker) stopped for real: the storefront keeps answering from the database, the
throttles let requests through, and a run started meanwhile is kept "to send" and sent once Redis is back.
Redis is the session's pytest-redis server, stopped by a fixture that always starts it again."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from celery import Celery

from shop.cache import cache_breakers, cache_breakers_reset
from shop.events.middleware import visitor_cookie_value
from shop.recs import runs
from shop.recs.models import TaskRun
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

PAGES_API = ("/api/recommendations", {"placement": "home.recommended", "k": 4})


class RedisSwitch:
    def __init__(self, proc) -> None:
        self.proc = proc

    def stop(self) -> None:
        self.proc.stop()

    def start(self) -> None:
        if not self.proc.running():
            self.proc.start()


@pytest.fixture
def redis_switch(redis_proc):
    """Stop and start the real Redis during a test; it is running again afterwards whatever happened."""
    switch = RedisSwitch(redis_proc)
    try:
        yield switch
    finally:
        switch.start()


@pytest.fixture
def redis_cache(settings, redis_proc):
    """The shop's cache on the real Redis, configured as the settings do for ``CACHE_URL=redis://``."""
    settings.CACHES = {
        "default": {
            "BACKEND": "shop.cache.DegradingRedisCache",
            "LOCATION": f"redis://{redis_proc.host}:{redis_proc.port}/1",
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.5, "BREAKER_S": 0.3},
        }
    }
    redis.Redis(host=redis_proc.host, port=redis_proc.port, db=1).flushdb()
    cache_breakers_reset()  # an outage in an earlier test left its breaker open for a moment
    from django.core.cache import cache

    yield cache
    cache.close()


def test_the_settings_use_the_degrading_cache_for_a_redis_url(monkeypatch):
    import importlib

    import shop.settings.base as base

    monkeypatch.setenv("CACHE_URL", "redis://127.0.0.1:6399/1")
    monkeypatch.setenv("SECRET_KEY", "test-only-key")
    try:
        reloaded = importlib.reload(base)
        cfg = reloaded.CACHES["default"]
        assert cfg["BACKEND"] == "shop.cache.DegradingRedisCache"
        assert cfg["OPTIONS"]["socket_connect_timeout"] <= 0.5 and cfg["OPTIONS"]["BREAKER_S"] > 0
    finally:
        monkeypatch.undo()
        importlib.reload(base)


def test_the_cache_works_while_up_misses_and_drops_while_down_and_recovers(redis_cache, redis_switch):
    cache = redis_cache
    cache.set("k", "v", 60)
    assert cache.get("k") == "v" and cache.add("k", "x", 60) is False
    breaker = cache_breakers()[cache._location]
    errors, skipped = breaker.errors, breaker.skipped

    redis_switch.stop()
    t0 = time.perf_counter()
    for _ in range(50):
        assert cache.get("k") is None  # a miss, not an exception
        assert cache.set("k2", "v2", 60) is None  # dropped
        assert cache.add("k3", "v3", 60) is False
        assert cache.get_many(["k", "k2"]) == {}
    assert cache.get_or_set("k4", "computed", 60) == "computed"
    with pytest.raises(ValueError):
        cache.incr("k")
    assert time.perf_counter() - t0 < 2.0, "each call waited for a connect timeout: the breaker did not open"
    assert breaker.errors > errors  # counted
    assert breaker.skipped > skipped  # most calls never touched the network

    redis_switch.start()
    time.sleep(0.4)  # the breaker lets one call through again
    cache.set("k", "back", 60)
    assert cache.get("k") == "back"
    assert not (breaker.open_until and breaker.open_until > time.monotonic())


@pytest.fixture
def storefront():
    category = CategoryFactory()
    products = [ProductFactory(category=category) for _ in range(6)]
    return category, products


def test_pages_answer_while_redis_is_down(client, redis_cache, redis_switch, storefront):
    category, products = storefront
    urls = ["/", products[0].get_absolute_url(), category.get_absolute_url()]
    for url in urls:
        assert client.get(url).status_code == 200, url
    redis_switch.stop()
    for _ in range(3):
        for url in urls:
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code)
        r = client.get(*PAGES_API)
        assert r.status_code == 200, r.content
        assert r.json()["items"]


def test_throttles_count_while_up_and_let_requests_through_while_down(client, settings, redis_cache, redis_switch):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "recs": "3/min", "recs_ip": "1000/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    CategoryFactory()
    client.cookies["vid"] = visitor_cookie_value(uuid.uuid4())  # one visitor's bucket from the first request
    statuses = [client.get(*PAGES_API).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # Redis up: the bucket is counted there

    redis_switch.stop()
    statuses = [client.get(*PAGES_API).status_code for _ in range(6)]
    assert statuses == [200] * 6  # down: not throttled, not failed


@pytest.fixture
def redis_broker(redis_proc, monkeypatch, settings):
    """The shop's task sends go to a Celery app on the real Redis (db 0)."""
    url = f"redis://{redis_proc.host}:{redis_proc.port}/0"
    app = Celery("test-outbox", broker=url, set_as_current=False)
    app.conf.broker_connection_timeout = 0.5
    app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}
    monkeypatch.setattr(runs, "current_app", app)
    settings.RECS_OUTBOX_RETRY_S = 0  # the test drains by hand (the retry thread calls the same function)
    client = redis.Redis(host=redis_proc.host, port=redis_proc.port, db=0)
    client.flushdb()
    yield client
    app.close()


def _queued_task_ids(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)]


def test_a_run_started_while_the_broker_is_down_is_kept_and_sent_when_it_returns(
    redis_broker, redis_switch, django_capture_on_commit_callbacks
):
    redis_switch.stop()
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.task_run_start(kind=TaskRun.Kind.EXPORT, trigger="broker down")  # no exception
    run.refresh_from_db()
    assert (run.state, run.stage) == (TaskRun.State.PENDING, runs.TO_SEND)
    assert runs.task_runs_send_pending() == 1  # still down: kept

    redis_switch.start()
    assert runs.task_runs_send_pending() == 0
    run.refresh_from_db()
    assert (run.state, run.stage) == (TaskRun.State.PENDING, "queued")
    assert _queued_task_ids(redis_broker) == [str(run.id)]  # the task id is the run id, sent once
    assert runs.task_runs_send_pending() == 0 and _queued_task_ids(redis_broker) == [str(run.id)]


def test_a_run_started_while_the_broker_is_up_is_sent_at_once(redis_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.task_run_start(kind=TaskRun.Kind.EXPORT, trigger="broker up")
    run.refresh_from_db()
    assert run.stage == "queued" and _queued_task_ids(redis_broker) == [str(run.id)]

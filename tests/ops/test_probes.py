"""/healthz, /readyz and /metrics against the real test PostgreSQL and a real Redis broker."""

from __future__ import annotations

import socket

import pytest
import torch

from recommender.registry import Registry
from shop.recs.models import ModelVersion, ScoreSet, ServingPointer
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(settings, redis_proc):
    settings.CELERY_BROKER_URL = f"redis://{redis_proc.host}:{redis_proc.port}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    return settings.CELERY_BROKER_URL


@pytest.fixture
def model_dir(settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _register_version(model_dir) -> ModelVersion:
    version = Registry(model_dir).register(
        weights=torch.nn.Linear(3, 1), vocabularies={}, config={}, metrics={"auc": 0.7}
    )
    return ModelVersion.objects.create(version=version, is_active=True, status=ModelVersion.Status.ACTIVE)


def test_healthz_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert "no-cache" in r["Cache-Control"] or "max-age=0" in r["Cache-Control"]


def test_readyz_ok_with_database_broker_and_no_model_yet(client, broker, model_dir):
    r = client.get("/readyz")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert body["checks"]["database"]["ok"] and body["checks"]["database"]["detail"]["vendor"] == "postgresql"
    assert body["checks"]["broker"]["ok"] and "redis" in body["checks"]["broker"]["detail"]["transport"].lower()
    assert body["checks"]["model"]["detail"]["version"] is None


def test_readyz_503_names_the_broker_when_redis_is_down(client, settings, model_dir):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.READYZ_TIMEOUT_S = 1.0
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable" and body["failing"] == ["broker"]
    assert body["checks"]["broker"]["error"]  # the kind of failure, no URL
    assert "127.0.0.1" not in r.content.decode()


def test_readyz_requires_a_model_when_told_to(client, broker, model_dir, settings):
    settings.READYZ_REQUIRE_MODEL = True
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["failing"] == ["model"]
    assert r.json()["checks"]["model"]["error"] == "no active model version"
    mv = _register_version(model_dir)
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["model"]["detail"]["version"] == mv.version


def test_readyz_503_when_the_active_models_artifact_is_damaged(client, broker, model_dir):
    mv = _register_version(model_dir)
    assert client.get("/readyz").status_code == 200
    weights = model_dir / "versions" / mv.version / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:10])
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["failing"] == ["model"]
    assert r.json()["checks"]["model"]["error"] == f"model {mv.version}: weights.pt truncated"
    weights.unlink()
    assert client.get("/readyz").json()["checks"]["model"]["error"] == f"model {mv.version}: weights.pt missing"


def test_readyz_and_healthz_refuse_writes(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


# ------------------------------------------------------------------------------------------- /metrics


def test_metrics_forbidden_to_an_anonymous_outside_address(client):
    r = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert r.status_code == 403
    assert b"shop_" not in r.content
    # a forged forwarding header does not help
    r = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert r.status_code == 403


def test_metrics_for_allowed_network_token_and_staff(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "s3cret-token-for-prometheus"
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # loopback no longer listed
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token-for-prometheus", **outside).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="s3cret-token-for-prometheus", **outside).status_code == 403
    client.force_login(UserFactory(is_staff=False))
    assert client.get("/metrics", **outside).status_code == 403
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/metrics", **outside).status_code == 200


def test_metrics_show_request_latency_per_view_and_the_model_versions_served(client, model_dir):
    for _ in range(3):
        client.get("/healthz")
    mv = _register_version(model_dir)
    ss = ScoreSet.objects.create(model_version=mv, status=ScoreSet.Status.COMPLETE)
    ServingPointer.objects.create(id=1, score_set=ss)
    r = client.get("/metrics")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain")
    text = r.content.decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("django_http_requests_latency_seconds_by_view_method_count") and 'view="ops:healthz"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert f'shop_model_version_info{{role="active",version="{mv.version}"}} 1.0' in text
    assert f'shop_model_version_info{{role="batch",version="{mv.version}"}} 1.0' in text
    assert "shop_model_version_scrape_ok 1.0" in text
    for name in ("shop_events_ingested_total", "shop_task_duration_seconds", "shop_recs_stage_latency_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_metric_helpers_record_what_live_serving_reports(client):
    from shop.ops import metrics

    def sample(name: str, **labels) -> float:
        from prometheus_client import REGISTRY

        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("shop_recs_stage_latency_seconds_count", stage="rank")
    fallbacks = sample("shop_recs_fallbacks_total", reason="no_history")
    metrics.recs_stages({"retrieve": 0.002, "rank": 0.010, "rules": 0.0001})
    metrics.recs_fallback("no_history")
    metrics.recs_served("live")
    assert sample("shop_recs_stage_latency_seconds_count", stage="rank") == before + 1
    assert sample("shop_recs_fallbacks_total", reason="no_history") == fallbacks + 1
    text = client.get("/metrics").content.decode()
    assert 'shop_recs_fallbacks_total{reason="no_history"}' in text
    assert 'shop_recs_stage_latency_seconds_bucket{le="0.01",stage="rank"}' in text


def test_events_ingested_counts_stored_events_not_replays():
    import uuid

    from prometheus_client import REGISTRY

    from shop.events.services import event_record
    from tests.factories import ProductFactory

    product = ProductFactory()
    visitor = uuid.uuid4()
    before = REGISTRY.get_sample_value("shop_events_ingested_total") or 0.0
    assert event_record(visitor_id=visitor, user=None, type="view", product_id=product.pk, idempotency_key="k1")
    assert not event_record(visitor_id=visitor, user=None, type="view", product_id=product.pk, idempotency_key="k1")
    assert event_record(visitor_id=visitor, user=None, type="view", product_id=product.pk, idempotency_key="k2")
    assert REGISTRY.get_sample_value("shop_events_ingested_total") == before + 2


def test_each_served_rail_feeds_the_prometheus_counters_and_stage_latencies(client):
    from prometheus_client import REGISTRY

    from shop.recs.stats import serving_record, serving_stats_flush

    def v(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    live, fallback = v("shop_recs_served_total", source="live"), v("shop_recs_fallbacks_total", reason="no_model")
    rank = v("shop_recs_stage_latency_seconds_count", stage="rank")
    serving_record(placement="home.recommended", arm="dlrm", source="live", reason="", model_version="v0001",
                   timings_ms={"retrieve": 1.5, "rank": 4.0, "total": 6.0})  # fmt: skip
    serving_record(placement="home.recommended", arm="dlrm", source="popular", reason="no_model", model_version=None,
                   timings_ms={"popularity": 0.4, "total": 0.6})  # fmt: skip
    assert v("shop_recs_served_total", source="live") == live + 1
    assert v("shop_recs_fallbacks_total", reason="no_model") == fallback + 1
    assert v("shop_recs_stage_latency_seconds_count", stage="rank") == rank + 1
    assert v("shop_recs_stage_latency_seconds_bucket", stage="rank", le="0.005") >= 1  # 4 ms, in seconds
    assert 'shop_recs_served_total{source="popular"}' in client.get("/metrics").content.decode()
    serving_stats_flush()  # into this test's database, not a later test's serving counters


def test_made_up_http_methods_do_not_grow_the_request_metrics(client):
    """Each label value is a new series kept for the life of the process (and a file entry in multi-process
    mode): a client that sends a new method name with each request must not be able to grow them without limit."""
    from prometheus_client import REGISTRY

    def series() -> set[tuple]:
        return {
            tuple(sorted(s.labels.items()))
            for metric in REGISTRY.collect()
            if metric.name.startswith("django_http_")
            for s in metric.samples
        }

    client.generic("BREW1", "/healthz")  # the first one may add the "unknown method" series
    before = series()
    for i in range(2, 30):
        r = client.generic(f"BREW{i}", "/healthz")
        assert r.status_code == 405
    assert not any(dict(labels).get("method", "").startswith("BREW") for labels in series())
    assert series() == before
    text = client.get("/metrics").content.decode()
    assert 'method="BREW' not in text
    # still counted, as one series
    assert 'django_http_requests_latency_seconds_by_view_method_count{method="OTHER",view="ops:healthz"}' in text
    assert 'django_http_responses_total_by_status_total{status="405"}' in text

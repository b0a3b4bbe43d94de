"""A seeded shop behind a real HTTP server (pytest-django's live_server) for the console's tests: the
console reads it exactly as it reads a running shop, through ``CONSOLE_API_URL``."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone

from shop.events.models import EventType
from shop.orders.models import OrderStatus
from shop.recs.models import AcceleratorBenchmark, ModelVersion
from tests.factories import EventFactory, OrderFactory, ProductFactory, UserFactory, VisitorFactory

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
PASSWORD = "console-pass-1"


@pytest.fixture(autouse=True)
def _fast_hashing_and_fresh_cache(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@dataclass
class Accounts:
    staff: object  # staff, may read the console, may not promote
    merchant: object  # staff with recs.change_modelversion
    shopper: object  # a customer account


@pytest.fixture
def accounts(db) -> Accounts:
    staff = UserFactory(username="staffer", password=PASSWORD, is_staff=True)
    merchant = UserFactory(username="merchant", password=PASSWORD, is_staff=True)
    merchant.user_permissions.add(
        Permission.objects.get(codename="change_modelversion", content_type__app_label="recs")
    )
    shopper = UserFactory(username="shopper", password=PASSWORD)
    return Accounts(staff=staff, merchant=merchant, shopper=shopper)


@dataclass
class Seeded:
    visitors: int
    sessions: int
    impressions: int
    clicks: int
    purchasers: int
    orders: int
    revenue: Decimal
    events: int


@pytest.fixture
def seeded(db) -> Seeded:
    """Four visitors in the last hour (one with two visits), impressions, clicks, a purchase and two orders
    (one cancelled); plus an old event and an old order outside every window the tests ask for."""
    now = timezone.now()
    products = [ProductFactory(name=f"Seeded product {i}") for i in range(4)]
    visitors = [VisitorFactory() for _ in range(4)]
    n = 0

    def ev(visitor, minutes_ago: float, type_=EventType.VIEW, product=0, **kw):
        nonlocal n
        n += 1
        return EventFactory(
            visitor=visitor,
            product=products[product],
            type=type_,
            occurred_at=now - dt.timedelta(minutes=minutes_ago),
            **kw,
        )

    for i, v in enumerate(visitors):
        for pos in range(3):
            ev(v, 50 - i, EventType.IMPRESSION, product=pos, placement="home", position=pos + 1, arm="dlrm")
    ev(visitors[0], 45, EventType.CLICK, placement="home", position=1, arm="dlrm")
    ev(visitors[1], 44, EventType.CLICK, placement="home", position=2, arm="dlrm")
    ev(visitors[0], 40, EventType.ADD_TO_CART, product=1)
    ev(visitors[0], 4, EventType.PURCHASE, product=1)  # 36 idle minutes: a second visit
    ev(visitors[2], 30, EventType.VIEW, product=3)
    order = OrderFactory(visitor=visitors[0], total=Decimal("42.50"), placed_at=now - dt.timedelta(minutes=4))
    OrderFactory(
        visitor=visitors[1],
        total=Decimal("10.00"),
        status=OrderStatus.CANCELLED,
        placed_at=now - dt.timedelta(minutes=20),
    )
    OrderFactory(visitor=visitors[3], total=Decimal("99.00"), placed_at=now - dt.timedelta(days=3))
    EventFactory(visitor=visitors[3], product=products[0], occurred_at=now - dt.timedelta(days=3))
    assert order.total == Decimal("42.50")
    return Seeded(
        visitors=4,
        sessions=5,
        impressions=12,
        clicks=2,
        purchasers=1,
        orders=1,
        revenue=Decimal("42.50"),
        events=n,
    )


BENCH_RESULTS = {
    "machine": {"cpu": "Test CPU", "cores": 2, "cuda": None, "torch": "2.13.0"},
    "quick": True,
    "shape": {"items": 1000, "users": 2000},
    "floors": {
        "cpu/threads=1": {
            "copy_bytes": 1,
            "memory_bandwidth_gb_s": 9.5,
            "matmul_big_n": 1024,
            "matmul_big_gflop_s": 80.0,
            "matmul_mlp_4096x128x128_gflop_s": 60.0,
        }
    },
    "cells": [
        {
            "device": "cpu",
            "precision": prec,
            "threads": 1,
            "batch": batch,
            "path": path,
            "p50_ms": p50 * (3 if path == "baseline" else 1),
            "p95_ms": p50 * (4 if path == "baseline" else 1.5),
            "p99_ms": p50 * (5 if path == "baseline" else 2),
            "scores_per_s": batch / (p50 / 1e3),
            "embedding_p50_ms": p50 * 0.6,
            "mlp_p50_ms": p50 * 0.4,
            "cpu_ms_per_call": p50,
            "iters": 30,
        }
        for prec, scale in (("fp32", 1.0), ("int8", 0.8))
        for batch, p50 in ((1, 0.2 * scale), (200, 0.9 * scale))
        for path in ("reuse", "baseline")
    ],
    "targets": {},
    "int8_agreement": {"users": 5, "candidates": 500, "top10_overlap_mean": 0.9},
}

SWEEP = {
    "users": 300,
    "catalogue": 800,
    "valid_auc": 0.7,
    "train_seconds": 3.0,
    "precision": "fp32",
    "threads": 1,
    "rows": [
        {
            "setting": s,
            "n_candidates": float(n),
            "recall_at_10": r,
            "ndcg_at_10": r / 2,
            "p50_ms": p,
            "p99_ms": p * 2,
            "model_p50_ms": p / 3,
            "model_p99_ms": p / 2,
        }
        for s, n, r, p in (("retrieval-only@400", 400, 0.10, 0.5), ("50", 50, 0.12, 1.0), ("400", 400, 0.16, 4.0))
    ],
}


@pytest.fixture
def bench_rows(db, settings, tmp_path):
    settings.BENCH_DIR = tmp_path / "bench"
    settings.BENCH_DIR.mkdir()
    (settings.BENCH_DIR / "pipeline_sweep.json").write_text(json.dumps(SWEEP))
    return AcceleratorBenchmark.objects.create(device="cpu", hostname="worker-1", results=BENCH_RESULTS)


@pytest.fixture
def model_versions(db):
    old = ModelVersion.objects.create(
        version="v0001",
        metrics={"auc": 0.71, "ndcg@10": 0.1, "recall@10": 0.2, "logloss": 0.6},
        gate_reasons=["no champion: the first model passes"],
        training_seconds=12.5,
        examples=1000,
        snapshot="snapshot-0001",
        device="cpu",
        status=ModelVersion.Status.RETIRED,
    )
    new = ModelVersion.objects.create(
        version="v0002",
        metrics={
            "auc": 0.74,
            "ndcg@10": 0.12,
            "recall@10": 0.22,
            "hr@10": 0.4,
            "ranked_users": 50,
            "logloss": 0.55,
            "best_sellers@10": 0.6,
            "distinct@10": 90,
            "training_rows": "stage-1 candidates",
            "exposure_weighting": {
                "power": 0.5,
                "positives": 88,
                "weight_min": 0.2454,
                "weight_max": 3.9077,
                "capped": 0,
            },
            "model_updates": 0,
            "baselines": {
                "popularity": {
                    "ndcg@10": 0.08,
                    "recall@10": 0.15,
                    "hr@10": 0.3,
                    "users": 50,
                    "best_sellers@10": 1.0,
                    "distinct@10": 10,
                },
                "retrieval_only": {
                    "ndcg@10": 0.1,
                    "recall@10": 0.2,
                    "hr@10": 0.36,
                    "users": 50,
                    "best_sellers@10": 0.4,
                    "distinct@10": 150,
                },
            },
            "holdout_gate": {
                "passed": True,
                "users": 40,
                "challenger_ndcg": 0.11,
                "popularity_ndcg": 0.07,
                "champion_ndcg": 0.1,
                "champion": "v0001",
            },
        },
        gate_reasons=["auc: candidate 0.7400 vs champion 0.7100 (tolerance 0.005) -> ok"],
        training_seconds=14.0,
        examples=1500,
        snapshot="snapshot-0002",
        device="cpu",
    )
    from shop.recs.training import model_version_activate

    model_version_activate(version=new)
    return old, new


def api_token(base_url: str, username: str) -> str:
    resp = httpx.post(f"{base_url}/api/auth/token", json={"username": username, "password": PASSWORD})
    resp.raise_for_status()
    return resp.json()["token"]


def api_get(base_url: str, path: str, token: str, **params) -> dict:
    resp = httpx.get(f"{base_url}{path}", params=params, headers={"Authorization": f"Token {token}"})
    resp.raise_for_status()
    return resp.json()


@dataclass
class ExperimentTraffic:
    key: str
    visitors_per_arm: int
    buyers: dict[str, int]


@pytest.fixture
def experiment_traffic(db) -> ExperimentTraffic:
    """The default three-arm experiment, started three days ago, with 40 visitors per arm over three days:
    impressions and clicks on the rail, cart adds, and 4 / 6 / 10 buyers in popularity / heuristic / dlrm."""
    return experiment_traffic_make({"popularity": 4, "heuristic": 6, "dlrm": 10})


@pytest.fixture
def experiment_traffic_control_unsold(db) -> ExperimentTraffic:
    """As ``experiment_traffic``, but nobody in control (popularity) has bought anything yet."""
    return experiment_traffic_make({"popularity": 0, "heuristic": 6, "dlrm": 10})


def experiment_traffic_make(buyers: dict[str, int]) -> ExperimentTraffic:
    from shop.experiments.models import Experiment
    from shop.experiments.selectors import experiment_current_get, running_experiment_forget
    from shop.experiments.services import experiment_ensure_default

    experiment_ensure_default()
    experiment = experiment_current_get()
    now = timezone.now()
    Experiment.objects.filter(pk=experiment.pk).update(started_at=now - dt.timedelta(days=3))
    running_experiment_forget()
    product = ProductFactory(name="Experiment product", price=Decimal("20.00"))
    per_arm = 40
    for arm, n_buy in buyers.items():
        for i in range(per_arm):
            visitor = VisitorFactory()
            when = now - dt.timedelta(days=2 - (i % 3), minutes=i)
            version = "v0002" if arm == "dlrm" else None
            for pos in range(4):
                EventFactory(
                    visitor=visitor,
                    product=product,
                    type=EventType.IMPRESSION,
                    placement="home",
                    position=pos + 1,
                    arm=arm,
                    model_version=version,
                    occurred_at=when,
                )
            if i % 4 == 0:
                EventFactory(
                    visitor=visitor,
                    product=product,
                    type=EventType.CLICK,
                    arm=arm,
                    model_version=version,
                    occurred_at=when + dt.timedelta(seconds=5),
                )
            if i < n_buy + 4:
                EventFactory(
                    visitor=visitor,
                    product=product,
                    type=EventType.ADD_TO_CART,
                    occurred_at=when + dt.timedelta(minutes=1),
                )
            if i < n_buy:
                later = when + dt.timedelta(minutes=3)
                EventFactory(visitor=visitor, product=product, type=EventType.PURCHASE, arm=arm, occurred_at=later)
                OrderFactory(visitor=visitor, total=Decimal("20.00") * (1 + i % 2), placed_at=later)
    return ExperimentTraffic(key=experiment.key, visitors_per_arm=per_arm, buyers=buyers)


@pytest.fixture
def serving_rows(db):
    """Serving counters for two arms this minute: dlrm served live (one slow request) and fell back twice."""
    from shop.recs.models import ServingStat

    minute = timezone.now().replace(second=0, microsecond=0)
    size = len(ServingStat.LATENCY_BUCKETS_MS) + 1

    def hist(**at_bound):
        h = [0] * size
        for bound, n in at_bound.items():
            h[ServingStat.LATENCY_BUCKETS_MS.index(int(bound.removeprefix("b")))] += n
        return h

    common = {"minute": minute, "placement": "home", "latency_ms_sum": 10.0, "latency_ms_max": 40.0}
    ServingStat.objects.bulk_create(
        [
            ServingStat(arm="dlrm", source="live", requests=98, latency_hist=hist(b5=97, b50=1), **common),
            ServingStat(
                arm="dlrm", source="popularity", reason="budget", requests=2, latency_hist=hist(b2=2), **common
            ),
            ServingStat(arm="popularity", source="popularity", requests=50, latency_hist=hist(b1=50), **common),
        ]
    )

"""The heuristic arm without a model: stage 1 fitted on the latest snapshot serves it before any DLRM
passes the gate, and the dlrm arm falls back (counted, reason ``no_model``)."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model

from shop.catalog.models import Product
from shop.events.models import Event
from shop.experiments.models import Experiment
from shop.experiments.selectors import running_experiment_forget
from shop.experiments.services import experiment_create, experiment_start
from shop.recs import cards, export, keys, live, serving, stats
from shop.recs.models import ModelVersion
from tests.worker.conftest import build_shop, recs_dirs  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

API = "/api/recommendations"


@pytest.fixture
def unranked(recs_dirs, settings):  # noqa: F811
    """A shop with a snapshot of its log and no model version at all."""
    settings.RECS_SERVING_LOAD = False  # no loader thread: the test calls what it would call
    settings.RECS_LATENCY_BUDGET_MS = 5000.0
    shop = build_shop(visitors=20, products=60)
    export.training_data_export()
    serving.serving_forget()
    cards.product_cards_forget()
    live.batch_serving_forget()
    stats.serving_stats_flush()
    yield shop
    serving.serving_forget()
    stats.serving_stats_flush()
    running_experiment_forget()


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("staff-stage1", password="pw-stage1-123", is_staff=True)
    client.force_login(user)
    return client


def _only(arm: str) -> None:
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    others = [(a, 0, False) for a in ("popularity", "heuristic", "dlrm") if a != arm]
    experiment_start(experiment=experiment_create(key=f"s1-{arm}", name=arm, arms=[(arm, 1, True), *others]))
    running_experiment_forget()


def _favourite_category(visitor) -> int:
    clicked = Event.objects.filter(visitor_id=visitor, type__in=["click", "purchase"]).values_list(
        "product__category_id", flat=True
    )
    return Counter(clicked).most_common(1)[0][0]


def test_heuristic_arm_serves_stage1_with_no_model_and_the_dlrm_arm_falls_back(unranked, staff_client):
    shop = unranked
    assert not ModelVersion.objects.exists()
    assert serving.serving_reload() is None and serving.serving_status().error == "no active model version"
    stage1 = serving.serving_stage1_reload()
    assert stage1 is not None and stage1.stage1_only and stage1.snapshot == export.snapshot_latest().name
    assert serving.serving_stage1_reload() is stage1  # same snapshot: not fitted again
    process = staff_client.get("/api/recs/serving-stats", {"minutes": 5}).json()["process"]
    assert process["model_version"] is None and process["stage1_snapshot"] == stage1.snapshot
    assert process["pid"] == os.getpid()

    visitor = shop.visitors[2]  # anonymous, with a history in the snapshot
    user = keys.user_key(visitor_id=visitor, user_id=None)
    _only("heuristic")
    expected = [
        [int(i) for i in stage1.pipeline.recommend(user, now=int(time.time()) + 1, k=8, use_model=False).item_ids]
    ]
    body = staff_client.get(API, {"placement": "home.recommended", "k": 8, "visitor_id": visitor}).json()
    expected.append(
        [int(i) for i in stage1.pipeline.recommend(user, now=int(time.time()) + 1, k=8, use_model=False).item_ids]
    )
    assert body["source"] == "live" and body["reason"] == "" and body["arm"] == "heuristic", body
    assert body["model_version"] is None and all(i["score"] is None for i in body["items"])
    ids = [i["product_id"] for i in body["items"]]
    assert len(ids) == 8 and ids in expected  # stage 1's own order through the rules
    fav = _favourite_category(visitor)
    in_fav = set(Product.objects.filter(category_id=fav).values_list("id", flat=True))
    assert sum(i in in_fav for i in ids) >= 4  # it follows what this visitor engaged with

    _only("dlrm")
    before = staff_client.get("/api/recs/serving-stats", {"minutes": 5}).json()["fallback_reasons"].get("no_model", 0)
    body = staff_client.get(API, {"placement": "home.recommended", "k": 8, "visitor_id": visitor}).json()
    assert body["arm"] == "dlrm" and body["source"] == "fallback" and body["reason"] == "no_model", body
    assert body["model_version"] is None and len(body["items"]) == 8
    reasons = staff_client.get("/api/recs/serving-stats", {"minutes": 5}).json()["fallback_reasons"]
    assert reasons["no_model"] == before + 1


def test_heuristic_arm_without_a_snapshot_falls_back_and_says_why(unranked, settings, staff_client):
    import shutil

    shutil.rmtree(settings.SNAPSHOT_DIR)
    assert serving.serving_stage1_reload() is None and serving.serving_stage1_error() == "no snapshot"
    _only("heuristic")
    body = staff_client.get(API, {"placement": "home.recommended", "k": 5, "visitor_id": unranked.visitors[2]}).json()
    assert body["source"] == "fallback" and body["reason"] == "no_snapshot" and len(body["items"]) == 5

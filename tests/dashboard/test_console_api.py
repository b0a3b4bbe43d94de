"""The console's endpoints: staff tokens, KPIs, model versions (promote / roll back), accelerator figures,
visitors. Who may call each, what they see, and bad input answered with a 4xx naming the field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from shop.recs.engine import training_note
from shop.recs.models import ModelVersion, TaskRun
from tests.dashboard.conftest import PASSWORD
from tests.worker.conftest import recs_dirs  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

STAFF_GETS = [
    "/api/console/me",
    "/api/console/overview",
    "/api/console/models",
    "/api/console/accelerator",
    "/api/console/visitors",
]


def _token_client(user) -> APIClient:
    c = APIClient()
    resp = c.post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json")
    assert resp.status_code == 200, resp.content
    c.credentials(HTTP_AUTHORIZATION=f"Token {resp.json()['token']}")
    return c


def test_token_is_issued_to_staff_only(accounts):
    c = APIClient()
    ok = c.post("/api/auth/token", {"username": "staffer", "password": PASSWORD}, format="json")
    assert ok.status_code == 200
    assert ok.json() == {
        "token": Token.objects.get(user=accounts.staff).key,
        "username": "staffer",
        "can_change_models": False,
    }
    merchant = c.post("/api/auth/token", {"username": "merchant", "password": PASSWORD}, format="json")
    assert merchant.json()["can_change_models"] is True

    refused = c.post("/api/auth/token", {"username": "shopper", "password": PASSWORD}, format="json")
    assert refused.status_code == 403
    assert "staff" in refused.json()["detail"]
    assert not Token.objects.filter(user=accounts.shopper).exists()


def test_token_bad_input_names_the_field_and_wrong_password_is_400(accounts):
    c = APIClient()
    missing = c.post("/api/auth/token", {"username": "staffer"}, format="json")
    assert missing.status_code == 400
    assert "password" in missing.json()
    wrong = c.post("/api/auth/token", {"username": "staffer", "password": "nope"}, format="json")
    assert wrong.status_code == 400
    assert not Token.objects.exists()


def test_token_endpoint_is_throttled(accounts, settings):
    rest = settings.REST_FRAMEWORK
    settings.REST_FRAMEWORK = {
        **rest,
        "DEFAULT_THROTTLE_RATES": {**rest["DEFAULT_THROTTLE_RATES"], "auth_token": "3/min"},
    }
    c = APIClient()
    codes = [
        c.post("/api/auth/token", {"username": "staffer", "password": "guess"}, format="json").status_code
        for _ in range(5)
    ]
    assert codes == [400, 400, 400, 429, 429]


def test_logout_revokes_the_token(accounts):
    c = _token_client(accounts.staff)
    assert c.get("/api/console/me").status_code == 200
    assert c.delete("/api/auth/token").status_code == 204
    assert c.get("/api/console/me").status_code == 401
    assert not Token.objects.filter(user=accounts.staff).exists()


@pytest.mark.parametrize("path", STAFF_GETS)
def test_console_reads_are_staff_only(accounts, path):
    anonymous = APIClient().get(path)
    assert anonymous.status_code in (401, 403)
    shopper = APIClient()
    shopper.force_authenticate(accounts.shopper)
    assert shopper.get(path).status_code == 403
    # a token made for a shopper some other way still opens nothing
    token = Token.objects.create(user=accounts.shopper)
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert c.get(path).status_code == 403
    assert _token_client(accounts.staff).get(path).status_code == 200


def test_token_of_a_user_who_lost_staff_stops_working(accounts):
    c = _token_client(accounts.staff)
    accounts.staff.is_staff = False
    accounts.staff.save()
    assert c.get("/api/console/overview").status_code == 403


def test_overview_counts_the_window(accounts, seeded):
    body = _token_client(accounts.staff).get("/api/console/overview", {"minutes": 60, "buckets": 12}).json()
    assert body["visitors"] == seeded.visitors
    assert body["sessions"] == seeded.sessions
    assert body["events"] == seeded.events
    assert body["impressions"] == seeded.impressions
    assert body["clicks"] == seeded.clicks
    assert body["ctr"] == pytest.approx(seeded.clicks / seeded.impressions)
    assert body["purchasers"] == seeded.purchasers
    assert body["conversion_rate"] == pytest.approx(seeded.purchasers / seeded.visitors)
    assert body["orders"] == seeded.orders
    assert Decimal(str(body["revenue"])) == seeded.revenue
    assert body["events_per_minute"] == pytest.approx(seeded.events / 60)
    series = body["series"]
    assert len(series) == 12
    assert sum(b["events"] for b in series) == seeded.events
    assert sum(b["sessions"] for b in series) == seeded.sessions
    assert sum(b["impressions"] for b in series) == seeded.impressions
    assert sum(Decimal(str(b["revenue"])) for b in series) == seeded.revenue
    # the purchase 4 minutes ago lands in the last 5-minute bucket, with its order
    assert series[-1]["purchasers"] == 1 and series[-1]["orders"] == 1
    assert series[-1]["events"] == 1


def test_overview_shorter_window_and_empty_window(accounts, seeded):
    c = _token_client(accounts.staff)
    ten = c.get("/api/console/overview", {"minutes": 10, "buckets": 2}).json()
    assert (ten["visitors"], ten["events"], ten["orders"], ten["sessions"]) == (1, 1, 1, 1)
    assert ten["ctr"] is None  # no impressions in the window: no rate, not zero


@pytest.mark.parametrize(
    ("params", "field"),
    [({"minutes": 0}, "minutes"), ({"minutes": "x"}, "minutes"), ({"buckets": 1000}, "buckets")],
)
def test_overview_bad_parameters_name_the_field(accounts, params, field):
    resp = _token_client(accounts.staff).get("/api/console/overview", params)
    assert resp.status_code == 400
    assert field in resp.json()


def test_models_list_marks_the_active_version(accounts, model_versions):
    body = _token_client(accounts.staff).get("/api/console/models").json()
    assert body["active"] == "v0002"
    assert body["can_change_models"] is False
    assert [v["version"] for v in body["versions"]] == ["v0002", "v0001"]
    assert body["versions"][0]["metrics"]["auc"] == 0.74
    assert body["versions"][0]["gate_reasons"][0].startswith("auc: candidate 0.7400")


def test_models_carry_quality_beside_the_baselines_and_the_gate_figures(accounts, model_versions):
    new, old = _token_client(accounts.staff).get("/api/console/models").json()["versions"]
    assert [(q["ranker"], q["ndcg_at_10"], q["recall_at_10"], q["hr_at_10"], q["users"]) for q in new["quality"]] == [
        ("model", 0.12, 0.22, 0.4, 50),
        ("retrieval_only", 0.1, 0.2, 0.36, 50),
        ("popularity", 0.08, 0.15, 0.3, 50),
    ]
    assert [q["ndcg_vs_popularity"] for q in new["quality"]] == pytest.approx([1.5, 1.25, 1.0])
    assert [(q["best_sellers_at_10"], q["distinct_at_10"]) for q in new["quality"]] == [
        (0.6, 90),
        (0.4, 150),
        (1.0, 10),
    ]
    assert new["gate"] == {
        "users": 40,
        "challenger_ndcg": 0.11,
        "popularity_ndcg": 0.07,
        "champion_ndcg": 0.1,
        "champion": "v0001",
    }
    # a version trained before baselines were stored: its own row only, no ratio, no gate figures
    assert [(q["ranker"], q["ndcg_at_10"], q["ndcg_vs_popularity"]) for q in old["quality"]] == [("model", 0.1, None)]
    assert (old["quality"][0]["best_sellers_at_10"], old["quality"][0]["distinct_at_10"]) == (None, None)
    assert old["gate"] is None


@pytest.mark.slow
@pytest.mark.usefixtures("recs_dirs")
def test_a_trained_version_stores_its_baselines_on_the_same_users(accounts):
    """A real (tiny) retrain: the version's ranking metrics and both baselines come from one holdout."""
    from shop.recs import execution, runs
    from tests.worker.conftest import build_shop

    build_shop(visitors=20, products=60)
    run = runs.task_run_start(kind=TaskRun.Kind.RETRAIN, enqueue=False)
    execution.task_run_execute(run_id=run.id)
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    version = _token_client(accounts.staff).get("/api/console/models").json()["versions"][0]
    rows = {q["ranker"]: q for q in version["quality"]}
    assert set(rows) == {"model", "retrieval_only", "popularity"}
    users = {q["users"] for q in rows.values()}
    assert len(users) == 1 and users.pop() > 0  # the same holdout users for every row
    for q in rows.values():
        assert 0.0 <= q["ndcg_at_10"] <= 1.0 and 0.0 <= q["recall_at_10"] <= 1.0
    assert rows["popularity"]["ndcg_vs_popularity"] == pytest.approx(1.0) or rows["popularity"]["ndcg_at_10"] == 0
    # the popular list is the best sellers, one list for everyone
    assert rows["popularity"]["best_sellers_at_10"] == 1.0 and rows["popularity"]["distinct_at_10"] <= 10
    for q in (rows["model"], rows["retrieval_only"]):
        assert 0.0 <= q["best_sellers_at_10"] <= 1.0 and q["distinct_at_10"] >= 1
    assert version["gate"]["users"] > 0
    # the ranker's rows were weighted by exposure (the shop logs impressions), and the version says how many
    # updates it kept after its start
    stored = ModelVersion.objects.get(version=version["version"]).metrics
    assert stored["training_rows"] == "stage-1 candidates"
    weighting = stored["exposure_weighting"]
    assert weighting["power"] == 0.5 and weighting["positives"] > 0
    assert 0 < weighting["weight_min"] < 1 < weighting["weight_max"] <= 10.0
    assert isinstance(stored["model_updates"], int) and stored["model_updates"] >= 0
    assert version["training"] == {
        "rows": "stage-1 candidates",
        "exposure_power": 0.5,
        **{k: weighting[k] for k in ("positives", "weight_min", "weight_max", "capped")},
        "model_updates": stored["model_updates"],
        "note": training_note(stored),
    }


def test_the_training_note_says_what_a_ranker_that_kept_no_update_ranks_by():
    # it starts from stage 1's order on candidate rows, untrained on pointwise rows; said only when it kept none
    kept_none = {"model_updates": 0, "training_rows": "stage-1 candidates"}
    assert training_note(kept_none) == "no update improved its validation loss: it ranks as stage 1's order does"
    assert training_note(kept_none | {"training_rows": "pointwise"}).endswith("its ranker is untrained")
    assert training_note(kept_none | {"model_updates": 40}) is None
    assert training_note({"training_rows": "stage-1 candidates"}) is None  # trained before the figure was stored
    assert training_note(None) is None


def test_promote_and_rollback_need_the_permission(accounts, model_versions):
    staff = _token_client(accounts.staff)
    assert staff.post("/api/console/models/v0001/promote").status_code == 403
    assert staff.post("/api/console/models/rollback").status_code == 403
    assert ModelVersion.objects.get(is_active=True).version == "v0002"


def test_promote_unknown_version_is_404(accounts, model_versions):
    resp = _token_client(accounts.merchant).post("/api/console/models/v9999/promote")
    assert resp.status_code == 404
    assert "v9999" in resp.json()["detail"]


def test_promote_a_version_whose_artifact_is_missing_is_409_and_changes_nothing(
    accounts, model_versions, settings, tmp_path
):
    settings.MODEL_DIR = tmp_path / "models"
    resp = _token_client(accounts.merchant).post("/api/console/models/v0001/promote")
    assert resp.status_code == 409
    assert "v0001" in resp.json()["detail"]
    assert ModelVersion.objects.get(is_active=True).version == "v0002"


def test_rollback_with_nothing_to_go_back_to_is_409(accounts, model_versions, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    resp = _token_client(accounts.merchant).post("/api/console/models/rollback")
    assert resp.status_code == 409


def test_benchmark_start_queues_one_run(accounts, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("shop.recs.runs.task_send", lambda **kw: sent.append(kw))
    c = _token_client(accounts.staff)
    first = c.post("/api/console/benchmark")
    assert first.status_code == 202
    second = c.post("/api/console/benchmark")
    assert second.status_code == 409
    assert second.json()["task_id"] == first.json()["task_id"]
    run = TaskRun.objects.get(pk=first.json()["task_id"])
    assert run.kind == TaskRun.Kind.BENCHMARK
    assert sent == [{"kind": TaskRun.Kind.BENCHMARK, "run_id": run.id}]


def test_accelerator_returns_the_latest_benchmark_per_device_and_the_sweep(accounts, bench_rows):
    from shop.recs.models import AcceleratorBenchmark

    AcceleratorBenchmark.objects.filter(pk=bench_rows.pk).update(device="cpu")
    older = AcceleratorBenchmark.objects.create(device="cpu", hostname="old", results={"cells": []})
    AcceleratorBenchmark.objects.filter(pk=older.pk).update(created_at=bench_rows.created_at.replace(year=2020))
    body = _token_client(accounts.staff).get("/api/console/accelerator").json()
    assert [b["hostname"] for b in body["benchmarks"]] == ["worker-1"]
    assert len(body["benchmarks"][0]["cells"]) == 8
    assert [r["setting"] for r in body["sweep"]["rows"]] == ["retrieval-only@400", "50", "400"]


def test_accelerator_with_nothing_stored(accounts, settings, tmp_path):
    settings.BENCH_DIR = tmp_path
    body = _token_client(accounts.staff).get("/api/console/accelerator").json()
    assert body == {"benchmarks": [], "sweep": None}


def test_visitors_and_their_history(accounts, seeded):
    c = _token_client(accounts.staff)
    visitors = c.get("/api/console/visitors", {"minutes": 60}).json()
    assert len(visitors) == 4
    first = visitors[0]  # the purchase 4 minutes ago is the latest event
    history = c.get(f"/api/console/visitors/{first['visitor_id']}/events").json()
    assert len(history) == first["events"] == 6
    assert history[0]["type"] == "purchase"
    assert [h["arm"] for h in history if h["type"] == "impression"] == ["dlrm"] * 3
    assert c.get("/api/console/visitors", {"limit": 0}).status_code == 400
    assert c.get(f"/api/console/visitors/{first['visitor_id']}/events", {"limit": "many"}).status_code == 400


def test_admin_links_to_the_console(client, accounts, settings):
    settings.CONSOLE_URL = "http://console.example:8501/"
    client.force_login(accounts.staff)
    page = client.get("/admin/")
    assert page.status_code == 200
    assert b'href="http://console.example:8501/"' in page.content
    assert b"Merchant console" in page.content


def test_guardrails_per_arm(accounts, serving_rows):
    c = _token_client(accounts.staff)
    rows = {r["arm"]: r for r in c.get("/api/console/guardrails", {"minutes": 5}).json()}
    assert rows["dlrm"] == {
        "arm": "dlrm",
        "requests": 100,
        "latency_ms_p50": 5.0,
        "latency_ms_p99": 5.0,
        "fallbacks": 2,
        "fallback_rate": 0.02,
    }
    assert rows["popularity"]["fallbacks"] == 0 and rows["popularity"]["latency_ms_p99"] == 1.0
    assert c.get("/api/console/guardrails", {"minutes": 0}).status_code == 400
    shopper = APIClient()
    shopper.force_authenticate(accounts.shopper)
    assert shopper.get("/api/console/guardrails").status_code == 403


def test_arm_preview_is_staff_only_and_not_counted(accounts, seeded, experiment_traffic):
    from shop.recs.models import ServingStat
    from shop.recs.stats import serving_stats_flush

    serving_stats_flush()
    before = ServingStat.objects.count()
    c = _token_client(accounts.staff)
    visitor = c.get("/api/console/visitors").json()[0]["visitor_id"]
    for arm in ("popularity", "heuristic", "dlrm"):
        body = c.get(
            "/api/recommendations", {"placement": "home.recommended", "k": 4, "visitor_id": visitor, "arm": arm}
        ).json()
        assert body["arm"] == arm
    assert serving_stats_flush() == 0 and ServingStat.objects.count() == before
    bad = c.get("/api/recommendations", {"placement": "home.recommended", "arm": "nope"})
    assert bad.status_code == 400 and "arm" in bad.json()
    anonymous = APIClient().get("/api/recommendations", {"placement": "home.recommended", "arm": "dlrm"})
    assert anonymous.status_code == 403 and "arm" in anonymous.json()


def test_promote_then_roll_back_moves_registry_and_database_together(
    accounts, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    from recommender.registry import Registry
    from shop.recs.training import model_version_activate
    from tests.model_artifacts import register_tiny

    sent = []
    monkeypatch.setattr("shop.recs.runs.task_send", lambda **kw: sent.append(kw["kind"]))
    settings.MODEL_DIR = tmp_path / "models"
    registry = Registry(settings.MODEL_DIR)
    ids = [register_tiny(registry, seed=i, metrics={"auc": 0.7 + i / 100}) for i in range(2)]
    registry.promote(ids[0])
    registry.promote(ids[1])  # v0002 serves, v0001 is in the registry's history
    rows = [ModelVersion.objects.create(version=v, metrics={}) for v in ids]
    model_version_activate(version=rows[1])

    c = _token_client(accounts.merchant)

    def post(path: str):
        with django_capture_on_commit_callbacks(execute=True):  # as the request's commit would
            return c.post(path)

    back = post("/api/console/models/rollback")
    assert back.status_code == 200, back.content
    assert back.json()["active"] == ids[0] and back.json()["previous"] == ids[1]
    assert registry.active() == ids[0]
    assert ModelVersion.objects.get(is_active=True).version == ids[0]
    assert ModelVersion.objects.get(version=ids[1]).status == ModelVersion.Status.RETIRED

    forward = post(f"/api/console/models/{ids[1]}/promote")
    assert forward.status_code == 200
    assert (forward.json()["active"], forward.json()["previous"]) == (ids[1], ids[0])
    assert registry.active() == ids[1]
    assert ModelVersion.objects.get(is_active=True).version == ids[1]
    # each switch queues a batch score (the second finds the first still queued: one run at a time)
    assert back.json()["batch_score_task"] is not None and forward.json()["batch_score_task"] is None
    assert sent == [TaskRun.Kind.BATCH_SCORE]
    again = post(f"/api/console/models/{ids[1]}/promote")
    assert again.status_code == 200 and again.json()["previous"] == ids[1]  # idempotent

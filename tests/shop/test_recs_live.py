"""Live recommendations: sources, arms, fresh events, faults and fallbacks, the API and the rails.

A tiny DLRM is trained for real on a small shop (``tests/worker/conftest.build_shop``); the serving model
is loaded by the same function the web process's loader thread calls.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from shop.catalog.models import Product
from shop.events.models import Event, EventType
from shop.experiments.models import Experiment
from shop.experiments.selectors import running_experiment_forget
from shop.experiments.services import experiment_create, experiment_start
from shop.recs import cards, execution, live, runs, serving, stats
from shop.recs.models import ModelVersion, TaskRun
from tests.factories import with_rails_after_load
from tests.worker.conftest import build_shop, recs_dirs, served_after_retrain  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

API = "/api/recommendations"


@pytest.fixture
def served(recs_dirs, settings, django_capture_on_commit_callbacks):  # noqa: F811
    """A shop with a trained, active model loaded for serving; no experiment running (arm: dlrm)."""
    settings.RECS_SERVING_LOAD = False  # no loader thread: the test loads (the same function it calls)
    settings.RECS_LATENCY_BUDGET_MS = 5000.0  # a cold CPU test box; the budget itself is tested below
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    running_experiment_forget()
    shop = build_shop(visitors=20, products=60)
    with django_capture_on_commit_callbacks(execute=False):  # no batch score queued: tests choose
        run = runs.task_run_start(kind=TaskRun.Kind.RETRAIN, enqueue=False)
        execution.task_run_execute(run_id=run.id)
    version = served_after_retrain(run.id)
    serving.serving_forget()
    cards.product_cards_forget()
    live.batch_serving_forget()
    model = serving.serving_reload()
    assert model is not None and model.version == version.version
    stats.serving_stats_flush()
    yield shop, version
    serving.serving_forget()
    stats.serving_stats_flush()
    running_experiment_forget()


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("staff-recs", password="pw-recs-123", is_staff=True)
    client.force_login(user)
    return client


def _get(client, **params):
    return client.get(API, params)


def test_live_list_for_an_active_visitor(served, staff_client):
    shop, version = served
    r = _get(staff_client, placement="home.recommended", k=10, visitor_id=shop.visitors[0])
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["source"] == "live" and body["reason"] == ""
    assert body["arm"] == "dlrm" and body["model_version"] == version.version
    assert len(body["items"]) == 10
    scores = [i["score"] for i in body["items"]]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    assert {"retrieve", "features", "rank", "rules", "db", "total"} <= set(body["latency_ms"])
    assert {i["product_id"] for i in body["items"]} <= set(shop.products)


def test_bad_input_names_the_field(served, client, staff_client):
    for params, field in [
        ({"placement": "nowhere", "k": 5}, "placement"),
        ({"k": 5}, "placement"),
        ({"placement": "home.recommended", "k": 0}, "k"),
        ({"placement": "home.recommended", "k": 101}, "k"),
        ({"placement": "home.recommended", "k": "many"}, "k"),
        ({"placement": "home.recommended", "visitor_id": "not-a-uuid"}, "visitor_id"),
        ({"placement": "home.recommended", "visitor_id": ""}, "visitor_id"),
        ({"placement": "home.recommended", "k": ""}, "k"),
        ({"placement": "home.recommended", "arm": ""}, "arm"),
    ]:
        r = staff_client.get(API, params)
        assert r.status_code == 400 and field in r.json(), (params, r.content)
    staff_client.logout()
    # another visitor's list is for staff only
    r = client.get(API, {"placement": "home.recommended", "visitor_id": str(served[0].visitors[0])})
    assert r.status_code == 403 and "visitor_id" in r.json()
    assert client.get(API, {"placement": "home.recommended", "k": 100}).status_code == 200


def _view_three_of_a_category(client, shop) -> set[int]:
    """Real product page views of three products of one category; returns that category's products."""
    cat = Product.objects.get(pk=shop.products[0]).category_id
    for p in Product.objects.filter(category_id=cat).order_by("id")[:3]:
        assert client.get(p.get_absolute_url()).status_code == 200
    return set(Product.objects.filter(category_id=cat).values_list("id", flat=True))


def test_a_newcomers_views_make_the_next_rail_live_without_retraining(served, client):
    shop, version = served
    # a newcomer: not in the snapshot, no activity -> nothing personal to rank on
    first = client.get(API, {"placement": "home.recommended", "k": 12}).json()
    assert first["source"] == "fallback" and first["reason"] == "no_activity"
    _view_three_of_a_category(client, shop)
    after = client.get(API, {"placement": "home.recommended", "k": 12}).json()
    assert after["source"] == "live" and after["model_version"] == version.version
    assert [i["product_id"] for i in after["items"]] != [i["product_id"] for i in first["items"]]
    assert ModelVersion.objects.count() == 1  # no retrain happened


def test_a_visitor_in_the_snapshot_but_not_in_stage_1s_users_is_ranked_live(served, staff_client, monkeypatch):
    """Stage 1 knows the users of the log the model was trained on; the snapshot may be newer. A visitor with
    snapshot events only is ranked on them (not answered with the popular list as if it had no activity)."""
    import pandas as pd

    shop, version = served
    pipe = serving.serving_model().pipeline
    monkeypatch.setattr(pipe, "user_index", pd.Index([]))  # trained before any of these visitors came
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=shop.visitors[3]).json()
    assert body["source"] == "live" and body["reason"] == "" and body["model_version"] == version.version
    unknown = _get(staff_client, placement="home.recommended", k=8, visitor_id=uuid.uuid4()).json()
    assert unknown["source"] == "fallback" and unknown["reason"] == "no_activity"


def test_a_view_reshapes_a_known_visitors_live_ranking(served, staff_client):
    from shop.events.services import event_record

    shop, _ = served
    vid = shop.visitors[4]
    before = _get(staff_client, placement="home.recommended", k=20, visitor_id=vid).json()
    assert before["source"] == "live"
    seen = {i["product_id"] for i in before["items"]}
    target = next(p for p in reversed(shop.products) if p not in seen)
    for n in range(3):  # what the product page and the cart record
        event_record(visitor_id=vid, user=None, type="view", product_id=target, idempotency_key=f"view:t{n}")
    after = _get(staff_client, placement="home.recommended", k=20, visitor_id=vid).json()
    assert after["source"] == "live"
    pairs = lambda body: [(i["product_id"], i["score"]) for i in body["items"]]  # noqa: E731
    assert pairs(after) != pairs(before)


def test_the_fresh_read_skips_impressions_so_earlier_views_still_count(served, settings):
    """A page records a view and a few dozen impressions. The fresh read takes the newest events that are not
    impressions (no model's history holds them), however many impressions are newer: first the newest
    RECS_FRESH_EVENTS of any type were read and the views of all but the last pages fell out; then at most
    5 x RECS_FRESH_EVENTS of the newest were looked through, and a burst of impressions still hid them."""
    from shop.events.services import event_record

    shop, _ = served
    settings.RECS_FRESH_EVENTS = 4
    vid = uuid.uuid4()
    model = serving.serving_model()
    viewed = shop.products[:2]
    for n, pid in enumerate(viewed):
        event_record(visitor_id=vid, user=None, type="view", product_id=pid, idempotency_key=f"view:f{n}")
        for i in range(6):  # the rails of that page
            event_record(
                visitor_id=vid,
                user=None,
                type="impression",
                product_id=shop.products[10 + i],
                idempotency_key=f"i:{n}:{i}",
            )
    reads = live._Reads()
    live._visitor_read(model=model, visitor_id=vid, user_id=None, reads=reads)
    assert [(pid, kind) for pid, kind, _, _ in reads.rows] == [(viewed[1], "view"), (viewed[0], "view")]

    for i in range(30):  # newer impressions, more than 5 x 4: the views are still read
        event_record(
            visitor_id=vid, user=None, type="impression", product_id=shop.products[20], idempotency_key=f"j:{i}"
        )
    reads = live._Reads()
    live._visitor_read(model=model, visitor_id=vid, user_id=None, reads=reads)
    assert [(pid, kind) for pid, kind, _, _ in reads.rows] == [(viewed[1], "view"), (viewed[0], "view")]

    more = shop.products[2:7]
    for n, pid in enumerate(more):  # five newer views: the newest 4 interests are read, no more
        event_record(visitor_id=vid, user=None, type="view", product_id=pid, idempotency_key=f"view:g{n}")
    reads = live._Reads()
    live._visitor_read(model=model, visitor_id=vid, user_id=None, reads=reads)
    assert [pid for pid, _, _, _ in reads.rows] == list(reversed(more))[:4]


def test_the_fresh_read_walks_the_index_without_impressions(served):
    """The read is served by the partial index that leaves impressions out, so its walk is as long as what it
    returns; with the (visitor, occurred_at) index of every event it would walk past every impression.

    Planned on the log this is about: impressions since the snapshot far outnumber a visitor's interests. The
    statistics are taken here (ANALYZE in the test's own transaction, as autovacuum would on a running shop):
    the plan must not hang on when autovacuum last looked at a table other tests filled and emptied. (Left to
    that, a CI run once planned a walk of the time index, on statistics of some earlier test's rows.)"""
    if connection.vendor != "postgresql":
        pytest.skip("the plan of PostgreSQL's fresh read")
    shop, _ = served
    model = serving.serving_model()
    user = get_user_model().objects.create_user("plan-shopper", password="pw-plan-123")
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            idempotency_key=f"plan-impression-{i}",
            visitor_id=shop.visitors[i % 10],
            user=user if i % 2 else None,
            product_id=shop.products[i % len(shop.products)],
            type=EventType.IMPRESSION,
            placement="home.recommended",
            position=1 + i % 8,
            occurred_at=now - dt.timedelta(seconds=i),
        )
        for i in range(4_000)  # 400 a visitor, half of them the user's, all after the snapshot
    )
    plans = {}
    with connection.cursor() as cur:
        cur.execute("ANALYZE events_event")
        live.statements_prepare(cur)
        cur.execute("SET enable_seqscan = off")  # a test table is small enough for a sequential scan
        try:
            # a prepared statement's first runs are planned for their values, later ones by its generic plan
            for mode in ("force_custom_plan", "force_generic_plan"):
                cur.execute(f"SET plan_cache_mode = {mode}")
                for who, user_id in (("visitor", None), ("user", user.pk)):
                    read = live._reads_sql(model=model, visitor_id=shop.visitors[1], user_id=user_id, cart=False)
                    cur.execute("EXPLAIN " + read[-1])
                    plans[mode, who] = "\n".join(r[0] for r in cur.fetchall())
        finally:
            cur.execute("RESET enable_seqscan")
            cur.execute("RESET plan_cache_mode")
    for mode in ("force_custom_plan", "force_generic_plan"):
        assert "event_visitor_interest_idx" in plans[mode, "visitor"], plans
        assert "event_user_interest_idx" in plans[mode, "user"], plans


def test_the_fresh_read_is_prepared_once_per_connection_and_survives_losing_it(served):
    """The read runs statements prepared once per database connection (planning each read cost more than
    running it). A later read on the same connection prepares nothing; statements deallocated behind the
    process's back are prepared again within the same read, which still answers."""
    from django.test.utils import CaptureQueriesContext

    from shop.events.services import event_record

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's prepared statements")
    shop, _ = served
    model = serving.serving_model()
    vid = uuid.uuid4()
    user = get_user_model().objects.create_user("prepared-shopper", password="pw-prep-123")
    event_record(visitor_id=vid, user=None, type="view", product_id=shop.products[3], idempotency_key="view:p1")
    event_record(
        visitor_id=uuid.uuid4(), user=user, type="view", product_id=shop.products[4], idempotency_key="view:p2"
    )

    def read(user_id=None) -> tuple[list[int], list[str]]:
        with CaptureQueriesContext(connection) as sent:
            reads = live._Reads()
            live._visitor_read(model=model, visitor_id=vid, user_id=user_id, reads=reads)
        kinds = [word for q in sent.captured_queries for word in ("PREPARE", "EXECUTE") if word in q["sql"]]
        return [r[0] for r in reads.rows], kinds

    def session_has() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'shop_recs_%%'")
            return cur.fetchone()[0]

    with connection.cursor() as cur:
        cur.execute("DEALLOCATE ALL")
    live._prepared_on.discard(connection.connection)  # as a new connection
    assert read() == ([shop.products[3]], ["PREPARE", "EXECUTE"])
    assert session_has() == len(live.PREPARED)
    assert read() == ([shop.products[3]], ["EXECUTE"])
    assert read(user.pk) == ([shop.products[4]], ["EXECUTE"])

    with connection.cursor() as cur:
        cur.execute("DEALLOCATE ALL")  # behind the process's back (as a pooler's DISCARD ALL would)
    assert read() == ([shop.products[3]], ["EXECUTE", "PREPARE", "EXECUTE"])
    assert session_has() == len(live.PREPARED)

    with connection.cursor() as cur:
        cur.execute("DEALLOCATE shop_recs_fresh_user")  # a session that has some of them is completed
    live._prepared_on.discard(connection.connection)
    assert read(user.pk) == ([shop.products[4]], ["PREPARE", "EXECUTE"])
    assert session_has() == len(live.PREPARED)


def test_heuristic_rail_follows_the_category_just_browsed(served, client):
    shop, _ = served
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    experiment_start(
        experiment=experiment_create(key="heur", name="h", arms=[("heuristic", 1, True), ("dlrm", 0, False)])
    )
    running_experiment_forget()
    before = client.get(API, {"placement": "home.recommended", "k": 8}).json()
    in_cat = _view_three_of_a_category(client, shop)
    after = client.get(API, {"placement": "home.recommended", "k": 8}).json()
    assert after["source"] == "live" and after["arm"] == "heuristic"
    share = lambda body: sum(i["product_id"] in in_cat for i in body["items"]) / len(body["items"])  # noqa: E731
    assert share(after) >= 0.5 and share(after) > share(before)


def test_cart_items_and_the_product_on_the_page_are_excluded(served, staff_client):
    shop, _ = served
    from shop.orders.models import Cart, CartItem

    vid = shop.visitors[1]
    top = _get(staff_client, placement="home.recommended", k=5, visitor_id=vid).json()["items"]
    cart = Cart.objects.create(visitor_id=vid)
    CartItem.objects.create(cart=cart, product_id=top[0]["product_id"], quantity=1)
    again = [
        i["product_id"] for i in _get(staff_client, placement="cart.recommended", k=20, visitor_id=vid).json()["items"]
    ]
    assert top[0]["product_id"] not in again and again


def test_arms_choose_the_ranking(served, staff_client):
    shop, version = served
    for arm in ("popularity", "heuristic", "dlrm"):
        Experiment.objects.update(status=Experiment.Status.STOPPED)
        others = [(a, 0, False) for a in ("popularity", "heuristic", "dlrm") if a != arm]
        exp = experiment_create(key=f"only-{arm}", name=arm, arms=[(arm, 1, True), *others])
        experiment_start(experiment=exp)
        running_experiment_forget()
        body = _get(staff_client, placement="home.recommended", k=8, visitor_id=shop.visitors[2]).json()
        assert body["arm"] == arm and body["experiment"] == f"only-{arm}"
        if arm == "popularity":
            assert body["source"] == "popularity" and body["model_version"] is None
        elif arm == "heuristic":  # stage 1's own order, no model: no scores, no model version
            assert body["source"] == "live" and body["model_version"] is None
            assert all(i["score"] is None for i in body["items"])
        else:
            assert body["source"] == "live" and body["model_version"] == version.version


def test_a_serving_model_brings_its_own_stage_1(served):
    """No stage 1 is fitted beside a model that serves: the heuristic arm ranks with the model's own."""
    assert serving.serving_stage1_reload() is None and serving.serving_stage1() is None


def _serving_reasons(staff_client) -> dict:
    r = staff_client.get("/api/recs/serving-stats", {"minutes": 5})
    assert r.status_code == 200
    return r.json()["fallback_reasons"]


def test_missing_artifact_falls_back_and_is_counted(served, settings, client, staff_client):
    shop, version = served
    shutil.rmtree(Path(settings.MODEL_DIR) / "versions" / version.version)
    serving.serving_forget()
    assert serving.serving_reload() is None  # a new process cannot load it
    assert "unavailable" in serving.serving_status().error
    before = _serving_reasons(staff_client).get("model_unavailable", 0)
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=shop.visitors[0]).json()
    assert body["source"] == "fallback" and body["reason"] == "model_unavailable" and len(body["items"]) == 8
    assert _serving_reasons(staff_client)["model_unavailable"] == before + 1
    # the page still renders, its rail filled by the popular list
    staff_client.logout()
    page = client.get("/")
    assert page.status_code == 200 and "Recommended for you" in with_rails_after_load(client, page)


def test_scorer_raising_falls_back_to_the_batch_list_then_popularity(served, staff_client, monkeypatch):
    shop, version = served
    model = serving.serving_model()

    def broken(*args, **kwargs):
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(model.pipeline.scorer, "score", broken)  # fault injection: the scorer raises
    vid = shop.visitors[0]
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=vid).json()
    assert body["source"] == "fallback" and body["reason"] == "scorer_error" and len(body["items"]) == 8
    # with a batch-scored list, that list answers first
    run = TaskRun.objects.get(kind=TaskRun.Kind.BATCH_SCORE)  # queued by the promotion
    execution.task_run_execute(run_id=run.id)
    live.batch_serving_forget()  # as each web process does within RECS_SERVING_POLL_S
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=vid).json()
    assert body["source"] == "batch" and body["reason"] == "scorer_error"
    assert body["model_version"] == version.version and len(body["items"]) == 8
    assert _serving_reasons(staff_client)["scorer_error"] == 2


def test_scorer_slower_than_the_budget_falls_back(served, settings, staff_client, client):
    shop, _ = served
    settings.RECS_LATENCY_BUDGET_MS = 0.05  # 50 microseconds: no real re-rank fits
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=shop.visitors[0]).json()
    assert body["source"] == "fallback" and body["reason"] == "over_budget" and len(body["items"]) == 8
    assert _serving_reasons(staff_client)["over_budget"] >= 1


def test_scoring_on_the_request_thread_serves_live_and_falls_back_as_the_thread_does(
    served, settings, staff_client, monkeypatch
):
    """RECS_SERVING_THREADS=0: the request scores on its own thread (no scoring thread is started), with the
    same answers and the same fallbacks: the budget (checked between stages) and a scorer that raises."""
    shop, version = served
    monkeypatch.setattr(live, "_pool", None)
    settings.RECS_SERVING_THREADS = 0
    vid = shop.visitors[0]
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=vid).json()
    assert body["source"] == "live" and body["model_version"] == version.version and len(body["items"]) == 8
    assert live._pool is None  # no scoring thread was needed

    model = serving.serving_model()
    real_score = model.pipeline.scorer.score
    monkeypatch.setattr(model.pipeline.scorer, "score", lambda *a, **kw: 1 / 0)  # fault injection
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=vid).json()
    assert body["source"] == "fallback" and body["reason"] == "scorer_error" and len(body["items"]) == 8

    monkeypatch.setattr(model.pipeline.scorer, "score", real_score)
    real_features = model.pipeline.features.live_request

    def slow_features(*args, **kwargs):
        time.sleep(0.06)  # past the budget while building the features: the model is not run
        return real_features(*args, **kwargs)

    monkeypatch.setattr(model.pipeline.features, "live_request", slow_features)
    settings.RECS_LATENCY_BUDGET_MS = 50.0
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=vid).json()
    assert body["source"] == "fallback" and body["reason"] == "over_budget" and len(body["items"]) == 8
    reasons = _serving_reasons(staff_client)
    assert reasons["scorer_error"] == 1 and reasons["over_budget"] == 1
    assert live._pool is None


def test_requests_over_budget_do_not_use_up_the_scoring_slots(served, settings, staff_client, monkeypatch):
    """A request that gives up while its scoring job still waits in the queue cancels the job; the job never
    runs, so its slot must be given back there, or each such request loses a slot for good and the process
    answers "busy" to any request beyond the few jobs it is running."""
    import threading

    shop, _ = served
    model = serving.serving_model()
    real_score = model.pipeline.scorer.score
    slow = threading.Event()
    slow.set()

    def scorer(*args, **kwargs):
        if slow.is_set():
            time.sleep(0.3)  # longer than the budget: the request gives up while this job runs
        return real_score(*args, **kwargs)

    monkeypatch.setattr(model.pipeline.scorer, "score", scorer)
    monkeypatch.setattr(live, "_pool", None)  # one scoring thread, so later jobs wait in its queue
    settings.RECS_SERVING_THREADS = 1
    settings.RECS_LATENCY_BUDGET_MS = 40.0
    vid = shop.visitors[0]
    reasons = [
        _get(staff_client, placement="home.recommended", k=8, visitor_id=vid).json()["reason"] for _ in range(12)
    ]
    assert "over_budget" in reasons
    slow.clear()
    time.sleep(1.0)  # the jobs that did start have finished
    _, slots = live._executor()
    free = 0
    while slots.acquire(blocking=False):  # every slot is free again once no job runs or waits
        free += 1
    for _ in range(free):
        slots.release()
    assert free == 4 * settings.RECS_SERVING_THREADS, (free, reasons)


def test_a_scoring_job_given_up_by_its_request_does_not_go_on_to_run_the_model(
    served, settings, staff_client, monkeypatch
):
    """RECS_SERVING_THREADS=N: a request that stopped waiting at the budget leaves its job running; the job
    stops at its next stage once the deadline has passed instead of spending a core on an answer nobody reads."""
    import threading

    shop, _ = served
    model = serving.serving_model()
    real_features, real_score = model.pipeline.features.live_request, model.pipeline.scorer.score
    features_done, scored = threading.Event(), []

    def slow_features(*args, **kwargs):
        time.sleep(0.15)  # past the 40 ms budget while building the features
        try:
            return real_features(*args, **kwargs)
        finally:
            features_done.set()

    def counting_score(*args, **kwargs):
        scored.append(1)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(model.pipeline.features, "live_request", slow_features)
    monkeypatch.setattr(model.pipeline.scorer, "score", counting_score)
    monkeypatch.setattr(live, "_pool", None)
    settings.RECS_SERVING_THREADS = 1
    settings.RECS_LATENCY_BUDGET_MS = 40.0
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=shop.visitors[0]).json()
    assert body["source"] == "fallback" and body["reason"] == "over_budget" and len(body["items"]) == 8
    assert features_done.wait(2.0)  # the abandoned job got past its feature step...
    time.sleep(0.2)
    assert scored == []  # ...and stopped there: the model never ran for it

    monkeypatch.setattr(model.pipeline.features, "live_request", real_features)
    body = _get(staff_client, placement="home.recommended", k=8, visitor_id=shop.visitors[0]).json()
    assert body["source"] == "live" and scored == [1]  # within the budget the same thread ranks as before


def test_rails_record_impressions_and_events_carry_arm_and_model(served, client):
    shop, version = served
    p = Product.objects.get(pk=shop.products[5])
    page = client.get(p.get_absolute_url())
    assert page.status_code == 200
    view = Event.objects.get(type="view", product=p)
    assert view.arm is None and view.model_version == version.version  # no experiment: dlrm ranks
    assert "You may also like" not in page.content.decode()  # fetched after load: the page does not wait for it
    assert "You may also like" in with_rails_after_load(client, page)
    home = client.get("/")
    assert "Recommended for you" not in home.content.decode() and "Trending now" in home.content.decode()
    assert "Recommended for you" in with_rails_after_load(client, home)
    imps = Event.objects.filter(type="impression", visitor_id=view.visitor_id, placement="home.recommended")
    assert imps.count() >= 2
    assert set(imps.values_list("model_version", flat=True)) == {version.version}
    assert set(imps.values_list("arm", flat=True)) == {"dlrm"}
    assert sorted(imps.values_list("position", flat=True)) == list(range(imps.count()))


def test_purchases_and_clicks_on_served_cards_carry_the_arm_and_model_that_served(served, client):
    """Every interaction carries the arm and model version that produced it: a purchase (server-side) as a
    view does, and a beacon click on a card of a served rail those of the impression the server recorded for
    that card. A click on a card no arm served keeps none, and a client cannot claim one."""
    import json

    from tests.shop.test_cart_checkout import CHECKOUT, add

    shop, version = served
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    exp = experiment_create(key="only-dlrm", name="dlrm", arms=[("dlrm", 1, True), ("popularity", 0, False)])
    experiment_start(experiment=exp)
    running_experiment_forget()

    product = Product.objects.get(pk=shop.products[5])
    page = client.get(product.get_absolute_url())
    assert "You may also like" in with_rails_after_load(client, page)
    served_card = Event.objects.filter(type="impression", placement="product.recommended").order_by("position")[0]
    assert (served_card.arm, served_card.model_version) == ("dlrm", version.version)
    pv = str(served_card.page_view_id)

    def click(placement: str, position: int, product_id: int, nonce: str = "", **claims) -> dict:
        return {
            "type": "click",
            "product_id": product_id,
            "placement": placement,
            "position": position,
            "page_view_id": pv,
            "idempotency_key": f"clk:{pv}:{placement}:{position}{nonce}",
            "device": "desktop",
            **claims,
        }

    batch = {
        "events": [
            click("product.recommended", 0, served_card.product_id),
            click("product.recommended", 0, served_card.product_id, nonce=":again"),  # the same card twice
            click("category.grid", 3, shop.products[7]),  # a card no arm served
        ]
    }
    got = client.post("/api/events", data=json.dumps(batch), content_type="application/json")
    assert got.status_code == 202, got.content
    on_card = Event.objects.filter(type="click", placement="product.recommended")
    assert list(on_card.values_list("arm", "model_version")) == [("dlrm", version.version)] * 2
    clicks = {e.placement: e for e in Event.objects.filter(type="click")}
    assert (clicks["category.grid"].arm, clicks["category.grid"].model_version) == (None, None)
    claimed = {"events": [click("category.grid", 4, shop.products[8], arm="dlrm", model_version="v9")]}
    got = client.post("/api/events", data=json.dumps(claimed), content_type="application/json")
    assert got.status_code == 202 and got.json()["accepted"] == 1  # stored; the claimed fields are not read
    assert not Event.objects.filter(type="click", placement="category.grid", arm__isnull=False).exists()

    add(client, product, quantity=2)
    response = client.post("/checkout/", CHECKOUT, follow=True)
    assert response.status_code == 200
    mine = Event.objects.filter(visitor_id=served_card.visitor_id, product=product)
    purchase, view = mine.get(type="purchase"), mine.get(type="view")
    assert (purchase.arm, purchase.model_version) == (view.arm, view.model_version) == ("dlrm", version.version)


def test_serving_stats_are_staff_only_and_validated(served, client, staff_client):
    assert staff_client.get("/api/recs/serving-stats", {"minutes": 0}).status_code == 400
    assert "minutes" in staff_client.get("/api/recs/serving-stats", {"minutes": "x"}).json()
    _get(staff_client, placement="home.trending", k=4)
    body = staff_client.get("/api/recs/serving-stats", {"minutes": 10}).json()
    assert body["requests"] >= 1 and body["by_source"].get("popularity", 0) >= 1
    assert body["per_minute"] and "stage_ms_mean" in body["per_minute"][-1]
    staff_client.logout()
    assert client.get("/api/recs/serving-stats").status_code in (401, 403)


def test_unknown_visitor_uuid_for_staff_is_served(served, staff_client):
    body = _get(staff_client, placement="product.recommended", k=3, visitor_id=uuid.uuid4()).json()
    assert body["source"] == "fallback" and len(body["items"]) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)  # a read with no limit waits for the lock, and this test with it
@pytest.mark.parametrize("connection_state", ["prepared", "new"])
def test_a_slow_database_falls_back_within_the_statement_timeout(served, settings, staff_client, connection_state):
    """The events table is locked by another session (a long migration, a vacuum full): the live read
    gives up after RECS_DB_TIMEOUT_MS and the popular list answers, on a connection whose statements are
    prepared and on a new one, where preparing them waits for the same lock (it once waited without limit)."""

    import psycopg
    from django.db import connection

    from shop.catalog.rails import RailContext, popular_ids

    if connection.vendor != "postgresql":
        pytest.skip("statement timeouts are a PostgreSQL feature")
    shop, _ = served
    settings.RECS_DB_TIMEOUT_MS = 50
    popular_ids(RailContext())  # cached, as on a warm server
    with connection.cursor() as cur:
        if connection_state == "new":  # as a connection opened since: nothing prepared on it
            cur.execute("DEALLOCATE ALL")
            live._prepared_on.discard(connection.connection)
        else:
            live.statements_prepare(cur)
    s = connection.settings_dict
    other = psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"] or None, dbname=s["NAME"]
    )
    try:
        other.execute("LOCK TABLE events_event IN ACCESS EXCLUSIVE MODE")
        t0 = time.perf_counter()
        body = _get(staff_client, placement="home.recommended", k=6, visitor_id=shop.visitors[0]).json()
        elapsed = time.perf_counter() - t0
    finally:
        other.rollback()
        other.close()
    assert body["source"] == "fallback" and body["reason"] == "db_timeout" and len(body["items"]) == 6
    assert elapsed < 2.0
    assert _serving_reasons(staff_client)["db_timeout"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_live_request_reads_the_database_once_and_that_read_checks_the_connection(
    served, client, monkeypatch, request
):
    """A warm process answers a shopper's live rail with one round trip: the cart and the events since the
    snapshot in one message, the cards from memory, no experiment read, and no ``SELECT 1`` of Django's
    per-request connection check (the read stands in for it). A connection the server dropped meanwhile is
    replaced and the request is still live."""
    import psycopg
    from django.db import connection, connections
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("the one-message read is PostgreSQL's")
    shop, version = served
    _view_three_of_a_category(client, shop)
    assert client.get(API, {"placement": "home.recommended", "k": 8}).json()["source"] == "live"  # warm
    assert cards.product_cards_refresh() == Product.objects.filter(is_active=True).count()
    assert client.get(API, {"placement": "home.trending", "k": 8}).json()["source"] == "popularity"  # warm
    checks = []
    wrapper = connections["default"]  # this thread's connection (the test client runs in this thread)
    real_is_usable = wrapper.is_usable
    monkeypatch.setattr(wrapper, "is_usable", lambda: checks.append(1) or real_is_usable())
    enabled = wrapper.health_check_enabled
    wrapper.health_check_enabled = True
    request.addfinalizer(lambda: setattr(wrapper, "health_check_enabled", enabled))

    def live_rail(placement="home.recommended"):
        connection.health_check_done = False  # a new request on a persistent connection (what Django does)
        with CaptureQueriesContext(connection) as q:
            body = client.get(API, {"placement": placement, "k": 8}).json()
        return body, [x["sql"] for x in q.captured_queries]

    body, sql = live_rail()
    assert body["source"] == "live" and body["model_version"] == version.version and len(body["items"]) == 8
    assert len(sql) == 1 and "EXECUTE shop_recs_cart(" in sql[0] and "EXECUTE shop_recs_fresh_" in sql[0], sql
    assert checks == []  # no SELECT 1 of its own
    body, sql = live_rail("home.trending")  # the popular list: the cart only
    assert body["source"] == "popularity" and len(sql) == 1 and "orders_cartitem" in sql[0], sql
    assert checks == []

    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"] or None, dbname=s["NAME"]
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    body, _ = live_rail()
    assert body["source"] == "live" and body["reason"] == "", body
    assert checks == [1]  # the failed read asked whether the connection was dead (it was): a new one served


def test_cards_come_from_the_table_the_serving_thread_reads(served, django_assert_num_queries):
    """The serving thread's full read publishes every active product's card; a request for held ids makes no
    query, a product deactivated since drops out at the next read, and an id the table lacks is read once."""
    shop, _ = served
    ids = shop.products[:5]
    assert cards.product_cards_refresh() == Product.objects.filter(is_active=True).count()
    with django_assert_num_queries(0):
        held = cards.product_cards(ids=ids)
    one = Product.objects.get(pk=ids[0])
    assert held[one.id] == {
        "product_id": one.id, "name": one.name, "price": f"{one.price:.2f}", "url": one.get_absolute_url()
    }  # fmt: skip
    Product.objects.filter(pk=ids[1]).update(is_active=False)
    assert cards.product_cards_refresh_due() is False  # refreshed a moment ago
    cards.product_cards_refresh()
    with django_assert_num_queries(1):  # the dropped id is asked once, then remembered as absent
        assert set(cards.product_cards(ids=ids)) == set(ids) - {ids[1]}
    with django_assert_num_queries(0):
        assert set(cards.product_cards(ids=ids)) == set(ids) - {ids[1]}


@pytest.mark.django_db(transaction=True)
def test_the_model_loads_in_a_background_thread_never_on_the_request(served, settings, staff_client):
    """A fresh process: the first request does not wait for the model (it falls back, "model_loading");
    the loader thread builds the pipeline and publishes it, and later requests are live."""

    shop, version = served
    serving.serving_forget()
    settings.RECS_SERVING_LOAD = True
    settings.RECS_SERVING_POLL_S = 0.2
    try:
        t0 = time.perf_counter()
        first = _get(staff_client, placement="home.recommended", k=5, visitor_id=shop.visitors[0]).json()
        assert time.perf_counter() - t0 < 2.0
        assert first["source"] == "fallback" and first["reason"] == "model_loading"
        deadline = time.monotonic() + 60
        while serving.serving_model() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert serving.serving_model() is not None and serving.serving_model().version == version.version
        later = _get(staff_client, placement="home.recommended", k=5, visitor_id=shop.visitors[0]).json()
        assert later["source"] == "live" and later["model_version"] == version.version
        process = staff_client.get("/api/recs/serving-stats", {"minutes": 5}).json()["process"]
        assert process["model_version"] == version.version and process["snapshot"].startswith("snap-")
    finally:
        serving.serving_stop()


def test_a_rollback_to_a_model_served_a_moment_ago_is_a_swap_without_loading(served, settings, monkeypatch):
    """Rolling back must reach shoppers within a second: the process keeps the model it served before and
    swaps it back at its next version check, instead of loading the artifact and stage 1 again."""
    from recommender.registry import Registry
    from shop.recs import engine

    shop, first = served
    first_model = serving.serving_model()
    registry = Registry(Path(settings.MODEL_DIR))
    artifact = registry.load(first.version)
    second = registry.register(
        weights=artifact.weights, vocabularies=artifact.vocabularies, config=artifact.config, metrics=artifact.metrics
    )
    ModelVersion.objects.create(version=second, metrics=artifact.metrics)
    ModelVersion.objects.filter(version=first.version).update(is_active=False)
    ModelVersion.objects.filter(version=second).update(is_active=True)
    assert serving.serving_reload().version == second  # a new version: loaded

    def no_loading(**kwargs):
        raise AssertionError("the rolled-back model was loaded again")

    monkeypatch.setattr(engine, "load_ranker", no_loading)
    ModelVersion.objects.filter(version=second).update(is_active=False)
    ModelVersion.objects.filter(version=first.version).update(is_active=True)
    assert serving.serving_reload() is first_model
    assert serving.serving_status().error == ""
    assert settings.RECS_SERVING_POLL_S <= 1.0  # each process checks the version at least once a second


def test_a_loaded_model_is_kept_out_of_the_collectors_full_passes(served, settings):
    """A full garbage collection walks every tracked object of the process: the modules and the model (about
    470,000 objects in a web process) took 300-440 ms, a pause of every request in flight. After a load
    they are frozen (gc.freeze): the pipeline is no longer among the objects a collection walks."""
    import gc

    def walked(obj) -> bool:
        return any(o is obj for o in gc.get_objects())

    try:
        settings.RECS_GC_FREEZE = False
        serving.serving_forget()
        gc.unfreeze()
        model = serving.serving_reload()
        assert walked(model.pipeline)  # the control: without the freeze a full pass walks the model

        settings.RECS_GC_FREEZE = True
        serving.serving_forget()
        model = serving.serving_reload()
        assert model is not None and gc.get_freeze_count() > 0
        assert not walked(model.pipeline)
        assert not walked(model)
        # frozen objects are still freed by reference counting once dropped (the model evicted later)
        serving.serving_forget()
        del model
    finally:
        gc.unfreeze()


@pytest.mark.django_db(transaction=True)
def test_starting_the_loader_freezes_torch_whether_or_not_a_model_loads(served, settings):
    """The first request that starts the loader imports torch (about 135,000 objects): frozen at once, not
    only after a model loads (a shop with no model yet would walk them at every full pass)."""
    import gc

    import torch

    serving.serving_forget()
    settings.RECS_SERVING_LOAD = True
    gc.unfreeze()
    try:
        assert any(o is torch.nn.Module for o in gc.get_objects())
        assert serving.serving_start()
        assert not any(o is torch.nn.Module for o in gc.get_objects())
    finally:
        serving.serving_stop()
        gc.unfreeze()


def test_a_rail_after_load_reads_the_cart_only_for_a_browser_the_hint_says_may_have_one(served, client):
    """The cart hint spares a cartless shopper's rail after load the cart read, as it does the page's; once
    the shopper adds, the rail reads the cart again and leaves its product out."""
    import re

    from django.test.utils import CaptureQueriesContext

    seed = Product.objects.filter(is_active=True).order_by("pk").first()
    client.get("/")  # the visitor's cookie

    def rail() -> tuple[list[int], list[str]]:
        with CaptureQueriesContext(connection) as q:
            response = client.get(f"/rails/product.recommended?product={seed.pk}", HTTP_ACCEPT="text/html")
        assert response.status_code == 200
        ids = re.findall(r'data-product-id="(\d+)" data-placement="product.recommended"', response.content.decode())
        return [int(i) for i in ids], [x["sql"] for x in q.captured_queries]

    def cart_read(s: str) -> bool:  # the live read's prepared statement, or the cart's own statement
        return "EXECUTE shop_recs_cart(" in s or ("orders_cartitem" in s and "PREPARE" not in s)

    def fresh_read(s: str) -> bool:
        return "EXECUTE shop_recs_fresh_" in s or ("events_event" in s and "DESC LIMIT" in s and "PREPARE" not in s)

    ids, sql = rail()
    assert len(ids) >= 2 and any(map(fresh_read, sql)), sql  # ranked live
    assert not any(map(cart_read, sql)), sql
    add = client.post("/cart/add/", {"product_id": ids[0], "quantity": 1, "nonce": str(uuid.uuid4())})
    assert add.status_code == 302 and client.cookies["cart_hint"].value == "1"
    after, sql = rail()
    assert any(map(cart_read, sql)), sql
    assert ids[0] not in after and len(after) >= 2

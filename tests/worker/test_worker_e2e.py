"""Whole-stack: a real Celery worker process, real Redis, real PostgreSQL.

events in -> export -> retrain -> new active version -> batch scores for everyone -> the storefront's rail;
kill -9 in the middle of a batch score; two concurrent retrain requests.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection
from django.urls import reverse

from shop.recs import runs, selectors
from shop.recs.models import ModelVersion, Recommendation, ScoreSet, ServingPointer, TaskRun
from tests.factories import UserFactory, with_rails_after_load
from tests.worker.conftest import batch_score_after_retrain, build_shop, run_finished, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _wait_done(run_id, worker, timeout=120.0) -> TaskRun:
    try:
        run = wait_for(lambda: run_finished(run_id), timeout=timeout, interval=0.2, what=f"task {run_id}")
    except AssertionError:
        raise AssertionError(f"task {run_id} did not finish; worker log:\n{worker.log()}") from None
    assert run.state == "succeeded", f"{run.error}\n{worker.log()}"
    return run


def test_events_to_rail_through_a_real_worker(celery_worker, client):
    shop = build_shop(visitors=24, products=70)

    export = runs.task_run_start(kind="export", trigger="test")
    export = _wait_done(export.id, celery_worker)
    assert export.result["events"] == shop.events

    retrain = runs.task_run_start(kind="retrain", trigger="test")
    retrain = _wait_done(retrain.id, celery_worker)
    assert retrain.device.startswith(("cpu", "cuda")) and retrain.hostname
    # the promotion (the gate's, or the operator's when the gate refused a model of this tiny shop) queued the
    # batch score (sent on commit), which the worker ran
    batch = _wait_done(batch_score_after_retrain(retrain.result), celery_worker)
    version = ModelVersion.objects.get(is_active=True)
    assert version.version == retrain.result["version"]
    assert version.metrics["auc"] is not None and version.training_seconds > 0 and version.examples > 0
    assert batch.result["visitors"] == len(shop.visitors)
    ss = ServingPointer.objects.get().score_set
    assert ss.status == "complete" and ss.model_version == version and ss.rows == 50 * len(shop.visitors)
    for vid in shop.visitors:
        assert len(selectors.recommendations_for_visitor(visitor_id=vid, limit=50)) == 50

    # the storefront: with no live model in this process, the "Recommended for you" rail of a visitor ranked
    # by the model (no experiment running: the full pipeline) shows the visitor's batch list, in order
    from shop.catalog.rails import PLACEMENTS
    from shop.events.middleware import visitor_cookie_value
    from shop.experiments.models import Experiment
    from shop.experiments.selectors import running_experiment_forget

    Experiment.objects.update(status=Experiment.Status.STOPPED)
    running_experiment_forget()
    vid = shop.visitors[3]
    client.cookies["vid"] = visitor_cookie_value(vid)
    page = client.get("/")
    assert page.status_code == 200
    # the personal rail is fetched after load, as a browser does, leaving out the page's other rails' products
    src = re.search(r'data-rail-src="([^"]+)"', page.content.decode()).group(1)
    exclude = {int(p) for p in re.search(r"exclude=([\d%C,]+)", src).group(1).replace("%2C", ",").split(",")}
    html = with_rails_after_load(client, page)
    assert "Recommended for you" in html
    batch = selectors.recommendations_for_visitor(visitor_id=vid, limit=50)
    expected = [pid for pid in batch if pid not in exclude][: PLACEMENTS["home.recommended"].size]
    shown = [int(m) for m in re.findall(r'data-product-id="(\d+)" data-placement="home.recommended"', html)]
    assert shown == expected, "the rail does not show the visitor's precomputed recommendations"


# small chunks with a pause between them, so the kill lands in the middle of a batch
@pytest.mark.parametrize("worker_extra_env", [{"RECS_SCORE_CHUNK": "4", "RECS_BATCH_THROTTLE_S": "0.4"}])
def test_kill_9_during_batch_score_keeps_serving_then_completes_once(celery_worker):
    shop = build_shop(visitors=40, products=60)
    retrain = _wait_done(runs.task_run_start(kind="retrain").id, celery_worker)
    first = _wait_done(batch_score_after_retrain(retrain.result), celery_worker)
    served = ServingPointer.objects.get().score_set
    assert served.pk == first.result["score_set"]
    before = {vid: selectors.recommendations_for_visitor(visitor_id=vid, limit=8) for vid in shop.visitors}

    run = runs.task_run_start(kind="batch_score", trigger="test")
    wait_for(
        lambda: TaskRun.objects.filter(pk=run.id, percent__gt=0, percent__lt=60).exists(),
        timeout=90,
        interval=0.05,
        what="the batch score to commit its first chunks",
    )
    celery_worker.kill()

    building = ScoreSet.objects.get(run_id=run.id)
    assert building.status == "building" and 0 < building.visitors < len(shop.visitors)
    # the storefront still reads the previous complete set, unchanged
    assert ServingPointer.objects.get().score_set_id == served.pk
    assert {vid: selectors.recommendations_for_visitor(visitor_id=vid, limit=8) for vid in shop.visitors} == before

    celery_worker.start()  # the unacknowledged task is handed out again and resumes
    run = _wait_done(run.id, celery_worker, timeout=120)
    assert run.deliveries == 2 and run.result["resumed"] is True
    ss = ScoreSet.objects.get(run_id=run.id)
    assert ss.status == "complete" and ServingPointer.objects.get().score_set_id == ss.pk
    assert ScoreSet.objects.filter(run_id=run.id).count() == 1
    rows = Recommendation.objects.filter(score_set=ss)
    assert rows.count() == ss.rows == 50 * len(shop.visitors)  # every visitor once, no duplicate rows
    assert rows.values("visitor_id").distinct().count() == len(shop.visitors)
    # completed once: no second run, and a later duplicate delivery would be skipped
    assert TaskRun.objects.filter(kind="batch_score", state="succeeded").count() == 2


def test_two_concurrent_retrain_requests_train_once(celery_worker, client):
    build_shop(visitors=16, products=60)
    staff = UserFactory(is_staff=True)
    barrier = threading.Barrier(2)
    answers: list[tuple[int, dict]] = []

    def request():
        from django.test import Client

        c = Client()
        c.force_login(staff)
        barrier.wait()
        r = c.post(reverse("api:recs:retrain"))
        answers.append((r.status_code, r.json()))
        connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    codes = sorted(code for code, _ in answers)
    assert codes == [202, 409], answers
    started = next(body for code, body in answers if code == 202)
    refused = next(body for code, body in answers if code == 409)
    assert refused == {"detail": "already running", "task_id": started["task_id"]}

    run = _wait_done(started["task_id"], celery_worker)
    progress = client.get(reverse("api:recs:task", kwargs={"run_id": run.id}))
    assert progress.status_code in (401, 403)  # staff only
    client.force_login(staff)
    assert client.get(reverse("api:recs:task", kwargs={"run_id": run.id})).json()["state"] == "succeeded"
    assert TaskRun.objects.filter(kind="retrain").count() == 1
    assert ModelVersion.objects.count() == 1  # one training run, one version

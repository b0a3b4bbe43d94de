"""What each arm served during an experiment: the serving counters beside the lift table."""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from shop.experiments.models import Experiment
from shop.experiments.selectors import running_experiment_forget
from shop.experiments.services import experiment_create, experiment_start
from shop.experiments.serving_mix import (
    ServingRow,
    experiment_serving_mix,
    experiment_serving_rows,
    serving_mix_compute,
)
from shop.recs import live, serving, stats
from shop.recs.models import ServingStat

ARMS = ["popularity", "heuristic", "dlrm"]


def _mix(rows):
    return {a.arm: a for a in serving_mix_compute(rows=rows, arms=ARMS, control="popularity").arms}


def test_an_arm_that_mostly_fell_back_is_named_with_its_reasons():
    rows = [
        ServingRow("popularity", "popularity", "", 100),
        ServingRow("heuristic", "live", "", 90),
        ServingRow("heuristic", "fallback", "no_activity", 10),
        ServingRow("dlrm", "live", "", 10),
        ServingRow("dlrm", "batch", "over_budget", 5),  # the batch list is still the model's ranking
        ServingRow("dlrm", "fallback", "busy", 60),
        ServingRow("dlrm", "fallback", "over_budget", 15),
        ServingRow("dlrm", "fallback", "no_activity", 10),
    ]
    mix = serving_mix_compute(rows=rows, arms=ARMS, control="popularity")
    arms = {a.arm: a for a in mix.arms}
    dlrm = arms["dlrm"]
    assert dlrm.requests == 100 and dlrm.own == 15 and dlrm.no_history == 10 and dlrm.faults == 75
    assert dlrm.fallback_reasons == {"busy": 60, "over_budget": 15, "no_activity": 10}
    assert dlrm.own_share == pytest.approx(0.15) and dlrm.fault_share == pytest.approx(0.75)
    assert len(mix.warnings) == 1
    warning = mix.warnings[0]
    assert warning.startswith("dlrm served its own ranking on only 15% of 100")
    assert "busy 60%" in warning and "over_budget 15%" in warning and "no history to personalise on: 10%" in warning
    assert "not the dlrm ranking" in warning
    # the heuristic served its own ranking; a visitor without history is no fault
    assert arms["heuristic"].own_share == pytest.approx(0.9) and arms["heuristic"].faults == 0
    assert arms["heuristic"].note == ""
    # the control's popular list is its ranking, not a fallback
    assert arms["popularity"].own == 100 and arms["popularity"].intended == "popularity" and not arms["popularity"].note


def test_a_minority_of_faults_is_still_reported():
    arms = _mix([ServingRow("dlrm", "live", "", 80), ServingRow("dlrm", "fallback", "over_budget", 20)])
    assert arms["dlrm"].own_share == pytest.approx(0.8)
    assert (
        arms["dlrm"].note
        == "dlrm: 20% of its personalised rail renders fell back to the popular list (over_budget 20%)."
    )
    quiet = _mix([ServingRow("dlrm", "live", "", 95), ServingRow("dlrm", "fallback", "over_budget", 5)])
    assert quiet["dlrm"].note == ""


def test_an_arm_without_counted_requests_says_its_mix_is_unknown():
    mix = serving_mix_compute(rows=[ServingRow("other", "live", "", 5)], arms=ARMS, control="popularity")
    arms = {a.arm: a for a in mix.arms}
    assert arms["dlrm"].requests == 0 and arms["dlrm"].own_share is None
    assert "serving mix is unknown" in arms["dlrm"].note
    assert arms["popularity"].note == ""  # the control's figures need no mix to mean something


@pytest.fixture
def experiment(db):
    exp = Experiment.objects.get(status=Experiment.Status.RUNNING)
    exp.started_at = timezone.now() - dt.timedelta(minutes=30)
    exp.save(update_fields=["started_at"])
    return exp


def _stat(minute, placement, arm, source, reason, n, experiment=None):
    return ServingStat(
        minute=minute, placement=placement, arm=arm, source=source, reason=reason, requests=n, experiment=experiment
    )


@pytest.fixture
def counters(experiment):
    start = experiment.started_at.replace(second=0, microsecond=0)
    later = start + dt.timedelta(minutes=5)
    other = experiment_create(key="earlier", name="An earlier experiment")
    e = experiment
    ServingStat.objects.bulk_create(
        [
            _stat(
                start - dt.timedelta(minutes=2), "home.recommended", "dlrm", "live", "", 500, e
            ),  # an earlier run (resalted since)
            # the start minute, before the experiment ran: no experiment (the default arm) or another one
            _stat(start, "home.recommended", "dlrm", "fallback", "no_model", 8),
            _stat(start, "home.recommended", "heuristic", "fallback", "no_snapshot", 5, other),
            _stat(later, "product.recommended", "dlrm", "live", "", 400),  # never under this experiment
            _stat(start, "home.recommended", "popularity", "popularity", "", 40, e),
            _stat(later, "product.recommended", "popularity", "popularity", "", 60, e),
            _stat(later, "home.trending", "dlrm", "popularity", "", 300, e),  # the same in every arm: left out
            _stat(start, "home.recommended", "dlrm", "live", "", 10, e),
            _stat(later, "product.recommended", "dlrm", "fallback", "busy", 70, e),
            _stat(later, "product.recommended", "dlrm", "fallback", "busy", 10, e),  # a second process's flush
            _stat(later, "cart.recommended", "dlrm", "fallback", "no_activity", 10, e),
            _stat(later, "product.recommended", "heuristic", "live", "", 100, e),
        ]
    )


def test_serving_mix_sums_the_counters_of_the_experiments_window(counters, experiment):
    arms = {a.arm: a for a in experiment_serving_mix(experiment=experiment).arms}
    assert arms["popularity"].requests == 100 and arms["popularity"].by_source == {"popularity": 100}
    assert arms["dlrm"].requests == 100
    assert arms["dlrm"].by_source == {"live": 10, "fallback": 90}
    assert arms["dlrm"].fallback_reasons == {"busy": 80, "no_activity": 10}
    assert arms["heuristic"].own == 100 and arms["heuristic"].note == ""
    assert arms["heuristic"].by_source == {"live": 100}


def test_counters_of_the_start_minute_before_the_experiment_ran_are_not_its_own(counters, experiment):
    rows = experiment_serving_rows(experiment=experiment)
    assert ServingRow("dlrm", "fallback", "no_model", 8) not in rows  # served with no experiment running
    assert ServingRow("heuristic", "fallback", "no_snapshot", 5) not in rows  # another experiment's arm
    assert ServingRow("dlrm", "live", "", 10) in rows  # the same minute, under the experiment
    assert {(r.arm, r.source, r.reason) for r in rows} == {
        ("popularity", "popularity", ""),
        ("dlrm", "live", ""),
        ("dlrm", "fallback", "busy"),
        ("dlrm", "fallback", "no_activity"),
        ("heuristic", "live", ""),
    }


def test_stopped_experiment_leaves_out_later_counters(counters, experiment):
    experiment.stopped_at = experiment.started_at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    experiment.save(update_fields=["stopped_at"])
    arms = {a.arm: a for a in experiment_serving_mix(experiment=experiment).arms}
    assert arms["popularity"].requests == 40 and arms["dlrm"].requests == 10 and arms["heuristic"].requests == 0


def test_results_api_and_report_say_when_an_arm_mostly_fell_back(counters, admin_client):
    data = admin_client.get("/api/experiments/current/results").json()
    mix = {a["arm"]: a for a in data["serving_mix"]["arms"]}
    assert mix["dlrm"]["own_share"] == pytest.approx(0.1) and mix["dlrm"]["faults"] == 80
    assert mix["dlrm"]["fallback_reasons"] == {"busy": 80, "no_activity": 10}
    assert "dlrm served its own ranking on only 10% of 100" in data["verdict"]
    assert data["serving_mix"]["warnings"] == [mix["dlrm"]["note"]]

    out = io.StringIO()
    call_command("experiment_report", width=200, stdout=out)
    text = out.getvalue()
    assert "What each arm served" in text
    assert "busy" in text and "80 (80%)" in text  # dlrm's busy fallbacks, as a count and a share
    flat = " ".join(text.replace("│", " ").split())  # the verdict panel wraps its lines
    assert "Its figures mostly describe the popular list, not the dlrm ranking." in flat


def test_the_service_counts_a_request_for_the_experiment_that_assigned_its_arm(db):
    """The clean demo's first minute: rails rendered before the experiment (and any model) existed fall
    back under the default arm; they are not the experiment's, though written in the minute it started."""
    serving.serving_forget()  # no model and no stage 1: the dlrm arm falls back
    stats.serving_stats_flush()  # whatever an earlier test left in this process
    ServingStat.objects.all().delete()
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    running_experiment_forget()
    visitor = uuid.uuid4()
    unassigned = live.recommendations_serve(visitor_id=visitor, placement="home.recommended", k=8)
    assert unassigned.arm == "dlrm" and unassigned.experiment is None and unassigned.source == "fallback"
    exp = experiment_create(
        key="dlrm-only", name="dlrm only", arms=[("popularity", 0, True), ("heuristic", 0, False), ("dlrm", 1, False)]
    )
    exp = experiment_start(experiment=exp)
    running_experiment_forget()
    for _ in range(2):
        served = live.recommendations_serve(visitor_id=visitor, placement="home.recommended", k=8)
        assert served.arm == "dlrm" and served.experiment == "dlrm-only"
    assert stats.serving_stats_flush() == 3
    written = list(ServingStat.objects.values_list("experiment_id", "arm", "requests"))
    assert sorted(written, key=str) == sorted([(None, "dlrm", 1), (exp.pk, "dlrm", 2)], key=str)
    assert experiment_serving_rows(experiment=exp) == [ServingRow("dlrm", "fallback", unassigned.reason, 2)]
    gone = exp.pk
    exp.delete()  # its counters stay in the console's per-minute figures, attributed to no experiment
    assert list(ServingStat.objects.values_list("experiment_id", flat=True)) == [None, None]
    # a process still serving from its cached copy of the deleted experiment: the flush writes anyway
    stats.serving_record(
        placement="home.recommended", arm="dlrm", source="fallback", reason="no_model", model_version=None,
        timings_ms={}, experiment_id=gone,
    )  # fmt: skip
    assert stats.serving_stats_flush() == 1
    connection.check_constraints()  # what the commit would check: no constraint to fail on
    running_experiment_forget()

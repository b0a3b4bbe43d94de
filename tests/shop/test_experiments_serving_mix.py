"""What each arm served during an experiment: the serving counters beside the lift table."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from shop.experiments.models import Experiment
from shop.experiments.serving_mix import ServingRow, experiment_serving_mix, serving_mix_compute
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


def _stat(minute, placement, arm, source, reason, n):
    return ServingStat(minute=minute, placement=placement, arm=arm, source=source, reason=reason, requests=n)


@pytest.fixture
def counters(experiment):
    start = experiment.started_at.replace(second=0, microsecond=0)
    later = start + dt.timedelta(minutes=5)
    ServingStat.objects.bulk_create(
        [
            _stat(start - dt.timedelta(minutes=2), "home.recommended", "dlrm", "live", "", 500),  # before the start
            _stat(start, "home.recommended", "popularity", "popularity", "", 40),
            _stat(later, "product.recommended", "popularity", "popularity", "", 60),
            _stat(later, "home.trending", "dlrm", "popularity", "", 300),  # the same in every arm: left out
            _stat(start, "home.recommended", "dlrm", "live", "", 10),
            _stat(later, "product.recommended", "dlrm", "fallback", "busy", 70),
            _stat(later, "product.recommended", "dlrm", "fallback", "busy", 10),  # a second process's flush
            _stat(later, "cart.recommended", "dlrm", "fallback", "no_activity", 10),
            _stat(later, "product.recommended", "heuristic", "live", "", 100),
        ]
    )


def test_serving_mix_sums_the_counters_of_the_experiments_window(counters, experiment):
    arms = {a.arm: a for a in experiment_serving_mix(experiment=experiment).arms}
    assert arms["popularity"].requests == 100 and arms["popularity"].by_source == {"popularity": 100}
    assert arms["dlrm"].requests == 100
    assert arms["dlrm"].by_source == {"live": 10, "fallback": 90}
    assert arms["dlrm"].fallback_reasons == {"busy": 80, "no_activity": 10}
    assert arms["heuristic"].own == 100 and arms["heuristic"].note == ""


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

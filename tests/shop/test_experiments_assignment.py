"""Sticky arm assignment: pure functions first, then the running experiment from the database."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from scipy import stats

from shop.experiments.assignment import ArmSpec, Assignment, ExperimentSpec, arm_for, assign, bucket

THREE = (ArmSpec("popularity", 1, True), ArmSpec("heuristic", 1), ArmSpec("dlrm", 1))


def _visitors(n: int, seed: int = 0) -> list[uuid.UUID]:
    import random

    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


def test_bucket_is_in_unit_interval_and_deterministic():
    vid = uuid.UUID("6f1c2d0e-4b7a-4a34-9a8e-1c2d3e4f5a6b")
    b = bucket(salt="abc", visitor_id=vid)
    assert 0.0 <= b < 1.0
    assert bucket(salt="abc", visitor_id=vid) == b
    assert bucket(salt="abd", visitor_id=vid) != b


def test_assignment_is_sticky_across_calls():
    spec = ExperimentSpec(key="exp", salt="s1", arms=THREE)
    for vid in _visitors(200):
        first = assign(experiment=spec, visitor_id=vid)
        assert all(assign(experiment=spec, visitor_id=vid) == first for _ in range(3))
        assert first.experiment == "exp" and first.arm in {"popularity", "heuristic", "dlrm"}


def test_equal_weights_split_evenly_within_tolerance():
    counts = Counter(arm_for(salt="salt", visitor_id=v, arms=THREE) for v in _visitors(30_000))
    assert set(counts) == {"popularity", "heuristic", "dlrm"}
    # a chi-square test that the split is uniform must not reject at the 0.1% level
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3
    for n in counts.values():
        assert abs(n / 30_000 - 1 / 3) < 0.015


def test_unequal_weights_follow_the_weights():
    arms = (ArmSpec("popularity", 2, True), ArmSpec("heuristic", 1), ArmSpec("dlrm", 7))
    n = 40_000
    counts = Counter(arm_for(salt="w", visitor_id=v, arms=arms) for v in _visitors(n, seed=1))
    expected = [n * 0.2, n * 0.1, n * 0.7]
    observed = [counts["popularity"], counts["heuristic"], counts["dlrm"]]
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert abs(counts["dlrm"] / n - 0.7) < 0.01


def test_zero_weight_arm_gets_nobody_and_all_zero_means_no_arm():
    arms = (ArmSpec("popularity", 1, True), ArmSpec("heuristic", 0), ArmSpec("dlrm", 1))
    assert "heuristic" not in {arm_for(salt="z", visitor_id=v, arms=arms) for v in _visitors(3000)}
    zero = ExperimentSpec(key="e", salt="z", arms=(ArmSpec("popularity", 0, True), ArmSpec("dlrm", 0)))
    assert assign(experiment=zero, visitor_id=uuid.uuid4()) == Assignment(experiment=None, arm=None)
    assert assign(experiment=None, visitor_id=uuid.uuid4()) == Assignment(experiment=None, arm=None)


def test_resalting_reshuffles_independently():
    vids = _visitors(9000, seed=2)
    a = [arm_for(salt="first", visitor_id=v, arms=THREE) for v in vids]
    b = [arm_for(salt="second", visitor_id=v, arms=THREE) for v in vids]
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(vids)
    # independent draws agree 1/3 of the time; a salt that was ignored would agree always
    assert abs(same - 1 / 3) < 0.03
    # and the old arm carries no information about the new one (contingency table, chi-square independence)
    keys = ["popularity", "heuristic", "dlrm"]
    table = [[sum(1 for x, y in zip(a, b, strict=True) if x == i and y == j) for j in keys] for i in keys]
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_assignment_is_frozen():
    a = Assignment(experiment="e", arm="dlrm")
    with pytest.raises(AttributeError):
        a.arm = "popularity"  # type: ignore[misc]


# --- with the database ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_fresh_install_runs_the_default_three_arm_experiment(django_assert_num_queries):
    from shop.experiments.models import Experiment
    from shop.experiments.selectors import assignment_for, running_experiment_forget

    experiment = Experiment.objects.get(status=Experiment.Status.RUNNING)
    arms = {a.key: (a.weight, a.is_control) for a in experiment.arms.all()}
    assert arms == {"popularity": (1, True), "heuristic": (1, False), "dlrm": (1, False)}
    assert experiment.started_at is not None and len(experiment.salt) >= 16

    running_experiment_forget()
    vid = uuid.uuid4()
    first = assignment_for(visitor_id=vid)
    assert first.experiment == experiment.key and first.arm in arms
    # cached in process memory: later requests cost no query
    with django_assert_num_queries(0):
        for _ in range(20):
            assert assignment_for(visitor_id=vid) == first
            assignment_for(visitor_id=uuid.uuid4())


@pytest.mark.django_db
def test_starting_a_new_experiment_resalts_and_stops_the_old_one():
    from shop.experiments.models import Experiment
    from shop.experiments.selectors import assignment_for
    from shop.experiments.services import experiment_create, experiment_start, experiment_stop

    old = Experiment.objects.get(status=Experiment.Status.RUNNING)
    vids = _visitors(600, seed=3)
    before = [assignment_for(visitor_id=v).arm for v in vids]

    new = experiment_start(experiment=experiment_create(key="second", name="Second"))
    old.refresh_from_db()
    assert old.status == Experiment.Status.STOPPED and old.stopped_at is not None
    assert new.salt != old.salt
    after = [assignment_for(visitor_id=v) for v in vids]
    assert {a.experiment for a in after} == {"second"}
    changed = sum(x != y.arm for x, y in zip(before, after, strict=True)) / len(vids)
    assert 0.55 < changed < 0.8  # about 2/3 move under an independent reshuffle

    # resuming a stopped experiment keeps its salt, so visitors get their old arms back
    experiment_stop(experiment=new)
    assert assignment_for(visitor_id=vids[0]) == Assignment(experiment=None, arm=None)
    experiment_start(experiment=old)
    assert [assignment_for(visitor_id=v).arm for v in vids] == before


@pytest.mark.django_db
def test_visitor_keeps_its_arm_after_logging_in(client):
    from django.contrib.auth import get_user_model

    from shop.events.middleware import visitor_id_from_cookie
    from shop.experiments.selectors import assignment_for

    client.get("/")
    vid = visitor_id_from_cookie(client.cookies["vid"].value)
    assert vid is not None
    before = assignment_for(visitor_id=vid)
    get_user_model().objects.create_user(username="ann", email="ann@example.com", password="pw-long-enough-1")
    response = client.post("/accounts/login/", {"username": "ann", "password": "pw-long-enough-1"})
    assert response.status_code == 302
    client.get("/")
    assert visitor_id_from_cookie(client.cookies["vid"].value) == vid
    assert assignment_for(visitor_id=vid) == before


@pytest.mark.django_db
def test_admin_validates_arms_and_starts_with_a_new_salt(admin_client):
    from shop.experiments.models import Experiment

    form = {
        "key": "bad",
        "name": "No control",
        "description": "",
        "arms-TOTAL_FORMS": "2",
        "arms-INITIAL_FORMS": "0",
        "arms-MIN_NUM_FORMS": "2",
        "arms-MAX_NUM_FORMS": "1000",
        "arms-0-key": "popularity",
        "arms-0-weight": "1",
        "arms-1-key": "dlrm",
        "arms-1-weight": "1",
    }
    response = admin_client.post("/admin/experiments/experiment/add/", form)
    assert response.status_code == 200 and not Experiment.objects.filter(key="bad").exists()
    assert "Exactly one arm must be the control." in response.content.decode()

    form.update({"key": "good", "arms-0-is_control": "on"})
    response = admin_client.post("/admin/experiments/experiment/add/", form)
    assert response.status_code == 302
    good = Experiment.objects.get(key="good")
    assert good.status == Experiment.Status.DRAFT
    salt = good.salt
    admin_client.post("/admin/experiments/experiment/", {"action": "start_resalted", "_selected_action": [good.pk]})
    good.refresh_from_db()
    assert good.status == Experiment.Status.RUNNING and good.salt != salt
    assert Experiment.objects.filter(status=Experiment.Status.RUNNING).count() == 1

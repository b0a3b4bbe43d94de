"""A version whose weights are well-formed files (checksums match) but do not make a usable model: NaN
weights, or tensors of the wrong shape for the config it was registered with. Promotion refuses it with the
reason, nothing moves, and the serving loader refuses it too (the previous model keeps serving)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.registry import Registry
from shop.experiments.models import Experiment
from shop.experiments.selectors import running_experiment_forget
from shop.recs import cards, execution, runs, serving
from shop.recs.models import ModelVersion, TaskRun
from shop.recs.promotion import CannotSwitch, model_version_promote
from tests.model_artifacts import corrupted
from tests.worker.conftest import build_shop, recs_dirs, served_after_retrain  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

REASONS = {
    "nan_weights": r"non-finite values \(NaN or inf\) in model\.",
    "inf_weights": r"non-finite values \(NaN or inf\) in model\.",
    "wrong_shapes": r"(?s)does not fit the registered config .*size mismatch",
    "missing_tensor": r"(?s)does not fit the registered config .*Missing key",
}


@pytest.fixture
def served(recs_dirs, settings, django_capture_on_commit_callbacks):  # noqa: F811
    """A trained, active model, loaded for serving (no loader thread: the test calls the loader)."""
    settings.RECS_SERVING_LOAD = False
    settings.RECS_LATENCY_BUDGET_MS = 5000.0
    Experiment.objects.update(status=Experiment.Status.STOPPED)
    running_experiment_forget()
    shop = build_shop(visitors=20, products=60)
    with django_capture_on_commit_callbacks(execute=False):
        run = runs.task_run_start(kind=TaskRun.Kind.RETRAIN, enqueue=False)
        execution.task_run_execute(run_id=run.id)
    good = served_after_retrain(run.id)
    serving.serving_forget()
    cards.product_cards_forget()
    assert serving.serving_reload().version == good.version
    yield shop, good
    serving.serving_forget()
    running_experiment_forget()


def _publish_corrupt(registry: Registry, base: str, kind: str) -> str:
    artifact = registry.load(base)
    version = registry.register(
        weights=corrupted(artifact.weights, kind),
        vocabularies=artifact.vocabularies,
        config=artifact.config,
        metrics=artifact.metrics,
    )
    registry.verify(version)  # the checksums alone pass it
    ModelVersion.objects.create(version=version, metrics=artifact.metrics)
    return version


@pytest.mark.parametrize("kind", ["nan_weights", "wrong_shapes", "inf_weights", "missing_tensor"])
def test_a_corrupt_version_is_refused_by_promotion_and_never_served(served, settings, staff_client, kind):
    shop, good = served
    registry = Registry(Path(settings.MODEL_DIR))
    bad = _publish_corrupt(registry, good.version, kind)

    with pytest.raises(CannotSwitch, match=REASONS[kind]):
        model_version_promote(version=bad, by="test")
    assert ModelVersion.objects.get(is_active=True).version == good.version
    assert registry.active() != bad  # the pointer never names it

    # were it active anyway (set by hand in the database), the loader keeps the previous model serving
    ModelVersion.objects.filter(version=good.version).update(is_active=False)
    ModelVersion.objects.filter(version=bad).update(is_active=True)
    assert serving.serving_reload().version == good.version
    assert bad in serving.serving_status().error
    r = staff_client.get(
        "/api/recommendations", {"placement": "home.recommended", "k": 8, "visitor_id": shop.visitors[0]}
    )
    assert r.status_code == 200 and r.json()["model_version"] != bad
    # and a process starting now serves nothing from it: the fallback, never the corrupt version
    serving.serving_forget()
    assert serving.serving_reload() is None
    assert bad in serving.serving_status().error


@pytest.fixture
def staff_client(client):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("staff-corrupt", password="pw-corrupt-123", is_staff=True)
    client.force_login(user)
    return client


def test_a_version_that_fails_to_load_is_retried_with_back_off_not_at_every_poll(served, settings, monkeypatch):
    shop, good = served
    bad = _publish_corrupt(Registry(Path(settings.MODEL_DIR)), good.version, "nan_weights")
    ModelVersion.objects.filter(version=good.version).update(is_active=False)
    ModelVersion.objects.filter(version=bad).update(is_active=True)

    from shop.recs import engine

    loads: list[str] = []
    real = engine.load_ranker

    def counting(**kwargs):
        loads.append(kwargs["version"])
        return real(**kwargs)

    monkeypatch.setattr(engine, "load_ranker", counting)
    clock = [1000.0]
    monkeypatch.setattr(serving.time, "monotonic", lambda: clock[0])

    for _ in range(10):  # ten polls in the same instant: one load
        assert serving.serving_reload().version == good.version
    assert loads == [bad] and bad in serving.serving_status().error
    clock[0] += serving.RETRY_MIN_S + 0.1  # after the first back-off: a second try
    serving.serving_reload()
    assert loads == [bad, bad]
    clock[0] += serving.RETRY_MIN_S + 0.1  # the back-off doubled: not yet
    serving.serving_reload()
    assert loads == [bad, bad]
    clock[0] += serving.RETRY_MIN_S  # now 2 x RETRY_MIN_S after the second try
    serving.serving_reload()
    assert loads == [bad, bad, bad]
    # the good version back: loaded from memory at once, the failed one forgotten when it loads
    ModelVersion.objects.filter(version=bad).update(is_active=False)
    ModelVersion.objects.filter(version=good.version).update(is_active=True)
    assert serving.serving_reload().version == good.version and serving.serving_status().error == ""

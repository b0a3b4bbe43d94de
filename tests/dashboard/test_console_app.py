"""Every console page rendered by Streamlit's AppTest against a real HTTP server of the shop with seeded
data: the figures on the page are the API's; logged-out visitors and non-staff accounts see nothing."""

from __future__ import annotations

import datetime as dt

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP, PASSWORD, api_get

pytestmark = [pytest.mark.django_db(transaction=True)]

PAGES = ["overview", "experiment", "models", "accelerator", "inspector"]


@pytest.fixture
def api(live_server, monkeypatch):
    monkeypatch.setenv("CONSOLE_API_URL", live_server.url)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield live_server.url
    st.cache_data.clear()
    st.cache_resource.clear()


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def _texts(at: AppTest) -> str:
    """Every text the page rendered (markdown, captions, alerts, metrics), in one string."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(parts)


def _login(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    at.run()
    inputs = at.text_input
    inputs[0].input(username)
    inputs[1].input(password)
    at.button[0].click()
    return at.run()


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    return at.run()


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------------------------------------- access


def test_nothing_but_the_login_form_before_log_in(api, accounts, seeded):
    at = _app().run()
    _assert_clean(at)
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.metric and not at.dataframe
    assert "Visitors" not in _texts(at)
    assert len(at.sidebar.button) == 0  # no navigation, no log out


def test_non_staff_account_is_refused(api, accounts, seeded):
    at = _login(_app(), "shopper")
    _assert_clean(at)
    assert "not staff" in " ".join(e.value for e in at.error)
    assert not at.metric and not at.dataframe
    assert "token" not in at.session_state


def test_wrong_password_is_refused(api, accounts):
    at = _login(_app(), "staffer", "wrong")
    assert "Wrong username or password" in " ".join(e.value for e in at.error)
    assert "token" not in at.session_state


def test_log_in_then_log_out(api, accounts, seeded):
    at = _login(_app(), "staffer")
    _assert_clean(at)
    assert at.session_state["token"]
    assert at.title[0].value == "Overview"
    at.sidebar.button(key="logout").click()
    at.run()
    assert "token" not in at.session_state
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.metric


def test_a_revoked_token_sends_back_to_the_login_form(api, accounts, seeded):
    from rest_framework.authtoken.models import Token

    at = _login(_app(), "staffer")
    Token.objects.all().delete()
    st.cache_data.clear()
    _open(at, "models")
    assert "token" not in at.session_state
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_api_down_is_said_plainly(monkeypatch, accounts):
    monkeypatch.setenv("CONSOLE_API_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    st.cache_data.clear()
    at = _login(_app(), "staffer")
    _assert_clean(at)
    assert "does not answer" in " ".join(e.value for e in at.error)
    assert "make demo" in " ".join(e.value for e in at.error)


# ----------------------------------------------------------------------------------------------- pages


def test_overview_shows_the_api_figures(api, accounts, seeded):
    at = _login(_app(), "staffer")
    _assert_clean(at)
    token = at.session_state["token"]
    figures = api_get(api, "/api/console/overview", token, minutes=60, buckets=30)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Visitors"] == f"{figures['visitors']:,}" == "4"
    assert shown["Sessions"] == f"{figures['sessions']:,}" == "5"
    assert shown["Events per minute"] == f"{figures['events_per_minute']:,.1f}"
    assert shown["Rail CTR"] == f"{100 * figures['ctr']:.2f}%" == "16.67%"
    assert shown["Conversion rate"] == f"{100 * figures['conversion_rate']:.2f}%" == "25.00%"
    assert shown["Revenue"] == f"{float(figures['revenue']):,.2f}" == "42.50"


def test_overview_serving_mix_and_fallback_reasons_are_the_api_figures(api, accounts, seeded, serving_rows):
    at = _login(_app(), "staffer")
    _assert_clean(at)
    stats = api_get(api, "/api/recs/serving-stats", at.session_state["token"], minutes=60)
    mix, reasons = at.dataframe[0].value, at.dataframe[1].value
    assert (
        dict(zip(mix["source"], mix["requests"], strict=True))
        == stats["by_source"]
        == {
            "live": 98,
            "popularity": 52,
        }
    )
    assert dict(zip(reasons["reason"], reasons["count"], strict=True)) == stats["fallback_reasons"] == {"budget": 2}


def test_overview_with_no_activity_names_the_command(api, accounts):
    at = _login(_app(), "staffer")
    _assert_clean(at)
    assert "manage.py simulate" in _texts(at)
    assert {m.label: m.value for m in at.metric}["Visitors"] == "0"


def test_models_page_lists_versions_and_refuses_promotion_without_permission(api, accounts, model_versions):
    at = _open(_login(_app(), "staffer"), "models")
    _assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["version"]) == ["v0002", "v0001"]
    assert list(table["auc"]) == [0.74, 0.71]
    assert list(table["examples"]) == [1500, 1000]
    assert "Active version: **v0002**" in _texts(at)
    assert "lacks the recs.change_modelversion permission" in _texts(at)
    assert not [b for b in at.button if b.label == "Promote"]


def test_models_page_shows_each_versions_quality_beside_the_baselines_as_the_api_gives_them(
    api, accounts, model_versions
):
    at = _open(_login(_app(), "staffer"), "models")
    _assert_clean(at)
    versions = api_get(api, "/api/console/models", at.session_state["token"])["versions"]
    quality = at.dataframe[1].value
    expected = [(v["version"], q) for v in versions for q in v["quality"]]
    assert len(quality) == len(expected) == 4  # v0002: itself, stage 1 alone, popularity; v0001: itself only
    for row, (version, q) in zip(quality.itertuples(), expected, strict=True):
        assert (row.version, row.label) == (version, q["label"])
        for col in (
            "ndcg_at_10", "recall_at_10", "hr_at_10", "users", "ndcg_vs_popularity", "best_sellers_at_10",
            "distinct_at_10",
        ):  # fmt: skip
            assert _same(getattr(row, col), q[col]), (version, col)
    assert list(quality["ndcg_at_10"][:3]) == [0.12, 0.1, 0.08]
    gate = at.dataframe[2].value
    assert list(gate["version"]) == ["v0002"]
    assert (gate["challenger_ndcg"][0], gate["popularity_ndcg"][0], gate["champion_ndcg"][0]) == (
        versions[0]["gate"]["challenger_ndcg"],
        versions[0]["gate"]["popularity_ndcg"],
        versions[0]["gate"]["champion_ndcg"],
    )
    assert "v0001: trained before baselines were stored" in _texts(at)
    # how each version was trained, as the API gives it (v0001 predates it), and a plain word where it ranks as
    # stage 1's order does
    training = at.dataframe[3].value
    assert list(training["version"]) == ["v0002"]
    for col, value in versions[0]["training"].items():
        assert _same(training[col][0], value), col
    assert training["note"][0] == "no update improved its validation loss: it ranks as stage 1's order does"


def test_models_page_promotion_needs_confirmation_and_reports_the_registry_refusal(
    api, accounts, model_versions, settings, tmp_path
):
    settings.MODEL_DIR = tmp_path / "models"  # no artifact on disk: the registry must refuse
    at = _open(_login(_app(), "merchant"), "models")
    _assert_clean(at)
    promote = at.button(key="promote")
    assert promote.disabled  # not confirmed yet
    at.checkbox(key="promote_confirm").check()
    at.run()
    at.button(key="promote").click()
    at.run()
    _assert_clean(at)
    assert "cannot be promoted" in _texts(at)
    from shop.recs.models import ModelVersion

    assert ModelVersion.objects.get(is_active=True).version == "v0002"


def test_models_page_retrain_shows_the_run_progress(api, accounts, model_versions, monkeypatch):
    from shop.recs.models import TaskRun

    monkeypatch.setattr("shop.recs.runs.task_send", lambda **kw: None)  # no worker here: the run stays queued
    at = _open(_login(_app(), "staffer"), "models")
    at.button(key="retrain").click()
    at.run()
    _assert_clean(at)
    run = TaskRun.objects.get(kind=TaskRun.Kind.RETRAIN)
    assert at.session_state["retrain_task"] == str(run.id)
    assert at.get("progress")[0].proto.text == "pending: queued (0%)"
    TaskRun.objects.filter(pk=run.pk).update(state=TaskRun.State.RUNNING, stage="training", percent=42.0)
    at.run()
    assert at.get("progress")[0].proto.text == "running: training (42%)"
    assert at.get("progress")[0].proto.value == 42
    TaskRun.objects.filter(pk=run.pk).update(
        state=TaskRun.State.SUCCEEDED, stage="done", percent=100.0, result={"version": "v0003", "promoted": False}
    )
    at.run()
    assert "Trained v0003: kept as a candidate (the gate said no)" in _texts(at)


def test_models_page_without_versions_names_the_command(api, accounts):
    at = _open(_login(_app(), "staffer"), "models")
    _assert_clean(at)
    assert "manage.py retrain" in _texts(at)


def test_accelerator_page_shows_the_benchmark_rows(api, accounts, bench_rows):
    at = _open(_login(_app(), "staffer"), "accelerator")
    _assert_clean(at)
    token = at.session_state["token"]
    figures = api_get(api, "/api/console/accelerator", token)
    cells = {(c["precision"], c["batch"]): c for c in figures["benchmarks"][0]["cells"] if c["path"] == "reuse"}
    table = at.dataframe[0].value
    assert len(table) == len(cells) == 4
    for row in table.itertuples():
        c = cells[(row.precision, row.batch)]
        assert row.p50_ms == c["p50_ms"]
        assert row.p95_ms == c["p95_ms"]
        assert row.p99_ms == c["p99_ms"]
        assert row.scores_per_s == c["scores_per_s"]
        assert row.speedup_p50 == pytest.approx(3.0)  # the seeded baseline is 3x slower at p50
    text = _texts(at)
    assert "No GPU results" in text
    sweep = at.dataframe[-1].value
    assert list(sweep["setting"]) == [r["setting"] for r in figures["sweep"]["rows"]]


def test_accelerator_page_without_results_names_the_commands(api, accounts, settings, tmp_path):
    settings.BENCH_DIR = tmp_path
    at = _open(_login(_app(), "staffer"), "accelerator")
    _assert_clean(at)
    text = _texts(at)
    assert "manage.py benchmark_accelerator" in text
    assert "python -m recommender.sweep" in text and "--out var/bench/pipeline_sweep.json" in text


def test_inspector_shows_the_visitor_history(api, accounts, seeded):
    at = _open(_login(_app(), "staffer"), "inspector")
    _assert_clean(at)
    token = at.session_state["token"]
    visitors = api_get(api, "/api/console/visitors", token, minutes=60 * 24 * 7, limit=100)
    assert at.selectbox(key="inspect_pick").value == visitors[0]["visitor_id"]
    history = api_get(api, f"/api/console/visitors/{visitors[0]['visitor_id']}/events", token, limit=30)
    shown = at.dataframe[0].value
    assert list(shown["type"]) == [h["type"] for h in history]
    assert list(shown["product_name"]) == [h["product_name"] for h in history]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_staff_without_an_exception(api, accounts, seeded, page):
    at = _open(_login(_app(), "staffer"), page)
    _assert_clean(at)
    assert at.title[0].value


def _frame(at: AppTest, column: str):
    """The one table on the page with this column."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def _same(shown, api_value) -> bool:
    """A table cell equals the API's value (an absent value shows as an empty cell: NaN)."""
    if api_value is None:
        return shown is None or shown != shown
    return shown == api_value


def test_experiment_page_shows_the_api_results(api, accounts, experiment_traffic):
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    token = at.session_state["token"]
    results = api_get(api, "/api/experiments/current/results", token)
    text = _texts(at)
    primary = next(m for m in results["metrics"] if m["primary"])
    for c in primary["comparisons"]:  # the verdict on the primary metric, one line per arm
        assert c["verdict"] in text and "not enough data yet" in c["verdict"]  # 40 visitors per arm
    for note in results["serving_mix"]["warnings"]:
        assert note[1:] in text
    mix = _frame(at, "own_share")
    assert list(mix["arm"]) == [a["arm"] for a in results["serving_mix"]["arms"]]
    assert list(mix["requests"]) == [a["requests"] for a in results["serving_mix"]["arms"]]
    assert results["srm"]["verdict"] in text
    for arm in results["experiment"]["arms"]:
        assert f"{arm['key']}" in text and f"{arm['visitors']:,} visitors" in text
    assert [a["visitors"] for a in results["experiment"]["arms"]] == [40, 40, 40]
    table = _frame(at, "p_value")
    comparisons = {
        (m["label"] + (" (primary)" if m["primary"] else ""), c["arm"]): c
        for m in results["metrics"]
        for c in m["comparisons"]
    }
    assert len(table) == len(comparisons) == 10  # five metrics x two arms against control
    rail = next(m for m in results["metrics"] if m["metric"] == "rail_conversion")
    assert rail["note"].startswith("Conversion through a rail") and rail["note"] in text  # how to read it
    for row in table.itertuples():
        c = comparisons[(row.metric, row.arm)]
        assert (row.control, row.arm_value, row.control_n, row.arm_n) == (
            c["control_value"],
            c["arm_value"],
            c["control_n"],
            c["arm_n"],
        )
        assert _same(row.lift, c["lift"]) and _same(row.p_value, c["p_value"])
        assert row.verdict == c["verdict"]
    dlrm = next(c for c in primary["comparisons"] if c["arm"] == "dlrm")
    assert (dlrm["control_value"], dlrm["arm_value"]) == (pytest.approx(4 / 40), pytest.approx(10 / 40))
    versions = _frame(at, "model_version")
    assert set(versions["model_version"]) == {r["model_version"] or "(none)" for r in results["by_model_version"]}
    assert len(at.get("vega_lite_chart")) >= 2  # the lift CI bars and the lift over time


def test_experiment_page_shows_what_the_rails_showed_as_the_api_gives_it(api, accounts, experiment_traffic):
    from django.utils import timezone

    from shop.events.models import Event, EventType
    from tests.factories import EventFactory, ProductFactory

    # the fixture's cards are on a plain "home" placement: add personalised rail cards, one of them the
    # visitor's own product (viewed before), one clicked
    shopper = Event.objects.filter(arm="dlrm").values_list("visitor_id", flat=True).first()
    mine, other = ProductFactory(), ProductFactory()
    now = timezone.now()
    EventFactory(visitor_id=shopper, product=mine, type=EventType.VIEW, occurred_at=now)
    for product in (mine, other):
        EventFactory(
            visitor_id=shopper,
            product=product,
            type=EventType.IMPRESSION,
            placement="product.recommended",
            arm="dlrm",
            occurred_at=now + dt.timedelta(seconds=1),
        )
    EventFactory(
        visitor_id=shopper,
        product=mine,
        type=EventType.CLICK,
        placement="product.recommended",
        occurred_at=now + dt.timedelta(seconds=2),
    )
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    composition = api_get(api, "/api/experiments/current/composition", at.session_state["token"])
    frame = _frame(at, "other_control_share")
    assert list(frame["arm"]) == [a["arm"] for a in composition["arms"]] == ["popularity", "heuristic", "dlrm"]
    dlrm = frame[frame["arm"] == "dlrm"].iloc[0]
    assert (dlrm["cards"], dlrm["products"], dlrm["own_share"], dlrm["own_ctr"], dlrm["other_ctr"]) == (
        2,
        2,
        0.5,
        1.0,
        0.0,
    )
    assert "What the rails showed" in _texts(at) or any(h.value == "What the rails showed" for h in at.subheader)


def test_experiment_page_says_how_revenue_per_visitor_was_capped(api, accounts, experiment_traffic):
    from decimal import Decimal

    from django.utils import timezone

    from shop.events.models import Event
    from tests.factories import OrderFactory

    buyer = Event.objects.filter(type="purchase", arm="dlrm").values_list("visitor_id", flat=True).first()
    OrderFactory(visitor_id=buyer, total=Decimal("5000.00"), placed_at=timezone.now())  # one whale order
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    results = api_get(api, "/api/experiments/current/results", at.session_state["token"])
    revenue = next(m for m in results["metrics"] if m["metric"] == "revenue_per_visitor")
    assert revenue["cap"]["visitors_capped"] == 1 and revenue["cap"]["largest"] > 5000.0  # with its earlier order
    assert revenue["note"] and revenue["note"] in _texts(at)


def test_experiment_page_says_why_there_is_no_lift_while_control_has_not_converted(
    api, accounts, experiment_traffic_control_unsold
):
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    text = _texts(at)
    assert "Lift over time needs visitors in control and another arm" not in text  # they are there: 40 per arm
    assert "control (popularity) has 40 visitors and no conversion" in text
    assert "No lift for Conversion (visitors with an order) (primary) · heuristic; Conversion" in text
    assert len(at.get("vega_lite_chart")) == 1  # the CI chart (other metrics have a lift); no lift over time


def test_experiment_page_guardrails_are_the_api_figures(api, accounts, experiment_traffic, serving_rows):
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    rows = api_get(api, "/api/console/guardrails", at.session_state["token"], minutes=1440)
    shown = _frame(at, "latency_ms_p99")
    assert list(shown["arm"]) == [r["arm"] for r in rows] == ["dlrm", "popularity"]
    assert list(shown["latency_ms_p99"]) == [r["latency_ms_p99"] for r in rows]
    assert list(shown["fallback_rate"]) == [r["fallback_rate"] for r in rows] == [0.02, 0.0]


def test_experiment_page_with_no_traffic_names_the_command(api, accounts):
    from shop.experiments.services import experiment_ensure_default

    experiment_ensure_default()
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    assert "No visitor has been assigned to an arm yet" in _texts(at)
    assert "manage.py simulate" in _texts(at)
    assert not at.dataframe


def test_experiment_page_without_any_experiment_says_so(api, accounts):
    from shop.experiments.models import Experiment
    from shop.experiments.selectors import running_experiment_forget

    Experiment.objects.all().delete()
    running_experiment_forget()
    at = _open(_login(_app(), "staffer"), "experiment")
    _assert_clean(at)
    assert "No experiment is running" in _texts(at)
    assert not at.dataframe


def test_inspector_previews_every_arm_with_the_api_lists(api, accounts, experiment_traffic, seeded):
    at = _open(_login(_app(), "staffer"), "inspector")
    _assert_clean(at)
    token = at.session_state["token"]
    visitor = at.selectbox(key="inspect_pick").value
    text = _texts(at)
    lists = []
    for arm in ("popularity", "heuristic", "dlrm"):
        expected = api_get(
            api, "/api/recommendations", token, placement="home.recommended", k=8, visitor_id=visitor, arm=arm
        )
        assert expected["arm"] == arm
        assert f"**{arm}** · source `{expected['source']}`" in text
        if expected["items"]:
            lists.append([i["product_id"] for i in expected["items"]])
    assert lists  # the catalogue has products: every arm shows something, if only the popular list
    shown = [list(d.value["product_id"]) for d in at.dataframe[1:]]  # the first table is the history
    assert shown == lists
    assert "Per stage: assign" in text

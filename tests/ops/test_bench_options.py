"""The benchmarks' options and what they report: ``python -m benchmarks.recs`` chooses what to measure on the
command line (a bad choice is named); both recommendation and page benchmarks report how the personal
rails were served, from the service's own counters."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from benchmarks.harness import serving_mark, serving_mix
from benchmarks.recs import parse_args, request_durations
from shop.recs.models import ServingStat


def test_endpoints_modes_and_scoring_threads_are_parsed():
    args = parse_args(["--endpoints", "live, plain JSON", "--modes", "paced", "--serving-threads", "0"])
    assert args.endpoints == ["live", "plain JSON"] and args.modes == ["paced"] and args.serving_threads == 0
    default = parse_args([])
    assert default.endpoints == ["live", "popularity", "plain JSON"] and default.modes == ["paced", "closed loop"]
    assert default.serving_threads is None  # the deployed setting


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--endpoints", "live,everything"], "--endpoints: everything not one of live, popularity, plain JSON"),
        (["--endpoints", ","], "--endpoints: nothing given"),
        (["--modes", "open"], "--modes: open not one of paced, closed loop"),
        (["--serving-threads", "-1"], "--serving-threads must be 0 or more, got -1"),
    ],
)
def test_a_bad_choice_stops_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def _stat(placement: str, source: str, reason: str, requests: int, latency_ms: float) -> ServingStat:
    buckets = list(ServingStat.LATENCY_BUCKETS_MS)
    hist = [0] * (len(buckets) + 1)
    hist[next(i for i, b in enumerate(buckets) if latency_ms <= b)] = requests
    return ServingStat.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0),
        placement=placement,
        source=source,
        reason=reason,
        requests=requests,
        latency_ms_sum=latency_ms * requests,
        latency_ms_max=latency_ms,
        stage_ms_sum={"rank": 2.0 * requests},
        latency_hist=hist,
    )


@pytest.mark.django_db
def test_the_serving_mix_counts_only_what_came_after_the_mark():
    _stat("product.recommended", "live", "", 50, 9.0)  # before the run
    mark = serving_mark()
    _stat("product.recommended", "live", "", 30, 9.0)
    _stat("product.recommended", "fallback", "over_budget", 10, 30.0)
    _stat("home.recommended", "fallback", "no_model", 5, 2.0)
    mix = serving_mix(after_id=mark, placement="product.recommended")
    assert mix["requests"] == 40
    assert mix["by_source"] == {"live": 30, "fallback": 10} and mix["reasons"] == {"over_budget": 10}
    assert mix["mean_ms"] == pytest.approx((30 * 9.0 + 10 * 30.0) / 40)
    assert mix["p50_ms_bucket"] == 10 and mix["p99_ms_bucket"] == 35
    assert mix["stage_ms_mean"] == {"rank": 2.0}
    assert serving_mix(after_id=serving_mark(), placement="product.recommended")["requests"] == 0


def test_the_web_server_is_chosen_on_the_command_line(capsys):
    assert parse_args([]).server == "gunicorn"  # the deployed server
    assert parse_args(["--server", "granian"]).server == "granian"
    assert parse_args(["--server", "nginx", "--workers", "4", "--threads", "1"]).server == "nginx"
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--server", "uvicorn"])
    assert stopped.value.code == 2
    assert "--server: invalid choice: 'uvicorn'" in capsys.readouterr().err


def test_server_durations_are_read_from_either_servers_access_log(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        "/api/recommendations 200 7421 <101>\n"  # gunicorn: microseconds
        "/api/recommendations 200 12.500ms <202>\n"  # granian: milliseconds, suffixed
        "/api/categories 200 2000 <101>\n"  # another path: not counted
        "/api/recommendations 429 1.000ms <202>\n"
        "/api/recommendations 200 0.019s <127.0.0.1:40109>\n"  # nginx: seconds, suffixed; the upstream answering
    )
    out = request_durations(log, start=0, path="/api/recommendations")
    assert out["requests"] == 4 and out["status"] == {"200": 3, "429": 1}
    assert out["max_ms"] == pytest.approx(19.0) and out["min_ms"] == pytest.approx(1.0)
    assert sorted(out["per_process"].items()) == [("101", 1), ("127.0.0.1:40109", 1), ("202", 2)]
    assert out["busiest_process_share"] == pytest.approx(2 / 4, abs=1e-3)


def test_gunicorns_worker_class_is_refused_with_another_server(capsys):
    from benchmarks import pages

    assert pages.parse_args(["--server", "granian"]).server == "granian"
    with pytest.raises(SystemExit) as stopped:
        pages.parse_args(["--server", "granian", "--worker-class", "sync"])
    assert stopped.value.code == 2
    assert "--worker-class is gunicorn's" in capsys.readouterr().err
    # behind nginx the processes are gunicorns: their worker class is still the operator's to choose
    assert pages.parse_args(["--server", "nginx", "--worker-class", "sync"]).worker_class == "sync"


def test_the_ingest_benchmark_serves_with_the_worker_class_and_server_asked_for(monkeypatch):
    from benchmarks import ingest

    asked = {}

    class Stop(Exception):
        pass

    def stack(**kwargs):
        asked.update(kwargs)
        raise Stop

    monkeypatch.setattr(ingest, "Stack", stack)
    with pytest.raises(Stop):
        ingest.main(["--worker-class", "sync", "--threads", "1"])
    assert asked["worker_class"] == "sync" and asked["threads"] == 1 and asked["server"] == "gunicorn"


def test_the_cold_core_probe_times_every_mode_beside_its_baseline_and_names_a_bad_option(tmp_path, capsys):
    from benchmarks import idle

    out = tmp_path / "idle.json"
    assert (
        idle.main(["--objects", "20000", "--touch", "500", "--gap-ms", "1", "--rounds", "5", "--json", str(out)]) == 0
    )
    modes = json.loads(out.read_text())["modes"]
    assert set(modes) == set(idle.MODES)
    assert all(0 < m["median_ms"] <= m["p90_ms"] for m in modes.values()), modes
    assert "median x back to back" in capsys.readouterr().out
    for bad, name in ((["--touch", "0"], "--touch"), (["--gap-ms", "0"], "--gap-ms"), (["--rounds", "2"], "--rounds")):
        with pytest.raises(SystemExit) as stopped:
            idle.parse_args(bad)
        assert stopped.value.code == 2 and name in capsys.readouterr().err

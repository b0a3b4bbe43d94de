"""The benchmark commands run end to end (tiny durations) and write sane figures.

They are benchmarks, not timed tests: nothing here asserts a speed target, only that a run
produces positive figures, stores every event exactly once, and answers every request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run_to_json(module: str, out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a benchmark that must succeed; its printed output and the JSON it wrote to ``out``."""
    run = _run(module, *args, "--json", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads(out.read_text())


def _run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    "server",
    [
        (),
        # batches of 500 events through nginx: bodies larger than its memory buffer pass through to the application
        ("--server", "nginx", "--workers", "2", "--threads", "2"),
    ],
    ids=["gunicorn", "nginx"],
)
def test_ingest_benchmark_stores_every_event_once_and_reports_figures(tmp_path, server):
    out = tmp_path / "ingest.json"
    run, result = _run_to_json(
        "benchmarks.ingest",
        out,
        *("--duration", "2", "--warmup", "0", "--products", "200", "--concurrency", "2", *server),
    )

    ours, baseline = result["ours"], result["baseline"]
    assert ours["batch_size"] == 500 and baseline["batch_size"] == 1
    for r in (ours, baseline):
        assert r["events_per_s"] > 0
        assert r["errors"] == 0
        assert r["events_stored"] == r["events_sent"] == r["events_accepted"] > 0
        assert r["rows_after"] - r["rows_before"] == r["events_stored"]
        assert 0 < r["post_latency"]["p50_ms"] <= r["post_latency"]["p99_ms"] <= r["post_latency"]["max_ms"]
    assert result["ratio"]["events_per_s"] == pytest.approx(ours["events_per_s"] / baseline["events_per_s"], rel=0.01)
    assert result["replay_check"]["ok"] is True
    assert result["machine"]["logical_cores"] >= 1
    assert result["postgres"]["version"]
    # the figures are printed too, not only written
    assert "events/s" in run.stdout and "ratio" in run.stdout


def test_pages_benchmark_reports_latency_for_pages_and_baseline(tmp_path):
    out = tmp_path / "pages.json"
    run, result = _run_to_json(
        "benchmarks.pages",
        out,
        # 7 targets x 2 load models x 2 generators: 1 s each (about 25 requests paced) keeps it a smoke test
        *("--duration", "1", "--warmup", "0", "--products", "200", "--clients", "5", "--rate", "5"),
        *("--generator", "both"),
    )

    runs = result["runs"]
    seen = {(r["generator"], r["target"], r["model"]) for r in runs}
    pages = result["pages"]
    assert set(pages) == {"product", "product-rail", "category", "search", "home", "home-rail"}
    # a page's CPU is judged with its personal rail, fetched after load, added
    for page, rail in (("product", "product-rail"), ("home", "home-rail")):
        both = pages[page]["server_cpu_ms_per_page"] + pages[rail]["server_cpu_ms_per_page"]
        assert pages[page]["server_cpu_ms_with_rail_after_load"] == pytest.approx(both, abs=0.01)
    for generator in {r["generator"] for r in runs}:
        for target in (*pages, "baseline"):
            for model in ("paced", "closed"):
                assert (generator, target, model) in seen
    assert "python" in {r["generator"] for r in runs}
    for r in runs:
        if r["target"] == "warm-up":
            continue
        assert r["requests"] > 0, r
        assert r["error_count"] == 0, r
        assert r["requests_per_s"] > 0
        lat = r["latency"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        # wrk adds samples for stalls it corrects (coordinated omission); the Python generator does not
        assert sum(b["count"] for b in r["histogram"]) == r["latency_samples"] >= r["requests"]
    for name, page in pages.items():
        assert page["saturation_rps"] > 0 and page["paced_p99_ms"] > 0, name
        assert page["ratio"]["saturation_rps_vs_baseline"] > 0, name
        assert isinstance(page["queries"], int) and page["queries"] >= 0, name
    # a returning shopper's category or search page may run none (shared lists, held cards); a product
    # page always writes its view event
    assert pages["product"]["queries"] >= 1
    assert result["baseline"]["saturation_rps"] > 0
    assert "p99" in run.stdout


@pytest.mark.parametrize(
    ("server", "processes", "worker_class"),
    [
        ("granian", ("--threads", "2"), "granian wsgi"),
        # one gunicorn a process behind nginx, which sends each request to the one with the fewest in flight
        ("nginx", ("--workers", "2", "--threads", "1"), "gthread behind nginx (least_conn)"),
    ],
    ids=["granian", "nginx"],
)
def test_pages_benchmark_runs_the_same_application_behind_another_server(tmp_path, server, processes, worker_class):
    out = tmp_path / f"pages-{server}.json"
    run, result = _run_to_json(
        "benchmarks.pages",
        out,
        *("--server", server, *processes, "--pages", "product,category", "--duration", "2", "--warmup", "0"),
        *("--products", "200", "--clients", "5", "--rate", "5"),
    )
    assert result["settings"]["web_server"] == server
    assert result["settings"]["gunicorn"]["worker_class"] == worker_class
    assert str(result["settings"]["gunicorn"]["threads"]) == processes[-1]
    assert set(result["pages"]) == {"product", "category"}
    for r in result["runs"]:
        if r["target"] != "warm-up":
            assert r["requests"] > 0 and r["error_count"] == 0, r
    # the product page wrote its views through the application behind that server
    assert result["pages"]["product"]["queries"] >= 1
    assert server in run.stdout

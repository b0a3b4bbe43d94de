"""The live request benchmark runs end to end on a small log and reports both paths with their ratios."""

import json

from recommender.bench_live import main


def test_bench_live_writes_both_paths_and_ratios(tmp_path, capsys):
    out = tmp_path / "live.json"
    assert main(["--sizes", "20000", "--requests", "5", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and report["candidates"] == 500
    (row,) = report["sizes"]
    assert row["events"] == 20000 and row["history_events_of_visitor"] > 0
    for path in ("snapshot", "live"):
        p = row["paths"][path]
        assert p["candidates"] > 100
        assert 0 < p["features_p50_ms"] <= p["features_p99_ms"]
        assert 0 < p["model_p50_ms"] < p["total_p50_ms"]
    assert row["ratios"]["features_p50_snapshot_over_live"] > 0
    assert "old / new" in capsys.readouterr().out

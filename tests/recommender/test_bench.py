"""The accelerator benchmark CLI runs (quick) and writes the JSON the console reads."""

from __future__ import annotations

import json
import os

from recommender.bench import main


def test_quick_bench_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench" / "accelerator.json"
    assert main(["--quick", "--batch-sizes", "16", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    cells = report["cells"]
    # cpu x (fp32, int8) x one batch x one thread, each with its baseline next to it
    assert {(c["precision"], c["path"]) for c in cells} == {
        ("fp32", "reuse"),
        ("fp32", "baseline"),
        ("int8", "reuse"),
        ("int8", "baseline"),
    }
    for c in cells:
        assert 0 < c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"] and c["scores_per_s"] > 0
        assert c["embedding_p50_ms"] > 0 and c["mlp_p50_ms"] > 0
    floors = report["floors"]["cpu/threads=1"]
    assert floors["memory_bandwidth_gb_s"] > 0 and floors["matmul_big_gflop_s"] > 0
    rank = report["targets"]["rank_500_one_user/threads=1"]
    assert rank["p50_ms"] > 0 and rank["baseline_p50_ms"] > 0 and rank["target_p50_ms"] == 2.0
    batch = report["targets"]["batch_scoring/threads=1"]
    assert batch["scores"] == batch["items"] * batch["users_scored"] and batch["ratio"] > 0
    if (os.cpu_count() or 1) > 1:  # whole-catalogue scoring over forked single-thread workers, ours and baseline
        procs = report["targets"]["batch_scoring/processes=2"]
        assert procs["scores"] == batch["scores"] and procs["baseline_scores_per_s"] > 0 and procs["ratio"] > 0
    assert report["int8_agreement"]["top10_overlap_mean"] >= 0.8
    printed = capsys.readouterr().out
    assert "machine floors" in printed and "targets" in printed and "wrote" in printed

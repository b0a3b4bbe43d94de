"""Accelerator latency: p50/p95/p99 and scores/s by batch size per device and precision, where inference time
goes (embeddings vs MLP), the machine's floors, live per-stage latency, and the candidates sweep."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, client, session

REFRESH_S = 15
BENCH_CMD = "`.venv/bin/python manage.py benchmark_accelerator --wait` (or the button below; a worker must run)"
SWEEP_CMD = (
    "`.venv/bin/python -m recommender.sweep --synthetic-users 800 --eval-users 300 --out var/bench/pipeline_sweep.json`"
)

st.title("Accelerator latency")

data = session.read(client.ACCELERATOR, what="Accelerator benchmarks")
if data is None:
    st.stop()

benchmarks = data["benchmarks"]
cells = charts.cells_frame(benchmarks)

st.subheader("Scoring one user's candidates, by batch size")
if cells.empty:
    st.info(f"No accelerator benchmark has been stored yet. Run {BENCH_CMD}.")
else:
    for b in benchmarks:
        m = b.get("machine") or {}
        st.caption(
            f"{b['device']} on {b['hostname'] or 'a worker'}, {b['created_at'][:19]} UTC: {m.get('cpu', '')}, "
            f"{m.get('cores', '?')} cores, torch {m.get('torch', '?')}, CUDA: {m.get('cuda') or 'none'}"
            + (" (quick run: small model)" if b.get("quick") else "")
        )
    if not (cells["device"] == "cuda").any():
        st.info(
            "No GPU results: no GPU worker has reported a benchmark. On a machine with CUDA run "
            "`celery -A worker worker -Q gpu --pool solo`, then start a benchmark."
        )
    threads = sorted(cells["threads"].unique())
    th = st.segmented_control("Threads", threads, default=threads[0], key="acc_threads") or threads[0]
    view = cells[cells["threads"] == th]
    left, right = st.columns(2)
    with left:
        st.caption("p50 (solid), p95 and p99 (dashed) latency")
        st.altair_chart(charts.latency_chart(view), use_container_width=True)
    with right:
        st.caption("Scores per second")
        st.altair_chart(charts.throughput_chart(view), use_container_width=True)
    st.dataframe(
        view[
            [
                "device",
                "precision",
                "batch",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "scores_per_s",
                "baseline_p50_ms",
                "baseline_p95_ms",
                "baseline_p99_ms",
                "speedup_p50",
            ]
        ],
        hide_index=True,
        column_config=charts.number_columns(
            p50_ms=("p50 ms", "%.3f"),
            p95_ms=("p95 ms", "%.3f"),
            p99_ms=("p99 ms", "%.3f"),
            scores_per_s=("scores/s", "%,.0f"),
            baseline_p50_ms=("plain DLRM p50 ms", "%.3f"),
            baseline_p95_ms=("plain DLRM p95 ms", "%.3f"),
            baseline_p99_ms=("plain DLRM p99 ms", "%.3f"),
            speedup_p50=("speed-up (p50)", "%.2fx"),
        ),
    )
    st.caption(
        "Baseline: the plain torchrec DLRM forward on the same rows in the same run (the user's side repeated in "
        "every row). Speed-up: plain DLRM p50 / ours."
        + (" This benchmark predates p95: run it again to fill that column." if cells["p95_ms"].isna().all() else "")
    )

    st.subheader("Where does inference time go?")
    st.caption("Embedding lookups vs MLPs + feature interaction, share of the p50 time (the MicroRec question).")
    st.altair_chart(charts.split_chart(view), use_container_width=False)

    st.subheader("The machine's floors")
    floors = [
        {"worker": b["device"], "device / threads": key, **vals}
        for b in benchmarks
        for key, vals in (b.get("floors") or {}).items()
    ]
    if floors:
        st.dataframe(
            pd.DataFrame(floors)[
                [
                    "worker",
                    "device / threads",
                    "memory_bandwidth_gb_s",
                    "matmul_big_gflop_s",
                    "matmul_mlp_4096x128x128_gflop_s",
                ]
            ],
            hide_index=True,
            column_config=charts.number_columns(
                memory_bandwidth_gb_s=("memory GB/s", "%.1f"),
                matmul_big_gflop_s=("matmul GFLOP/s", "%.1f"),
                matmul_mlp_4096x128x128_gflop_s=("MLP-shaped matmul GFLOP/s", "%.1f"),
            ),
        )

if st.button("Run the accelerator benchmark", key="acc_run"):
    done, started = session.act(
        client.BENCHMARK, what="Starting a benchmark", conflict="A benchmark is already queued or running"
    )
    if done:
        st.success(f"Benchmark queued (task {started['task_id']}); a worker stores its figures here when done.")


@st.fragment(run_every=REFRESH_S)
def live_stages() -> None:
    st.subheader("Live serving latency per pipeline stage")
    stats = session.read(
        client.SERVING_STATS,
        what="Live serving latency",
        params={"minutes": 60},
        fill="It comes with the live recommendation service.",
    )
    if stats is None:
        return
    frame = charts.stage_latency_frame(stats)
    if frame.empty:
        st.info("No recommendation requests in the last hour: open the storefront or run `manage.py simulate`.")
        return
    st.altair_chart(charts.stage_latency_chart(frame), use_container_width=True)


live_stages()

st.subheader("Stage-1 candidates: quality vs latency")
sweep = data.get("sweep")
if not sweep:
    st.info(f"No candidates sweep yet. Run {SWEEP_CMD}.")
else:
    st.caption(
        f"{sweep.get('users')} users, catalogue of {sweep.get('catalogue')}, {sweep.get('precision')}, "
        f"{sweep.get('threads')} thread(s); written {str(sweep.get('written_at'))[:19]} UTC"
    )
    st.altair_chart(charts.sweep_chart(sweep["rows"]), use_container_width=True)
    st.dataframe(
        pd.DataFrame(sweep["rows"]),
        hide_index=True,
        column_config=charts.number_columns(
            n_candidates=("ranked per user", "%d"),
            recall_at_10=("Recall@10", "%.4f"),
            ndcg_at_10=("NDCG@10", "%.4f"),
            p50_ms=("p50 ms", "%.2f"),
            p99_ms=("p99 ms", "%.2f"),
            model_p50_ms=("model p50 ms", "%.3f"),
            model_p99_ms=("model p99 ms", "%.3f"),
        ),
    )
    st.caption(
        "Each setting: the pipeline with stage 1 handing that many candidates to the ranker; retrieval-only: stage "
        "1's own order; catalogue: the ranker over every item (single stage). Same users, same run."
    )

"""Shapes the API's figures into tables and Altair charts. Presentation only: nothing here computes a
statistic; every number drawn is one the API returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st


def number_columns(**specs: tuple[str, str]) -> dict:
    """``column=(label, format)`` pairs as Streamlit number columns for ``st.dataframe(column_config=...)``."""
    return {col: st.column_config.NumberColumn(label, format=fmt) for col, (label, fmt) in specs.items()}


# ------------------------------------------------------------------------------------------ serving


def serving_mix_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    """Requests per source (live / batch / popularity / fallback) and their share, as the serving-stats API
    counted them."""
    rows = [(str(k), int(v)) for k, v in (stats.get("by_source") or {}).items()]
    df = pd.DataFrame(rows, columns=["source", "requests"]).sort_values("requests", ascending=False)
    total = df["requests"].sum()
    df["share"] = df["requests"] / total if total else 0.0
    return df


def fallback_reasons_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    rows = [(str(k), int(v)) for k, v in (stats.get("fallback_reasons") or {}).items()]
    return pd.DataFrame(rows, columns=["reason", "count"]).sort_values("count", ascending=False)


def serving_mix_chart(mix: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(mix)
        .mark_arc(innerRadius=50)
        .encode(
            theta=alt.Theta("requests:Q"),
            color=alt.Color("source:N", scale=alt.Scale(domain=["live", "batch", "popularity", "fallback"])),
            tooltip=["source", "requests", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=220)
    )


# -------------------------------------------------------------------------------------- accelerator


def cells_frame(benchmarks: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (worker, device, precision, threads, batch): ours beside the plain-forward baseline."""
    rows = []
    for b in benchmarks:
        cells = b.get("cells") or []
        base = {
            (c["device"], c["precision"], c["threads"], c["batch"]): c for c in cells if c.get("path") == "baseline"
        }
        for c in cells:
            if c.get("path") != "reuse":
                continue
            key = (c["device"], c["precision"], c["threads"], c["batch"])
            bl = base.get(key, {})
            rows.append(
                {
                    "worker": b.get("hostname") or b.get("device"),
                    "device": c["device"],
                    "precision": c["precision"],
                    "series": f"{c['device']} {c['precision']} ({c['threads']} thr)",
                    "threads": c["threads"],
                    "batch": c["batch"],
                    "p50_ms": c["p50_ms"],
                    "p95_ms": c.get("p95_ms"),  # benchmarks stored before p95 was recorded have none
                    "p99_ms": c["p99_ms"],
                    "scores_per_s": c["scores_per_s"],
                    "embedding_ms": c.get("embedding_p50_ms"),
                    "mlp_ms": c.get("mlp_p50_ms"),
                    "baseline_p50_ms": bl.get("p50_ms"),
                    "baseline_p95_ms": bl.get("p95_ms"),
                    "baseline_p99_ms": bl.get("p99_ms"),
                    "baseline_scores_per_s": bl.get("scores_per_s"),
                    "speedup_p50": (bl["p50_ms"] / c["p50_ms"]) if bl.get("p50_ms") and c["p50_ms"] else None,
                }
            )
    return pd.DataFrame(rows)


def latency_chart(df: pd.DataFrame) -> alt.LayerChart:
    long = df.melt(
        id_vars=["series", "batch"], value_vars=["p50_ms", "p95_ms", "p99_ms"], var_name="percentile", value_name="ms"
    ).dropna(subset=["ms"])
    long["percentile"] = long["percentile"].str.removesuffix("_ms")
    base = alt.Chart(long).encode(
        x=alt.X("batch:Q", scale=alt.Scale(type="log"), title="batch size (candidates of one user)"),
        y=alt.Y("ms:Q", scale=alt.Scale(type="log"), title="latency (ms)"),
        color=alt.Color("series:N", title="device / precision"),
        strokeDash=alt.StrokeDash("percentile:N", sort=["p50", "p95", "p99"], title="percentile"),
        tooltip=["series", "batch", "percentile", alt.Tooltip("ms:Q", format=".3f")],
    )
    return (base.mark_line() + base.mark_point()).properties(height=320)


def throughput_chart(df: pd.DataFrame) -> alt.LayerChart:
    base = alt.Chart(df).encode(
        x=alt.X("batch:Q", scale=alt.Scale(type="log"), title="batch size"),
        y=alt.Y("scores_per_s:Q", scale=alt.Scale(type="log"), title="scores / s"),
        color=alt.Color("series:N", title="device / precision"),
        tooltip=["series", "batch", alt.Tooltip("scores_per_s:Q", format=",.0f")],
    )
    return (base.mark_line() + base.mark_point()).properties(height=320)


def split_chart(df: pd.DataFrame) -> alt.Chart:
    """Where inference time goes: embedding lookups vs the MLPs and interaction, per batch size."""
    long = df.melt(
        id_vars=["series", "batch"], value_vars=["embedding_ms", "mlp_ms"], var_name="stage", value_name="ms"
    )
    long["stage"] = long["stage"].map({"embedding_ms": "embedding lookups", "mlp_ms": "MLP + interaction"})
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("batch:O", title="batch size"),
            y=alt.Y("ms:Q", stack="normalize", title="share of p50 time", axis=alt.Axis(format="%")),
            color=alt.Color("stage:N"),
            column=alt.Column("series:N", title=None),
            tooltip=["series", "batch", "stage", alt.Tooltip("ms:Q", format=".3f")],
        )
        .properties(width=140, height=220)
    )


def sweep_chart(rows: list[Mapping[str, Any]]) -> alt.LayerChart:
    """The RecPipe trade-off: recall@10 against p99 latency, one point per stage-1 candidates setting."""
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        x=alt.X("p99_ms:Q", title="p99 latency per request (ms)", scale=alt.Scale(type="log")),
        y=alt.Y("recall_at_10:Q", title="recall@10"),
        tooltip=[
            "setting",
            alt.Tooltip("n_candidates:Q", format=".0f", title="ranked per user"),
            alt.Tooltip("recall_at_10:Q", format=".4f"),
            alt.Tooltip("ndcg_at_10:Q", format=".4f"),
            alt.Tooltip("p50_ms:Q", format=".2f"),
            alt.Tooltip("p99_ms:Q", format=".2f"),
        ],
    )
    return (base.mark_line(point=True) + base.mark_text(align="left", dx=6, dy=-6).encode(text="setting:N")).properties(
        height=320
    )


def stage_latency_frame(stats: Mapping[str, Any]) -> pd.DataFrame:
    """Mean latency per pipeline stage per minute from the serving-stats API, plus the request p99 (long
    format: time, stage, ms)."""
    rows = []
    for m in stats.get("per_minute") or []:
        when = pd.to_datetime(m["minute"])
        for stage, ms in (m.get("stage_ms_mean") or {}).items():
            rows.append({"time": when, "stage": f"{stage} (mean)", "ms": float(ms)})
        if m.get("latency_ms_p99") is not None:
            rows.append({"time": when, "stage": "request p99", "ms": float(m["latency_ms_p99"])})
    return pd.DataFrame(rows, columns=["time", "stage", "ms"])


def stage_latency_chart(df: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M")),
            # symlog: the request p99 and sub-millisecond stage means stay readable on one axis
            y=alt.Y("ms:Q", title="ms (symlog scale)", scale=alt.Scale(type="symlog")),
            color="stage:N",
            tooltip=["time:T", "stage", alt.Tooltip("ms:Q", format=".2f")],
        )
        .properties(height=260)
    )


# --------------------------------------------------------------------------------------- experiment


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "–"
    return f"[{low:+.1%}, {high:+.1%}]"


def composition_frame(composition: Mapping[str, Any]) -> pd.DataFrame:
    """One row per arm: what its personalised rails showed (the composition API's figures)."""
    columns = ["arm", "cards", "products", "own_share", "own_ctr", "other_ctr", "other_control_share"]
    return pd.DataFrame([{c: a.get(c) for c in columns} for a in composition.get("arms") or []], columns=columns)


def experiment_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per metric and non-control arm: values with their counts, lift, CIs, p-value, verdict."""
    rows = []
    for m in results.get("metrics") or []:
        for c in m.get("comparisons") or []:
            rows.append(
                {
                    "metric": m["label"] + (" (primary)" if m.get("primary") else ""),
                    "arm": c["arm"],
                    "control": c["control_value"],
                    "control_n": c["control_n"],
                    "arm_value": c["arm_value"],
                    "arm_n": c["arm_n"],
                    "lift": c["lift"],
                    "ci_low": c["ci_low"],
                    "ci_high": c["ci_high"],
                    "ci": _interval(c["ci_low"], c["ci_high"]),
                    "p_value": c["p_value"],
                    "seq_ci": _interval(c["seq_ci_low"], c["seq_ci_high"]),
                    "conclusive": c["conclusive"],  # significant on enough data (the API's minimum sample)
                    "verdict": c["verdict"],
                }
            )
    return pd.DataFrame(rows)


LIFT_AXIS_MAX = 3.0  # +300%


def lift_ci_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Each arm's relative lift as a point, its 95% CI as a bar, against the zero line, per metric."""
    df = table.dropna(subset=["lift"]).copy()
    df["ci_low"] = df["ci_low"].fillna(df["lift"])
    df["ci_high"] = df["ci_high"].fillna(df["lift"])
    df["row"] = df["metric"] + " · " + df["arm"]
    y = alt.Y("row:N", title=None, sort=list(df["row"]), axis=alt.Axis(labelLimit=360))
    bars = (
        alt.Chart(df)
        .mark_bar(height=10, opacity=0.45)
        .encode(
            # small samples give intervals of thousands of percent: the axis stops at LIFT_AXIS_MAX (clamped)
            x=alt.X(
                "ci_low:Q",
                title="relative lift vs control (95% CI)",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[-1.0, LIFT_AXIS_MAX], clamp=True),
            ),
            x2="ci_high:Q",
            y=y,
            color=alt.Color(
                "conclusive:N",
                title="significant on enough data",
                scale=alt.Scale(domain=[True, False], range=["#2e7d32", "#9e9e9e"]),
            ),
            tooltip=[
                "metric",
                "arm",
                alt.Tooltip("lift:Q", format="+.2%"),
                "ci",
                alt.Tooltip("p_value:Q", format=".4f"),
            ],
        )
    )
    points = alt.Chart(df).mark_point(filled=True, color="black").encode(x="lift:Q", y=y)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return (bars + points + zero).properties(height=alt.Step(26))


def lift_over_time_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    rows = [
        {
            "date": pd.to_datetime(d["date"]),
            "arm": d["arm"],
            "lift": d["cumulative_lift"],
            "seq_low": d["cumulative_seq_ci_low"],
            "seq_high": d["cumulative_seq_ci_high"],
            "visitors": d["cumulative_visitors"],
        }
        for d in results.get("by_day") or []
        if d.get("cumulative_lift") is not None
    ]
    return pd.DataFrame(rows, columns=["date", "arm", "lift", "seq_low", "seq_high", "visitors"])


def lift_over_time_gap(results: Mapping[str, Any]) -> str:
    """Why there is no lift over time to draw: no visitors on one side, or a control that has not converted
    yet (a relative lift divides by control's rate, so it is undefined until control's first order)."""
    control = next((a["key"] for a in (results.get("experiment") or {}).get("arms") or [] if a.get("is_control")), None)
    rows = [d for d in results.get("by_day") or [] if d.get("arm") == control]
    others = [d for d in results.get("by_day") or [] if d.get("arm") != control and d.get("cumulative_visitors")]
    if (
        control
        and rows
        and rows[-1].get("cumulative_visitors")
        and others
        and not rows[-1].get("cumulative_conversion")
    ):
        return (
            f"No lift over time yet: control ({control}) has {rows[-1]['cumulative_visitors']:,} visitors and no "
            "conversion, and a relative lift divides by control's rate. The chart starts with control's first order."
        )
    return "Lift over time needs visitors in control and another arm."


def lift_over_time_chart(days: pd.DataFrame) -> alt.LayerChart:
    base = alt.Chart(days).encode(x=alt.X("date:T", title=None), color=alt.Color("arm:N"))
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("seq_low:Q", title="cumulative conversion lift", axis=alt.Axis(format="%")), y2="seq_high:Q"
    )
    line = base.mark_line(point=True).encode(
        y="lift:Q",
        tooltip=["date:T", "arm", alt.Tooltip("lift:Q", format="+.2%"), "visitors"],
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    return (band + line + zero).properties(height=300)


def serving_mix_by_arm_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per arm: rail requests, the share it served with its own ranking and the share lost to faults (the
    API's notes on them are shown beside the verdict)."""
    rows = ((results.get("serving_mix") or {}).get("arms")) or []
    columns = ["arm", "requests", "own_share", "fault_share"]
    return pd.DataFrame([{k: r.get(k) for k in columns} for r in rows], columns=columns)


def by_model_version_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    rows = [{**r, "model_version": r["model_version"] or "(none)"} for r in results.get("by_model_version") or []]
    return pd.DataFrame(
        rows,
        columns=["model_version", "arm", "visitors", "conversion", "revenue_per_visitor", "add_to_cart", "rail_ctr"],
    )


def guardrails_frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["arm", "requests", "latency_ms_p50", "latency_ms_p99", "fallbacks", "fallback_rate"]
    )


# ------------------------------------------------------------------------------------------- models


def quality_frame(versions: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per version and ranker (the version, stage 1 alone, popularity) as the models API reports
    them: NDCG@10, Recall@10, HR@10 on the same holdout users, NDCG@10 over popularity's, and how far each
    leans on the best sellers (share of its top-10 places, distinct products)."""
    rows = [{"version": v["version"], **q} for v in versions for q in v.get("quality") or []]
    return pd.DataFrame(
        rows,
        columns=[
            "version", "label", "ndcg_at_10", "recall_at_10", "hr_at_10", "users", "ndcg_vs_popularity",
            "best_sellers_at_10", "distinct_at_10",
        ],
    )  # fmt: skip


def training_frame(versions: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per version as the models API reports it: its training rows, their exposure weighting, the
    updates its ranker kept and the API's plain note when it kept none."""
    rows = [
        {"version": v["version"], **v["training"], "note": v["training"].get("note") or ""}
        for v in versions
        if (v.get("training") or {}).get("rows") is not None
    ]
    return pd.DataFrame(
        rows,
        columns=["version", "rows", "exposure_power", "positives", "weight_min", "weight_max", "capped",
                 "model_updates", "note"],
    )  # fmt: skip


def gate_frame(versions: list[Mapping[str, Any]]) -> pd.DataFrame:
    """The promotion gate's fresh-holdout NDCG@10: the version, popularity and the champion it faced."""
    rows = [{"version": v["version"], **v["gate"]} for v in versions if v.get("gate")]
    return pd.DataFrame(
        rows, columns=["version", "users", "challenger_ndcg", "popularity_ndcg", "champion", "champion_ndcg"]
    )

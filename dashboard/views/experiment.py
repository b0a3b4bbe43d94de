"""Experiment: one row per arm and metric (control and arm values with counts, relative lift with its 95% CI
drawn as a bar, p-value), lift over time inside the sequential band, the sample-ratio-mismatch banner, the
verdict in plain words, the same split by model version, and guardrails per arm. Refreshes itself."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, client, session

REFRESH_S = 30
FILL = (
    "Run shoppers through the shop: `.venv/bin/python manage.py simulate --shoppers 300 --minutes 5 --seed 7` "
    "(or `make demo`, which runs the closed loop)."
)

st.title("Experiment")


def composition() -> None:
    """What each arm's rails put in front of the shoppers: where a ranking's lift (or its absence) comes from."""
    st.subheader("What the rails showed")
    data = session.read(client.EXPERIMENT_COMPOSITION, what="What the rails showed")
    if data is None:
        return
    frame = charts.composition_frame(data)
    if frame.empty or not frame["cards"].sum():
        st.info(f"No personalised rail has shown a card in this experiment yet. {FILL}")
        return
    st.caption(
        "Every card of the personalised rails (home, product page, cart) in the experiment's window, read at "
        f'most once a minute. "The visitor\'s own": products the visitor had viewed, clicked or carted before; '
        f"the last column: of the other cards, the share among the control's {data['control_top']} most-shown "
        "products. A ranking that leans on them shows shoppers what the control already shows."
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config=charts.number_columns(
            cards=("cards", "%d"),
            products=("distinct products", "%d"),
            own_share=("the visitor's own", "percent"),
            own_ctr=("click rate: own", "percent"),
            other_ctr=("click rate: others", "percent"),
            other_control_share=("others among the control's", "percent"),
        ),
    )


@st.fragment(run_every=REFRESH_S)
def results() -> None:
    try:
        data = client.get(client.EXPERIMENT_RESULTS, token=session.token())
    except client.NotFound:
        st.info(
            "No experiment is running and none has run yet. Create one in the admin (Experiments) and start it; "
            "`manage.py migrate` creates the default three-arm experiment on a fresh install."
        )
        return
    except client.ApiError as e:
        session.api_failed(e, what="Experiment results")
        return
    exp = data["experiment"]
    arms = exp["arms"]
    weight_total = sum(a["weight"] for a in arms) or 1
    st.markdown(
        f"**{exp['name']}** (`{exp['key']}`, {exp['status']}"
        + (f" since {exp['started_at'][:16].replace('T', ' ')} UTC" if exp.get("started_at") else "")
        + "). Arms: "
        + ", ".join(
            f"{a['key']}{' (control)' if a['is_control'] else ''} {a['weight'] / weight_total:.0%} · {a['visitors']:,} visitors"
            for a in arms
        )
    )
    srm = data["srm"]
    total_visitors = sum(a["visitors"] for a in arms)
    if total_visitors == 0:
        st.info(f"No visitor has been assigned to an arm yet. {FILL}")
        return
    if srm["mismatch"]:
        st.error(f"Sample-ratio mismatch. {srm['verdict']}", icon=":material/warning:")
    else:
        st.caption(f"Sample ratio: {srm['verdict']}")
    if exp.get("crossovers"):
        st.caption(f"{exp['crossovers']:,} visitors were seen under more than one arm and are left out.")
    st.subheader("Verdict")
    primary = next((m for m in data["metrics"] if m["primary"]), None)
    lines = [c["verdict"] for c in primary["comparisons"]] if primary and not srm["mismatch"] else []
    if lines:
        st.markdown("\n".join(f"- {line}" for line in lines))
        for note in (data.get("serving_mix") or {}).get("warnings") or []:
            st.warning(note[:1].upper() + note[1:], icon=":material/info:")
    else:
        st.markdown(f"> {data['verdict']}")
    mix = charts.serving_mix_by_arm_frame(data)
    if not mix.empty:
        st.caption("What each arm served in this window (a lift says little about an arm that mostly fell back)")
        st.dataframe(
            mix,
            hide_index=True,
            column_config=charts.number_columns(
                requests=("rail requests", "%d"),
                own_share=("own ranking", "percent"),
                fault_share=("faults", "percent"),
            ),
        )

    table = charts.experiment_table(data)
    st.subheader("Lift against control, 95% CI")
    if table.empty:
        st.info("The experiment has no control arm to compare with.")
    else:
        st.altair_chart(charts.lift_ci_chart(table), use_container_width=True)
        for note in (m["note"] for m in data["metrics"] if m.get("note")):
            st.caption(note)
        undefined = table[table["lift"].isna()]
        if not undefined.empty:
            st.caption(
                "No lift for "
                + "; ".join(f"{r.metric} · {r.arm}" for r in undefined.itertuples())
                + ": a relative lift divides by control's value, and it is 0 (or a side has no visitors yet)."
            )
        st.caption(
            f"The axis runs from -100% to +{charts.LIFT_AXIS_MAX:.0%}; a wider interval or lift stops at the edge "
            "(the table below has every figure)."
        )
        st.dataframe(
            table[
                [
                    "metric",
                    "arm",
                    "control",
                    "control_n",
                    "arm_value",
                    "arm_n",
                    "lift",
                    "ci",
                    "p_value",
                    "seq_ci",
                    "verdict",
                ]
            ],
            hide_index=True,
            column_config=charts.number_columns(
                control=("control value", "%.4f"),
                control_n=("control n", "%d"),
                arm_value=("arm value", "%.4f"),
                arm_n=("arm n", "%d"),
                lift=("lift", "percent"),
                p_value=("p-value", "%.4f"),
            )
            | {
                "ci": st.column_config.TextColumn("95% CI"),
                "seq_ci": st.column_config.TextColumn("always-valid 95% CI"),
            },
        )

    composition()

    st.subheader("Conversion lift over time")
    days = charts.lift_over_time_frame(data)
    if days.empty:
        st.info(charts.lift_over_time_gap(data))
    else:
        st.caption("Cumulative lift by day of first exposure; the band is the always-valid (sequential) 95% interval.")
        if days["date"].nunique() < 2:
            st.caption("One day of data so far: a point per arm today, a line once a second day comes in.")
        st.altair_chart(charts.lift_over_time_chart(days), use_container_width=True)

    st.subheader("By model version")
    versions = charts.by_model_version_frame(data)
    if versions.empty:
        st.info("No model version has served a visitor in this experiment yet.")
    else:
        st.dataframe(
            versions,
            hide_index=True,
            column_config=charts.number_columns(
                **{
                    c: (c.replace("_", " "), "%.4f")
                    for c in ("conversion", "revenue_per_visitor", "add_to_cart", "rail_ctr")
                }
            ),
        )


@st.fragment(run_every=REFRESH_S)
def guardrails() -> None:
    st.subheader("Guardrails per arm (last 24 hours)")
    rows = session.read(
        client.GUARDRAILS,
        what="Guardrails",
        params={"minutes": 1440},
        fill="They come with the live recommendation service.",
    )
    if rows is None:
        return
    frame = charts.guardrails_frame(rows)
    if frame.empty:
        st.info(f"No recommendation requests in the last 24 hours. {FILL}")
        return
    st.dataframe(
        frame,
        hide_index=True,
        column_config=charts.number_columns(
            latency_ms_p50=("p50 latency (ms, bucket bound)", "%.1f"),
            latency_ms_p99=("p99 latency (ms, bucket bound)", "%.1f"),
            fallback_rate=("fallback rate", "percent"),
        ),
    )


results()
guardrails()

"""Overview: visitors, sessions, events per minute, CTR, conversion and revenue for a window, with
sparklines; the serving mix (live / batch / fallback) and the fallback reasons. Refreshes itself."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, client, session

WINDOWS = {"15 minutes": 15, "1 hour": 60, "6 hours": 360, "24 hours": 1440, "7 days": 10080}
REFRESH_S = 15

st.title("Overview")
label = st.segmented_control("Window", list(WINDOWS), default="1 hour", key="overview_window") or "1 hour"
minutes = WINDOWS[label]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


@st.fragment(run_every=REFRESH_S)
def kpis() -> None:
    data = session.read(client.OVERVIEW, what="Shop figures", params={"minutes": minutes, "buckets": 30})
    if data is None:
        return
    series = pd.DataFrame(data["series"])
    st.caption(
        f"{data['start'][:19]} → {data['end'][:19]} UTC, {len(series)} buckets of {data['bucket_seconds']:.0f} s"
    )
    if data["events"] == 0:
        st.info(
            "No shopper activity in this window. Run the shopper simulator against the shop "
            "(`.venv/bin/python manage.py simulate --shoppers 300 --minutes 5 --seed 7`) or browse the storefront."
        )
    cards = [
        ("Visitors", f"{data['visitors']:,}", "visitors", None),
        ("Sessions", f"{data['sessions']:,}", "sessions", None),
        ("Events per minute", f"{data['events_per_minute']:,.1f}", "events_per_minute", None),
        ("Rail CTR", _pct(data["ctr"]), "ctr", f"{data['clicks']:,} clicks / {data['impressions']:,} impressions"),
        (
            "Conversion rate",
            _pct(data["conversion_rate"]),
            "conversion_rate",
            f"{data['purchasers']:,} visitors with a purchase / {data['visitors']:,} visitors",
        ),
        (
            "Revenue",
            f"{float(data['revenue']):,.2f}",
            "revenue",
            f"{data['orders']:,} orders (cancelled ones left out)",
        ),
    ]
    for col, (label, value, key, help_text) in zip(st.columns(3) + st.columns(3), cards, strict=True):
        spark = [0.0 if v is None else float(v) for v in series[key]] if len(series) else []
        col.metric(
            label,
            value,
            chart_data=spark,
            chart_type="bar" if key == "revenue" else "line",
            border=True,
            help=help_text,
        )


@st.fragment(run_every=REFRESH_S)
def serving_mix() -> None:
    st.subheader("Serving mix")
    stats = session.read(
        client.SERVING_STATS,
        what="Serving mix",
        params={"minutes": min(minutes, 1440)},
        fill="It comes with the live recommendation service.",
    )
    if stats is None:
        return
    mix = charts.serving_mix_frame(stats)
    if mix.empty or mix["requests"].sum() == 0:
        st.info(
            "No recommendation requests in this window: open the storefront or run the shopper simulator "
            "(`.venv/bin/python manage.py simulate`)."
        )
        return
    left, right = st.columns(2)
    with left:
        st.altair_chart(charts.serving_mix_chart(mix), use_container_width=True)
        st.dataframe(mix, hide_index=True)
    with right:
        reasons = charts.fallback_reasons_frame(stats)
        if reasons.empty:
            st.success("No fallbacks in this window.")
        else:
            st.caption("Fallback reasons")
            st.bar_chart(reasons, x="reason", y="count", horizontal=True)
            st.dataframe(reasons, hide_index=True)


kpis()
serving_mix()

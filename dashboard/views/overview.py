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
    try:
        data = client.get(client.OVERVIEW, token=session.token(), params={"minutes": minutes, "buckets": 30})
    except client.ApiError as e:
        session.api_failed(e, what="Shop figures")
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
    row1 = st.columns(3)
    row2 = st.columns(3)

    def spark(col: str) -> list[float]:
        return [0.0 if v is None else float(v) for v in series[col]] if len(series) else []

    row1[0].metric("Visitors", f"{data['visitors']:,}", chart_data=spark("visitors"), border=True)
    row1[1].metric("Sessions", f"{data['sessions']:,}", chart_data=spark("sessions"), border=True)
    row1[2].metric(
        "Events per minute", f"{data['events_per_minute']:,.1f}", chart_data=spark("events_per_minute"), border=True
    )
    row2[0].metric(
        "Rail CTR",
        _pct(data["ctr"]),
        chart_data=spark("ctr"),
        border=True,
        help=f"{data['clicks']:,} clicks / {data['impressions']:,} impressions",
    )
    row2[1].metric(
        "Conversion rate",
        _pct(data["conversion_rate"]),
        chart_data=spark("conversion_rate"),
        border=True,
        help=f"{data['purchasers']:,} visitors with a purchase / {data['visitors']:,} visitors",
    )
    row2[2].metric(
        "Revenue",
        f"{float(data['revenue']):,.2f}",
        chart_data=spark("revenue"),
        chart_type="bar",
        border=True,
        help=f"{data['orders']:,} orders (cancelled ones left out)",
    )


@st.fragment(run_every=REFRESH_S)
def serving_mix() -> None:
    st.subheader("Serving mix")
    try:
        stats = client.get(client.SERVING_STATS, token=session.token(), params={"minutes": min(minutes, 1440)})
    except client.ApiError as e:
        session.api_failed(e, what="Serving mix", fill="It comes with the live recommendation service.")
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

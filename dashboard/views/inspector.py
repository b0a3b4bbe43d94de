"""Recommendations inspector: pick a visitor; their recent history, what each experiment arm would show
them now, with scores and per-stage timings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import client, session

PLACEMENTS = ["home", "product", "cart", "trending"]

st.title("Recommendations inspector")

try:
    visitors = client.get(client.VISITORS, token=session.token(), params={"minutes": 60 * 24 * 7, "limit": 100})
except client.ApiError as e:
    session.api_failed(e, what="Visitors")
    st.stop()

if not visitors:
    st.info(
        "No visitor has been active in the last 7 days. Browse the storefront or run the shopper simulator "
        "(`.venv/bin/python manage.py simulate --shoppers 50 --minutes 2`)."
    )
    st.stop()

labels = {
    v[
        "visitor_id"
    ]: f"{v['username'] or 'anonymous'} · {v['visitor_id'][:8]} · {v['events']} events · {v['last_seen'][:19]}"
    for v in visitors
}
typed = st.text_input("Visitor id (or pick one below)", key="inspect_typed").strip()
picked = st.selectbox("Recently active visitors", list(labels), format_func=labels.get, key="inspect_pick")
visitor_id = typed or picked
placement = st.segmented_control("Placement", PLACEMENTS, default="home", key="inspect_placement") or "home"
k = st.slider("Items", 1, 24, 8, key="inspect_k")

left, right = st.columns([2, 3])
with left:
    st.subheader("Recent history")
    try:
        history = client.get(client.visitor_events_path(visitor_id), token=session.token(), params={"limit": 30})
    except client.ApiError as e:
        session.api_failed(e, what="History")
        history = None
    if history is not None:
        if not history:
            st.info("This visitor has no events.")
        else:
            st.dataframe(
                pd.DataFrame(history)[["when", "type", "product_name", "placement", "position", "arm"]],
                hide_index=True,
            )


def _arms() -> list[str | None]:
    """The running experiment's arms (each one previewed), or only the visitor's own assignment."""
    try:
        results = client.get(client.EXPERIMENT_RESULTS, token=session.token())
    except client.ApiError:
        return [None]
    names = [a.get("name") or a.get("arm") for a in results.get("arms") or [] if isinstance(a, dict)]
    return [n for n in names if n] or [None]


with right:
    st.subheader("What each arm would show now")
    for arm in _arms():
        params = {"placement": placement, "k": k, "visitor_id": visitor_id}
        if arm:
            params["arm"] = arm
        try:
            recs = client.get(client.RECOMMENDATIONS, token=session.token(), params=params, fresh=True)
        except client.ApiError as e:
            session.api_failed(e, what=f"Recommendations ({arm or 'assigned arm'})")
            continue
        st.markdown(
            f"**{recs.get('arm') or arm or 'no experiment'}** · source `{recs.get('source')}`"
            + (f" ({recs['reason']})" if recs.get("reason") else "")
            + f" · model {recs.get('model_version') or '–'}"
        )
        items = recs.get("items") or []
        if items:
            st.dataframe(pd.DataFrame(items), hide_index=True)
        else:
            st.caption("No items.")
        timings = recs.get("latency_ms") or recs.get("timings_ms") or recs.get("stages") or {}
        if timings:
            st.caption(" · ".join(f"{k_}: {v:.2f} ms" for k_, v in timings.items() if isinstance(v, int | float)))

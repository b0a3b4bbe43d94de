"""Recommendations inspector: pick a visitor; their recent history, what each experiment arm would show
them now, with scores and per-stage timings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import client, session

# the placements GET /api/recommendations accepts (its OpenAPI enum), with the rails' titles
PLACEMENTS = {
    "home.recommended": "Home: Recommended for you",
    "product.recommended": "Product page: You may also like",
    "cart.recommended": "Cart: Complete your order",
    "home.trending": "Home: Trending now",
}

st.title("Recommendations inspector")

visitors = session.read(client.VISITORS, what="Visitors", params={"minutes": 60 * 24 * 7, "limit": 100})
if visitors is None:
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
placement = st.selectbox("Placement", PLACEMENTS, format_func=PLACEMENTS.get, key="inspect_placement")
k = st.slider("Items", 1, 24, 8, key="inspect_k")

left, right = st.columns([2, 3])
with left:
    st.subheader("Recent history")
    history = session.read(client.visitor_events_path(visitor_id), what="History", params={"limit": 30})
    if history is not None:
        if not history:
            st.info("This visitor has no events.")
        else:
            frame = pd.DataFrame(history)[["when", "type", "product_name", "placement", "position", "arm"]]
            frame["when"] = pd.to_datetime(frame["when"])
            st.dataframe(
                frame,
                hide_index=True,
                column_config={
                    "when": st.column_config.DatetimeColumn("when (UTC)", format="MMM D, HH:mm:ss"),
                    "product_name": st.column_config.TextColumn("product", width="medium"),
                },
            )


def _arms() -> list[str | None]:
    """The current experiment's arms (each one previewed), or only what the visitor is served now."""
    try:
        results = client.get(client.EXPERIMENT_RESULTS, token=session.token())
    except client.ApiError:
        return [None]
    if results["experiment"]["status"] != "running":
        return [None]
    return [a["key"] for a in results["experiment"]["arms"]] or [None]


with right:
    st.subheader("What each arm would show now")
    for arm in _arms():
        params = {"placement": placement, "k": k, "visitor_id": visitor_id}
        if arm:
            params["arm"] = arm
        recs = session.read(
            client.RECOMMENDATIONS, what=f"Recommendations ({arm or 'assigned arm'})", params=params, fresh=True
        )
        if recs is None:
            continue
        st.markdown(
            f"**{recs['arm'] or 'no experiment'}** · source `{recs['source']}`"
            + (f" (fell back: {recs['reason']})" if recs["reason"] else "")
            + f" · model {recs['model_version'] or '–'}"
        )
        items = recs["items"]
        if items:
            st.dataframe(
                pd.DataFrame(items)[["product_id", "name", "price", "score"]],
                hide_index=True,
                key=f"inspect_items_{arm}",
                column_config={"score": st.column_config.NumberColumn("score", format="%.4f")},
            )
        else:
            st.caption("No items.")
        timings = recs["latency_ms"]
        if timings:
            st.caption("Per stage: " + " · ".join(f"{stage} {ms:.2f} ms" for stage, ms in timings.items()))

"""Models: versions with offline metrics beside the baselines, training time, device and data size; the
active one and the gate's decision with its reasons; promote / roll back (with the permission); retrain
with live progress."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import client, session

RETRAIN_KEY = "retrain_task"
METRICS = ["auc", "ndcg@10", "recall@10", "logloss"]

st.title("Models")

try:
    data = client.get(client.MODELS, token=session.token(), fresh=True)
except client.ApiError as e:
    session.api_failed(e, what="Model versions")
    st.stop()

versions = data["versions"]
if not versions:
    st.info(
        "No model has been trained yet. Run `.venv/bin/python manage.py retrain --wait` (a worker must run; "
        "`--inline` trains in that process), or use the Retrain button below."
    )
else:
    active = data["active"]
    st.markdown(f"Active version: **{active}**" if active else "No version is active: rails use popularity.")
    table = pd.DataFrame(
        [
            {
                "version": v["version"],
                "status": v["status"],
                "active": v["is_active"],
                **{m: (v["metrics"] or {}).get(m) for m in METRICS},
                "training s": v["training_seconds"],
                "examples": v["examples"],
                "device": v["device"],
                "snapshot": v["snapshot"],
                "created": v["created_at"][:19],
            }
            for v in versions
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={m: st.column_config.NumberColumn(m, format="%.4f") for m in METRICS}
        | {"training s": st.column_config.NumberColumn("training s", format="%.1f")},
    )
    baselines = [
        {"version": v["version"], "metric": k, "value": val}
        for v in versions
        for k, val in (v["metrics"] or {}).items()
        if "baseline" in k and isinstance(val, int | float)
    ]
    if baselines:
        st.caption("Baselines measured with each version (same users, same run)")
        st.dataframe(pd.DataFrame(baselines).pivot(index="version", columns="metric", values="value"))
    else:
        st.caption(
            "These versions carry no baseline figures; compare offline with "
            "`.venv/bin/python -m recommender.evaluate` (popularity, recency and co-occurrence baselines)."
        )
    st.subheader("The gate's decisions")
    for v in versions[:10]:
        verdict = {"active": "active", "rejected": "rejected by the gate", "retired": "retired"}.get(
            v["status"], v["status"]
        )
        with st.expander(f"{v['version']}: {verdict}", expanded=v["is_active"]):
            for reason in v["gate_reasons"] or ["(no reasons recorded)"]:
                st.markdown(f"- {reason}")

    st.subheader("Promote or roll back")
    if not data["can_change_models"]:
        st.caption("Your account lacks the recs.change_modelversion permission: promoting and rolling back are off.")
    else:
        choices = [v["version"] for v in versions if not v["is_active"]]
        col1, col2 = st.columns(2)
        with col1:
            target = st.selectbox("Version to promote", choices, key="promote_version") if choices else None
            sure = st.checkbox(f"Yes, serve {target} to every shopper", key="promote_confirm") if target else False
            if st.button("Promote", disabled=not (target and sure), key="promote"):
                try:
                    out = client.post(client.promote_path(target), token=session.token())
                    st.success(f"{out['active']} is now serving (was {out['previous'] or 'none'}).")
                except client.ApiError as e:
                    session.api_failed(e, what=f"Promoting {target}")
        with col2:
            sure_back = st.checkbox("Yes, go back to the previously active version", key="rollback_confirm")
            if st.button("Roll back", disabled=not sure_back, key="rollback"):
                try:
                    out = client.post(client.ROLLBACK, token=session.token())
                    st.success(f"Rolled back: {out['active']} is serving again (was {out['previous'] or 'none'}).")
                except client.ApiError as e:
                    if e.status == 409:
                        st.warning(f"Nothing to roll back to: {e}")
                    else:
                        session.api_failed(e, what="Rolling back")

st.subheader("Retrain")
if st.button("Retrain now", key="retrain"):
    try:
        started = client.post(client.RETRAIN, token=session.token())
        st.session_state[RETRAIN_KEY] = started["task_id"]
    except client.ApiError as e:
        if e.status == 409:
            st.info("A retrain is already queued or running; following it.")
            st.session_state[RETRAIN_KEY] = e.body.get("task_id") or st.session_state.get(RETRAIN_KEY)
        else:
            session.api_failed(e, what="Starting a retrain")


@st.fragment(run_every=2)
def retrain_progress() -> None:
    task_id = st.session_state.get(RETRAIN_KEY)
    if not task_id:
        return
    try:
        run = client.get(client.task_path(task_id), token=session.token(), fresh=True)
    except client.ApiError as e:
        session.api_failed(e, what="Retrain progress")
        return
    st.progress(min(1.0, run["percent"] / 100), text=f"{run['state']}: {run['stage']} ({run['percent']:.0f}%)")
    if run["state"] == "failed":
        st.error(f"The retrain failed: {run['error']}")
    elif run["state"] == "succeeded":
        result = run.get("result") or {}
        st.success(
            f"Trained {result.get('version', '')}: "
            + ("promoted" if result.get("promoted") else "kept as a candidate (the gate said no)")
        )
    elif run["state"] == "pending":
        st.caption("Queued: a worker picks it up (`make demo` runs one).")


retrain_progress()

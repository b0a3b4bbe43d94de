"""Models: versions with offline metrics beside the baselines, training time, device and data size; the
active one and the gate's decision with its reasons; promote / roll back (with the permission); retrain
with live progress."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, client, session

RETRAIN_KEY = "retrain_task"
METRICS = ["auc", "ndcg@10", "recall@10", "logloss"]

st.title("Models")

data = session.read(client.MODELS, what="Model versions", fresh=True)
if data is None:
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
        column_config=charts.number_columns(
            **{m: (m, "%.4f") for m in METRICS}, **{"training s": ("training s", "%.1f")}
        ),
    )

    st.subheader("Offline quality beside the baselines")
    st.caption(
        "Measured when each version was trained, on the same holdout users in the same run: the full pipeline "
        "with this version ranking, stage 1's own order through the same rules, and the best sellers. "
        '"Best sellers" is the share of the top-10 places held by the 40 best sellers: a ranking that leans on '
        "them shows shoppers what every rail already shows (a model learns that lean from a log the popular "
        "list shaped)."
    )
    quality = charts.quality_frame(versions)
    if quality.empty:
        st.info("No version carries ranking metrics yet.")
    else:
        st.dataframe(
            quality,
            hide_index=True,
            column_config=charts.number_columns(
                ndcg_at_10=("NDCG@10", "%.4f"),
                recall_at_10=("Recall@10", "%.4f"),
                hr_at_10=("HR@10", "%.4f"),
                users=("users", "%d"),
                ndcg_vs_popularity=("NDCG@10 vs popularity", "%.2fx"),
                best_sellers_at_10=("best sellers", "percent"),
                distinct_at_10=("distinct products", "%d"),
            )
            | {"label": st.column_config.TextColumn("ranker")},
        )
    bare = [v["version"] for v in versions if not any(q["ranker"] != "model" for q in v.get("quality") or [])]
    if bare:
        st.caption(
            f"{', '.join(bare[:8])}{' and more' if len(bare) > 8 else ''}: trained before baselines were stored "
            "with a version; retrain to get them, or compare offline with `.venv/bin/python -m recommender.evaluate`."
        )
    gate = charts.gate_frame(versions)
    if not gate.empty:
        st.caption("The promotion gate's fresh holdout (NDCG@10, users after the champion's data)")
        st.dataframe(
            gate,
            hide_index=True,
            column_config=charts.number_columns(
                users=("users", "%d"),
                challenger_ndcg=("this version", "%.4f"),
                popularity_ndcg=("popularity", "%.4f"),
                champion_ndcg=("champion", "%.4f"),
            )
            | {"champion": st.column_config.TextColumn("champion version")},
        )
    training = charts.training_frame(versions)
    if not training.empty:
        st.caption(
            "How each version was trained: a positive weighs less the more often the shop showed its item in the "
            "label window (exposure weighting), so the ranker learns what shoppers pick rather than what the "
            "shop put in front of them; and how many updates its ranker kept after starting from stage 1's order."
        )
        st.dataframe(
            training,
            hide_index=True,
            column_config=charts.number_columns(
                exposure_power=("exposure weighting", "%.2f"),
                positives=("positives", "%d"),
                weight_min=("lowest weight", "%.3f"),
                weight_max=("highest weight", "%.3f"),
                capped=("at the cap", "%d"),
                model_updates=("updates kept", "%d"),
            )
            | {"rows": st.column_config.TextColumn("training rows"), "note": st.column_config.TextColumn("")},
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
                done, out = session.act(
                    client.promote_path(target), what=f"Promoting {target}", conflict=f"{target} was not promoted"
                )
                if done:
                    st.success(f"{out['active']} is now serving (was {out['previous'] or 'none'}).")
        with col2:
            sure_back = st.checkbox("Yes, go back to the previously active version", key="rollback_confirm")
            if st.button("Roll back", disabled=not sure_back, key="rollback"):
                done, out = session.act(client.ROLLBACK, what="Rolling back", conflict="Nothing to roll back to")
                if done:
                    st.success(f"Rolled back: {out['active']} is serving again (was {out['previous'] or 'none'}).")

st.subheader("Retrain")
if st.button("Retrain now", key="retrain"):
    done, started = session.act(
        client.RETRAIN, what="Starting a retrain", conflict="A retrain is already queued or running; following it"
    )
    if started.get("task_id"):
        st.session_state[RETRAIN_KEY] = started["task_id"]


@st.fragment(run_every=2)
def retrain_progress() -> None:
    task_id = st.session_state.get(RETRAIN_KEY)
    if not task_id:
        return
    run = session.read(client.task_path(task_id), what="Retrain progress", fresh=True)
    if run is None:
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

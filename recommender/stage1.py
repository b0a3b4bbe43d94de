"""Stage 1 as serving runs it, for every caller (the pipeline, the ranker's training rows, evaluation).

:func:`fit_retriever` fits the shared sources (co-occurrence, category popularity, trending) on a log;
:class:`Stage1` turns one user's events (:class:`recommender.data.UserHistory`: the snapshot's slice,
merged with fresh events at serving) into candidates with the signals the ranker gets as features. The
training rows are built through the same object, so what the ranker learns on is what it ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.config import Config
from recommender.data import EVENT_TYPES, Interactions, ItemTable, UserHistory
from recommender.retrieval import CandidateRetriever, Candidates, RetrievalConfig

_PURCHASE = EVENT_TYPES.index("purchase")


def retrieval_weights(config: Config | None = None) -> dict[str, float]:
    """Event type -> weight of that event in stage 1 (history types 0.5, positives their loss weight)."""
    config = config or Config()
    return {t: 0.5 for t in config.data.history_types} | dict(config.data.positive_weights)


def fit_retriever(
    history: Interactions, items: ItemTable, *, config: Config | None = None, retrieval: RetrievalConfig | None = None
) -> tuple[CandidateRetriever, pd.Index]:
    """Fit stage 1 on the history's engagement events; returns the retriever and its user index."""
    weights = retrieval_weights(config)
    keep = np.isin(history.event_type, list(weights))
    ev = history.take(np.flatnonzero(keep))
    rows = items.lookup(ev.item_id)
    ok = rows >= 0
    user_index = pd.Index(pd.unique(ev.user_id[ok]))
    w = pd.Series(ev.event_type[ok]).map(weights).to_numpy(np.float64)
    retriever = CandidateRetriever.fit(
        users=user_index.get_indexer(ev.user_id[ok]),
        items=rows[ok],
        timestamps=ev.timestamp[ok],
        item_category=pd.factorize(items.category)[0],
        n_users=len(user_index),
        weights=w,
        config=retrieval,
    )
    return retriever, user_index


STATE_FORMAT = 1  # bump when the saved layout of stage 1 changes


def retriever_state(retriever: CandidateRetriever, user_index: pd.Index, items: ItemTable) -> dict:
    """Stage 1 as fitted, plain python + numpy (the registry stores it beside the vocabularies), with the
    catalogue it was fitted on: a rollback serves the stage 1 its ranker was trained with, not a refit."""
    codes, names = pd.factorize(items.category)
    return {
        "format": STATE_FORMAT,
        "retriever": retriever.to_state(),
        "users": np.asarray(user_index, dtype=str),
        "item_ids": np.asarray(items.item_id, dtype=str),
        "categories": np.asarray(names, dtype=str),
    }


class Stage1StateError(ValueError):
    """A saved stage 1 that this code cannot read (another layout or a broken one)."""


def retriever_from_state(state: dict, items: ItemTable) -> tuple[CandidateRetriever, pd.Index]:
    """(retriever, user index) from :func:`retriever_state`, over ``items`` (the serving catalogue, which may
    have gained or lost items since the fit: the sources are re-keyed to its rows)."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise Stage1StateError(f"saved stage 1 has format {found!r}, this code reads {STATE_FORMAT}; retrain")
    try:
        retriever = CandidateRetriever.from_state(state["retriever"])
        old_items = np.asarray(state["item_ids"], dtype=str)
        old_cats = np.asarray(state["categories"], dtype=str)
        users = pd.Index(np.asarray(state["users"], dtype=str))
    except (KeyError, TypeError) as e:
        raise Stage1StateError(f"saved stage 1 is incomplete: {e!r}; retrain") from e
    if retriever.n_items != len(old_items):
        raise Stage1StateError(f"saved stage 1 covers {retriever.n_items} items but lists {len(old_items)}")
    new_items = np.asarray(items.item_id, dtype=str)
    codes, names = pd.factorize(items.category)
    names = np.asarray(names, dtype=str)
    if np.array_equal(old_items, new_items) and np.array_equal(old_cats, names):
        return retriever, users
    item_map = items.lookup(old_items).astype(np.int64)
    cat_map = pd.Index(names).get_indexer(old_cats).astype(np.int64)
    return retriever.remapped(item_map, cat_map, codes.astype(np.int64)), users


@dataclass(frozen=True)
class Stage1:
    """A fitted retriever plus the event-type weights: one user's history in, candidates out."""

    retriever: CandidateRetriever
    type_weight: np.ndarray  # stage-1 weight per event type code (EVENT_TYPES order); NaN: not used

    @classmethod
    def of(cls, retriever: CandidateRetriever, config: Config | None = None) -> Stage1:
        weights = retrieval_weights(config)
        return cls(retriever, np.array([weights.get(t, np.nan) for t in EVENT_TYPES], dtype=np.float64))

    def candidates(
        self, history: UserHistory, n_candidates: int, *, now: int, session: np.ndarray | None = None
    ) -> Candidates:
        """Up to ``n_candidates`` candidates of the user whose events (before ``now``) are ``history``,
        with :data:`recommender.retrieval.SIGNALS` for each; ``session``: extra co-occurrence seeds."""
        w = self.type_weight[history.event_type]
        ok = (history.rows >= 0) & np.isfinite(w)
        sources = self.retriever.user_sources(
            history.rows[ok], history.timestamp[ok], w[ok], bought=history.event_type[ok] == _PURCHASE, now=now
        )
        return self.retriever.candidates_from(
            sources,
            k_total=n_candidates,
            session_items=session if session is not None and len(session) else None,
            now=now,
        )

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

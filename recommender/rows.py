"""The ranker's training rows: one function for the shop's retrain, the evaluation and the sweep.

The ranker ranks what stage 1 hands it, so it learns on exactly that: at a few cutoffs before the
validation cutoff, stage 1 is fitted on the events before the cutoff, every user who engages within the
label horizon after it gets their candidates from :class:`recommender.stage1.Stage1` (the serving code,
with its signals), built from their events strictly before their next basket, and each candidate is
labelled 1 if it is in that basket, else 0. Validation rows are the same at the validation cutoff.
(Pointwise rows with random negatives teach "a past item is a positive", and adding the user's past
items as negatives mis-calibrates them against non-past candidates: both measured worse on Ta Feng.)

A positive weighs less the more often the shop showed its item in the label window (``DataConfig.exposure_power``,
:func:`exposure_weights`): on a shop's own log, what its rankings put in front of everyone is what gets clicked,
and unweighted rows teach a ranker to lean on what was shown (the experiment's rails measured it). A retail log
without impressions is left as it is.

When no user engages after any cutoff (a log too short to split), the rows fall back to pointwise
examples (:func:`recommender.data.build_examples`) split by time, and say so in ``kind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.config import DAY, Config
from recommender.data import (
    Examples,
    HistoryIndex,
    Interactions,
    ItemTable,
    build_examples,
    concat_examples,
    examples_for,
    split_by_time,
)
from recommender.stage1 import Stage1, fit_retriever


@dataclass(frozen=True)
class TrainingRows:
    """train / valid rows, the validation cutoff (seconds), all rows (train + valid: the refit before
    registering) and how they were built (``"stage-1 candidates"`` or ``"pointwise"``)."""

    train: Examples
    valid: Examples
    cutoff: int
    kind: str
    cutoffs: tuple[int, ...] = ()
    horizon_s: int = 0

    @property
    def all(self) -> Examples:
        return concat_examples([self.train, self.valid])


def history_index(history: Interactions, items: ItemTable, config: Config) -> HistoryIndex:
    return HistoryIndex(
        history,
        items,
        history_types=config.data.history_types,
        recent_items=config.features.recent_items,
        trend_window_s=config.features.trend_window_s,
    )


def candidate_cutoffs(history: Interactions, config: Config) -> tuple[list[int], int, int]:
    """(training cutoffs, oldest last; the validation cutoff; the label horizon in seconds).

    The validation cutoff sits at the ``1 - valid_fraction`` quantile of positive times; training cutoffs
    are ``candidate_cutoffs`` steps of the horizon before it. The horizon is ``label_horizon_s`` (a week)
    unless the log is too short for that many steps; cutoffs fall on midnights when the horizon is a day or
    more (a grocery log's baskets are days)."""
    d = config.data
    pos = np.isin(history.event_type, list(d.positive_weights))
    ts = history.timestamp[pos]
    if len(ts) == 0:
        return [], 0, 0
    cutoff = int(np.quantile(ts, 1.0 - d.valid_fraction, method="higher"))
    span = cutoff - int(ts.min())
    step = int(min(d.label_horizon_s, span / (d.candidate_cutoffs + 1))) if d.candidate_cutoffs else 0
    if step >= DAY:
        cutoff = cutoff // DAY * DAY
        step = step // DAY * DAY
    step = max(step, 1)
    return [cutoff - (w + 1) * step for w in range(d.candidate_cutoffs)], cutoff, step


def candidate_examples(
    history: Interactions,
    items: ItemTable,
    config: Config,
    *,
    index: HistoryIndex,
    cutoffs: Sequence[int],
    horizon_s: int,
    n_candidates: int | None = None,
) -> Examples:
    """Rows shaped exactly like serving (see the module's docstring). Per cutoff ``c``: stage 1 fitted on
    the events before ``c``; per user with a positive in ``[c, c + horizon_s)``, the next basket is their
    positives within ``basket_window_s`` of the first one; candidates and features as of that basket."""
    d = config.data
    n_candidates = n_candidates or d.candidates_per_user
    types = list(d.positive_weights)
    pos = np.isin(history.event_type, types)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "ts", "label", "device", "signals", "weight")}
    for c in cutoffs:
        before = history.take(np.flatnonzero(history.timestamp < c))
        if not len(before):
            continue
        stage1 = Stage1.of(fit_retriever(before, items, config=config)[0], config)
        sel = pos & (history.timestamp >= c) & (history.timestamp < c + horizon_s)
        df = pd.DataFrame(
            {"u": history.user_id[sel], "i": history.item_id[sel], "t": history.timestamp[sel],
             "dev": history.device[sel]}
        )  # fmt: skip
        # power 0: no count needed, every weight is 1
        exposure = _window_exposure(history, c, c + horizon_s) if d.exposure_power > 0 else pd.Series(dtype=np.int64)
        first = df.groupby("u")["t"].transform("min")
        df = df[(df["t"] >= first) & (df["t"] < first + d.basket_window_s)]
        n_before = len(parts["label"])
        for u, g in df.groupby("u", sort=True):
            t1 = int(g["t"].min())
            uh = index.user_history(str(u), t1)
            if not len(uh):
                continue  # nothing to retrieve from: stage 1 would hand the ranker trending items only
            cands = stage1.candidates(uh, n_candidates, now=t1)
            if not len(cands):
                continue
            cand = items.item_id[cands.items]
            n = len(cand)
            parts["user"].append(np.full(n, u))
            parts["item"].append(cand)
            parts["ts"].append(np.full(n, t1, np.int64))
            parts["label"].append(np.isin(cand, g["i"].to_numpy()).astype(np.float32))
            parts["device"].append(np.full(n, g["dev"].iloc[0]))
            parts["signals"].append(cands.signals)
        if len(parts["label"]) > n_before:  # this cutoff's rows: one window, one array of weights
            items_c, labels_c = np.concatenate(parts["item"][n_before:]), np.concatenate(parts["label"][n_before:])
            shown = exposure.reindex(items_c, fill_value=0).to_numpy()
            parts["weight"].append(exposure_weights(shown, labels_c, d.exposure_power, d.exposure_weight_cap))
    if not parts["user"]:
        return examples_for(index, np.zeros(0, str), np.zeros(0, str), np.zeros(0, np.int64))
    ex = examples_for(
        index,
        np.concatenate(parts["user"]),
        np.concatenate(parts["item"]),
        np.concatenate(parts["ts"]),
        device=np.concatenate(parts["device"]),
        label=np.concatenate(parts["label"]),
        weight=np.concatenate(parts["weight"]),
        signals=np.concatenate(parts["signals"]),
    )
    return ex.take(np.argsort(ex.timestamp, kind="stable"))


def _window_exposure(history: Interactions, start: int, end: int) -> pd.Series:
    """Impressions per item id in ``[start, end)``, every placement."""
    shown = (history.event_type == "impression") & (history.timestamp >= start) & (history.timestamp < end)
    return pd.Series(history.item_id[shown]).value_counts()


def exposure_weights(impressions: np.ndarray, label: np.ndarray, power: float, cap: float) -> np.ndarray:
    """Row weights: 1 for negatives; for positives ``(1 + impressions) ** -power`` (the inverse of a propensity
    that grows with how often the item was shown), scaled so the positives' mean weight is 1, then capped at
    ``cap`` (a rarely shown item's weight is the estimate's variance)."""
    weight = np.ones(len(label), np.float32)
    pos = label > 0
    if not pos.any():
        return weight
    raw = (1.0 + np.asarray(impressions, np.float64)[pos]) ** -float(power)
    weight[pos] = np.minimum(raw / raw.mean(), cap)
    return weight


def training_rows(
    history: Interactions,
    items: ItemTable,
    config: Config,
    *,
    index: HistoryIndex | None = None,
    seed: int | None = None,
) -> TrainingRows:
    """The ranker's training and validation rows (the one path: the shop's retrain, the evaluation and the
    sweep call this with their :class:`Config`)."""
    index = index or history_index(history, items, config)
    cuts, cutoff, horizon = candidate_cutoffs(history, config)
    if cuts:
        tr = candidate_examples(history, items, config, index=index, cutoffs=cuts, horizon_s=horizon)
        # validation: everything after its cutoff within the full horizon (training cutoffs are spaced by
        # ``horizon`` so their labels end where validation begins)
        va_horizon = max(horizon, config.data.label_horizon_s)
        va = candidate_examples(history, items, config, index=index, cutoffs=[cutoff], horizon_s=va_horizon)
        if len(tr) and tr.label.any() and len(va):
            return TrainingRows(tr, va, cutoff, "stage-1 candidates", tuple(cuts), horizon)
    seed = config.train.seed if seed is None else seed
    examples = build_examples(history, items, config.data, features=config.features, seed=seed, index=index)
    tr, va, cutoff = split_by_time(examples, config.data.valid_fraction)
    return TrainingRows(tr, va, cutoff, "pointwise")

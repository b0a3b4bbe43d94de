"""The promotion gate on a fresh holdout, through the served pipeline.

Champion and challenger rank the same users as of the same cutoff, each through the pipeline as it
would serve (stage 1 fitted before the cutoff -> the model -> rules), and are compared on per-user
NDCG@10 with a paired bootstrap. The challenger is refused when it is significantly worse than the
champion, than the global popularity ranking, or than stage 1's own order through the same rules (the
served pipeline without the model: what the ranker re-ranks) on the same users (the whole paired interval
of the difference below zero): a model worse than "the best sellers" or than the candidates' own order does
not ship, a first model included, and a small holdout's noise alone never blocks one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from recommender.baselines import PopularityBaseline
from recommender.config import Config
from recommender.holdout import Holdout, served_ranking
from recommender.metrics import paired_bootstrap, user_ndcg


@dataclass(frozen=True)
class HoldoutDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    users: int = 0
    cutoff: int = 0
    challenger_ndcg: float | None = None
    champion_ndcg: float | None = None
    popularity_ndcg: float | None = None
    champion: str | None = None  # the champion version compared against (None: there was none)
    paired: dict | None = None  # challenger - champion, paired bootstrap
    stage1_ndcg: float | None = None  # stage 1's own order through the same rules, same users
    paired_stage1: dict | None = None  # challenger - stage 1's order, paired bootstrap

    def to_dict(self) -> dict:
        return asdict(self)


def holdout_gate(
    holdout: Holdout,
    challenger: tuple[torch.nn.Module, object],
    champion: tuple[torch.nn.Module, object, Config] | None,
    config: Config,
    *,
    champion_version: str | None = None,
    k: int = 10,
    level: float = 0.95,
    n_boot: int = 1000,
    min_users: int = 20,
    seed: int = 0,
) -> HoldoutDecision:
    """``challenger``: (model, feature space) with ``config``; ``champion``: (model, feature space, its
    config) or None (a first model is compared with popularity and stage 1's order only)."""
    n = len(holdout.users)
    if n < min_users:
        return HoldoutDecision(
            True, [f"holdout has {n} users (< {min_users}): too few to compare, not gated"], n, holdout.cutoff
        )
    ch = served_ranking(holdout, challenger[0], challenger[1], config, k=k)
    pop = PopularityBaseline(holdout.history, tuple(config.data.positive_weights))
    pop_ndcg = user_ndcg([pop.rank(u, holdout.cutoff, k) for u in holdout.users], holdout.truth, k)
    c_ndcg = ch["per_user_ndcg"]
    reasons: list[str] = []
    pct = int(round(level * 100))
    ch_mean = float(np.nanmean(c_ndcg))

    def compare(other_ndcg, label: str, users: str, worse: str, not_worse: str) -> tuple[float, dict, bool]:
        """Challenger against ``other_ndcg`` (same users): its mean, the paired bootstrap, and whether the whole
        interval of the difference is below zero; the reason is appended."""
        mean = float(np.nanmean(other_ndcg))
        pb = paired_bootstrap(c_ndcg, other_ndcg, n_boot=n_boot, level=level, seed=seed)
        below = pb["diff_hi"] < 0
        reasons.append(
            f"vs {label}: NDCG@{k} {ch_mean:.4f} vs {mean:.4f}{users}, difference {pb['diff']:+.4f} "
            f"[{pct}% CI {pb['diff_lo']:+.4f}, {pb['diff_hi']:+.4f}] -> " + (worse if below else not_worse)
        )
        return mean, pb, below

    pop_mean, _, below_pop = compare(
        pop_ndcg, "popularity", f" on {n} users", "significantly below popularity", "not below popularity"
    )
    s1 = served_ranking(holdout, None, challenger[1], config, k=k, use_model=False)
    s1_mean, vs_s1, below_s1 = compare(
        s1["per_user_ndcg"], "stage 1's order (no model)", "", "significantly below stage 1's order",
        "not below stage 1's order",
    )  # fmt: skip
    passed = not below_pop and not below_s1
    champ_mean, paired = None, None
    if champion is not None:
        cm = served_ranking(holdout, champion[0], champion[1], champion[2], k=k)
        champ_mean, paired, worse = compare(
            cm["per_user_ndcg"], f"champion {champion_version or ''}", "", "significantly worse",
            "not significantly worse",
        )  # fmt: skip
        passed &= not worse
    else:
        reasons.append("no champion: compared with popularity and stage 1's order")
    return HoldoutDecision(
        passed, reasons, n, holdout.cutoff, ch_mean, champ_mean, pop_mean, champion_version, paired, s1_mean, vs_s1
    )

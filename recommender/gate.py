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
    passed, reasons = True, []
    pct = int(round(level * 100))
    pop_mean, ch_mean = float(np.nanmean(pop_ndcg)), float(np.nanmean(c_ndcg))
    vs_pop = paired_bootstrap(c_ndcg, pop_ndcg, n_boot=n_boot, level=level, seed=seed)
    below = vs_pop["diff_hi"] < 0
    passed &= not below
    reasons.append(
        f"vs popularity: NDCG@{k} {ch_mean:.4f} vs {pop_mean:.4f} on {n} users, difference {vs_pop['diff']:+.4f} "
        f"[{pct}% CI {vs_pop['diff_lo']:+.4f}, {vs_pop['diff_hi']:+.4f}] -> "
        + ("significantly below popularity" if below else "not below popularity")
    )
    s1 = served_ranking(holdout, None, challenger[1], config, k=k, use_model=False)
    s1_mean = float(np.nanmean(s1["per_user_ndcg"]))
    vs_s1 = paired_bootstrap(c_ndcg, s1["per_user_ndcg"], n_boot=n_boot, level=level, seed=seed)
    below_s1 = vs_s1["diff_hi"] < 0
    passed &= not below_s1
    reasons.append(
        f"vs stage 1's order (no model): NDCG@{k} {ch_mean:.4f} vs {s1_mean:.4f}, difference {vs_s1['diff']:+.4f} "
        f"[{pct}% CI {vs_s1['diff_lo']:+.4f}, {vs_s1['diff_hi']:+.4f}] -> "
        + ("significantly below stage 1's order" if below_s1 else "not below stage 1's order")
    )
    champ_mean, paired = None, None
    if champion is not None:
        cm = served_ranking(holdout, champion[0], champion[1], champion[2], k=k)
        champ_mean = float(np.nanmean(cm["per_user_ndcg"]))
        paired = paired_bootstrap(c_ndcg, cm["per_user_ndcg"], n_boot=n_boot, level=level, seed=seed)
        worse = paired["diff_hi"] < 0
        reasons.append(
            f"vs champion {champion_version or ''}: NDCG@{k} {ch_mean:.4f} vs {champ_mean:.4f}, difference "
            f"{paired['diff']:+.4f} [{pct}% CI {paired['diff_lo']:+.4f}, {paired['diff_hi']:+.4f}] -> "
            + ("significantly worse" if worse else "not significantly worse")
        )
        passed &= not worse
    else:
        reasons.append("no champion: compared with popularity and stage 1's order")
    return HoldoutDecision(
        passed, reasons, n, holdout.cutoff, ch_mean, champ_mean, pop_mean, champion_version, paired, s1_mean, vs_s1
    )

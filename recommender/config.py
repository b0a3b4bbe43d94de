"""Configuration of the recommender: plain dataclasses that round-trip through JSON.

`Config` bundles four parts: how interactions become examples (`DataConfig`), how examples become
tensors (`FeatureConfig`), the network (`ModelConfig`) and the optimisation (`TrainConfig`).
`Config.to_dict()` / `Config.from_dict()` give plain python so the registry can store it beside
the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

DAY = 86_400


@dataclass
class DataConfig:
    """Interactions -> labelled examples.

    ``positive_weights`` names the event types that count as positives and the loss weight of each.
    ``impression_negatives``: an impression with no positive on the same item by the same user within
    ``click_window_s`` is a negative (exposure-aware). ``negatives_ratio`` sampled negatives are added per
    positive, drawn from the catalogue by a mix of uniform and popularity sampling (``popularity_mix`` is
    the share drawn by popularity). (The ranker itself trains on stage 1's candidates,
    :func:`recommender.rows.training_rows`; these pointwise rows are its fallback on a log too short to cut.)
    """

    positive_weights: dict[str, float] = field(
        default_factory=lambda: {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0}
    )
    impression_negatives: bool = True
    impression_negative_weight: float = 1.0
    click_window_s: int = 1_800
    negatives_ratio: int = 4
    negative_weight: float = 1.0
    popularity_mix: float = 0.5
    # Event types that build a user's history (recent-items bag, counts). Impressions are exposure,
    # not interest, so they stay out.
    history_types: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
    valid_fraction: float = 0.2
    # The ranker's rows (recommender.rows): stage-1 candidates at this many cutoffs before the validation
    # cutoff, labelled by the user's next basket (positives within basket_window_s of the first one) within
    # label_horizon_s after the cutoff.
    candidate_cutoffs: int = 3
    candidates_per_user: int = 200
    label_horizon_s: int = 7 * DAY
    basket_window_s: int = DAY
    # Exposure weighting of those rows (inverse propensity): a positive on an item the shop showed often in the
    # label window (its impressions there, every placement) weighs (1 + impressions) ** -exposure_power, scaled
    # so the window's positives keep their mean weight of 1 and capped at exposure_weight_cap. A log's clicks
    # follow what its rankings showed; unweighted, a ranker learns "what was shown sells". 0 turns it off; a log
    # without impressions (a retail log) is unchanged either way.
    exposure_power: float = 0.5
    exposure_weight_cap: float = 10.0


@dataclass
class FeatureConfig:
    """Examples -> tensors: vocabularies, buckets and the recent-items bag."""

    recent_items: int = 20  # length cap of the user's recent-items bag (jagged)
    price_buckets: int = 16
    oov_buckets: int = 97  # hashed buckets for ids unseen at fit time (cold start)
    id_dropout: float = 0.05  # share of user and item ids trained on their OOV bucket (so cold ids get trained rows)
    min_user_count: int = 2  # users with fewer training examples hash into the OOV buckets (so those rows train)
    min_item_count: int = 1
    trend_window_s: int = 7 * DAY
    recency_cap_days: float = 365.0


@dataclass
class ModelConfig:
    """The network. ``dense_arch[-1]`` must equal ``embedding_dim`` (DLRM projects dense into the embedding space)."""

    arch: Literal["dlrm", "dlrm_dcn"] = "dlrm"
    embedding_dim: int = 16
    dense_arch: tuple[int, ...] = (64, 16)
    over_arch: tuple[int, ...] = (128, 64, 1)
    dcn_num_layers: int = 2
    dcn_low_rank_dim: int = 32
    # how the customer's recent items reach the interaction: "mean" (the item table's MEAN-pooled bag) or "din"
    # (target attention from the candidate over the last history_length items, recommender.attention)
    history_encoder: Literal["mean", "din"] = "mean"
    history_length: int = 20
    # stage 3: top-k positions kept for items new to the user; set by recommender.train.train_rows from the
    # validation rows (recommender.rules.choose_explore_slots), travels with the model in its config
    explore_slots: int = 0
    # or: new items ranked by log p + explore_boost (recommender.rules.boosted_order), chosen the same way
    explore_boost: float = 0.0

    def __post_init__(self) -> None:
        self.dense_arch = tuple(self.dense_arch)
        self.over_arch = tuple(self.over_arch)
        if self.arch not in ("dlrm", "dlrm_dcn"):
            raise ValueError(f"arch must be 'dlrm' or 'dlrm_dcn', not {self.arch!r}")
        if self.dense_arch[-1] != self.embedding_dim:
            raise ValueError(f"dense_arch must end with embedding_dim ({self.embedding_dim}), got {self.dense_arch}")
        if self.over_arch[-1] != 1:
            raise ValueError(f"over_arch must end with 1 (one logit), got {self.over_arch}")
        if self.history_encoder not in ("mean", "din"):
            raise ValueError(f"history_encoder must be 'mean' or 'din', not {self.history_encoder!r}")


@dataclass
class TrainConfig:
    """Optimisation: row-wise Adagrad (fused) for embeddings, Adam for the MLPs."""

    batch_size: int = 2048
    epochs: int = 3
    # fewer updates than this (a small log at batch_size x epochs) train on smaller batches, then more epochs
    # (recommender.train.step_schedule)
    min_steps: int = 300
    # Stage-1 candidate rows: the ranker starts from stage 1's order (recommender.train.train). A small log
    # (fewer than min_steps updates at batch_size) adds it as a fixed prior, the log-odds of a positive by place
    # in that order (recommender.train.stage1_teacher), to a network whose last layer starts at zero; a large
    # log first fits the whole network to it (warm_start_steps updates of logit matching, Adam at warm_start_lr)
    stage1_start: bool = True
    warm_start_steps: int = 300
    warm_start_lr: float = 1e-2
    # with validation rows: validation log loss every 1/validation_checks of the run (and before the first update);
    # the best check's model is kept and the refit on all rows trains as many passes (0: no early stopping)
    validation_checks: int = 20
    validation_check_rows: int = 200_000  # a fixed random sample of at most this many validation rows per check
    lr: float = 1e-3  # Adam, dense MLPs
    embedding_lr: float = 0.05  # fused RowWiseAdagrad, embedding tables
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto" -> cuda when present, else cpu
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    progress: bool = True
    auc_window: int = 50  # batches in the running AUC shown on the progress bar


# keys older versions wrote that no longer mean anything (their path was removed); ignored when loading a
# saved config so a rollback to such a version still loads
RETIRED_KEYS: dict[str, tuple[str, ...]] = {
    "DataConfig": ("history_negatives", "category_negatives", "hard_negative_weight"),
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        # tuples -> lists so the JSON round trip is exact
        return _listify(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        def build(kind, values):
            names = {f.name for f in dataclasses.fields(kind)}
            values = {k: v for k, v in values.items() if k not in RETIRED_KEYS.get(kind.__name__, ())}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} keys: {sorted(unknown)}")
            kwargs = {k: tuple(v) if isinstance(v, list) and k != "positive_weights" else v for k, v in values.items()}
            return kind(**kwargs)

        return cls(
            data=build(DataConfig, data.get("data", {})),
            features=build(FeatureConfig, data.get("features", {})),
            # a model saved before history_encoder existed pooled its recent items by mean
            model=build(ModelConfig, {"history_encoder": "mean", **data.get("model", {})}),
            train=build(TrainConfig, data.get("train", {})),
        )


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when a GPU is present, else ``cpu``; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

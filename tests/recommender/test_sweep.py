"""The candidates sweep: quality and latency per number of candidates the ranker scores."""

from __future__ import annotations

import json

import pytest
import torch

from recommender.config import Config
from recommender.data import build_examples, next_basket_split, synthetic_shop
from recommender.features import FeatureSpace
from recommender.model import build_model
from recommender.pipeline import PipelineConfig, RecPipeline
from recommender.sweep import main, sweep


@pytest.fixture(scope="module")
def shop():
    data = synthetic_shop(n_users=120, n_items=150, seed=0)
    split = next_basket_split(data.interactions)
    cfg = Config()
    space = FeatureSpace.fit(build_examples(split.history, data.items, cfg.data, features=cfg.features), cfg.features)
    torch.manual_seed(0)
    model = build_model(
        cfg.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    )
    pipe = RecPipeline.build(
        history=split.history,
        items=data.items,
        model=model.eval(),
        space=space,
        config=cfg,
        pipeline_config=PipelineConfig(n_candidates=60, k=10, max_per_category=2),
        device="cpu",
    )
    return data, split, pipe


def test_sweep_reports_quality_and_latency_per_setting(shop):
    data, split, pipe = shop
    users, times, truth = split.users[:8], split.times[:8], split.baskets[:8]
    rows = sweep(pipe, users, times, truth, settings=(10, 40))
    assert [r.setting for r in rows] == ["retrieval-only@40", "10", "40", "catalogue"]
    for r in rows:
        assert 0.0 <= r.recall_at_10 <= 1.0 and r.p50_ms > 0 and r.p99_ms >= r.p50_ms
    assert rows[1].n_candidates == 10 and rows[-1].n_candidates == len(data.items)


@pytest.mark.slow
def test_sweep_cli_trains_and_writes_json(tmp_path):
    out = tmp_path / "sweep.json"
    assert (
        main(
            [
                "--synthetic-users",
                "150",
                "--eval-users",
                "20",
                "--settings",
                "10,30",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert [r["setting"] for r in report["rows"]] == ["retrieval-only@30", "10", "30", "catalogue"]
    assert report["valid_auc"] > 0.5

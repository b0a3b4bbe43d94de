"""The real Ta Feng purchase log: adapter + training smoke on a slice; the whole file under `slow`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from recommender.config import Config
from recommender.data import interactions_from_retail_log, next_basket_split
from recommender.evaluate import evaluate_next_basket, next_basket_config, print_table
from recommender.train import train_on_interactions
from tests.shared_data import ta_feng_zip

REPO = Path(__file__).resolve().parents[2]


def _cfg(epochs: int) -> Config:
    cfg = Config()
    cfg.data.positive_weights = {"purchase": 1.0}
    cfg.train.epochs = epochs
    cfg.train.progress = False
    cfg.train.threads = 1
    return cfg


@pytest.fixture(scope="module")
def slice_50k():
    return interactions_from_retail_log(ta_feng_zip(), limit=50_000)


def test_adapter_maps_lines_to_purchases(slice_50k):
    inter, items = slice_50k.interactions, slice_50k.items
    assert len(inter) == 50_000
    assert set(np.unique(inter.event_type)) == {"purchase"}
    assert (np.diff(inter.timestamp) >= 0).all() and (inter.timestamp % 86_400 == 0).all()
    assert set(np.unique(inter.item_id)) == set(items.item_id)
    assert np.isfinite(items.price).all() and (items.price >= 0).all()
    assert (items.category != "").all()
    split = next_basket_split(inter)
    assert len(split.users) > 100 and all(len(b) for b in split.baskets)


def test_slice_trains(slice_50k):
    cfg = _cfg(epochs=1)
    cfg.train.batch_size = 1024
    cfg.train.embedding_lr = 0.1
    result = train_on_interactions(slice_50k, cfg)
    # two weeks of data, many validation customers unseen: a smoke test, the real figure is the slow test
    assert result.metrics["valid_auc"] > 0.55
    assert result.metrics["train_loss"][-1] < 0.6


@pytest.mark.slow
def test_whole_file_pipeline_against_baselines(capsys):
    """Next basket on the whole log, the DLRM pipeline (candidates -> DLRM -> rules) against the baselines and
    stage 1's own order on the same 1,000 customers. Prints the table and writes
    var/bench/eval_ta_feng_1000.json. Asserted: the ranker earns its place (the paired bootstrap interval
    of its gain over stage 1's order lies above zero on Recall@10 and NDCG@10), it beats popularity, and
    validation AUC is useful; the margin over TIFU-KNN is reported, not asserted (1,000 users)."""
    data = interactions_from_retail_log(ta_feng_zip())
    cfg = next_basket_config()
    cfg.train.progress = False
    cfg.train.threads = 2
    cfg.train.epochs = 1
    t = time.perf_counter()
    report = evaluate_next_basket(data, config=cfg, eval_users=1000, progress=False)
    report["seconds"] = round(time.perf_counter() - t, 1)
    out = REPO / "var" / "bench" / "eval_ta_feng_1000.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print_table(report)
    m = report["methods"]
    assert report["valid_auc"] > 0.7
    assert m["dlrm_pipeline"]["recall@10"] > m["popularity"]["recall@10"]
    assert m["dlrm_pipeline"]["ndcg@10"] > m["popularity"]["ndcg@10"]
    assert m["dlrm_pipeline"]["candidate_recall"] > m["dlrm_pipeline"]["recall@10"]
    for metric in ("recall@10", "ndcg@10"):
        assert m["dlrm_pipeline"][metric] > m["retrieval_only"][metric]
        assert report[f"dlrm_vs_retrieval_only_{metric}"]["diff_lo"] > 0, report[f"dlrm_vs_retrieval_only_{metric}"]

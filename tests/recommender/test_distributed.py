"""Two real processes under torchrun: DistributedModelParallel, table-wise sharding, gloo on CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrun_training(tmp_path):
    out = tmp_path / "ranks"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "recommender.train", "--distributed", "--device", "cpu",
        "--synthetic-users", "100", "--epochs", "2", "--batch-size", "256", "--no-progress",
        "--out-dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, summary in enumerate(ranks):
        assert summary["rank"] == r and summary["world_size"] == 2 and summary["backend"] == "gloo"
        assert summary["local_examples"] > 0
        assert summary["local_train_loss"][-1] < summary["local_train_loss"][0]
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]  # all-reduced
    assert ranks[0]["train_loss"][-1] < ranks[0]["train_loss"][0]
    # table-wise: every table lives whole on one rank, and both ranks hold some
    placements = {p.split("ranks=")[1] for p in ranks[0]["plan"].values()}
    assert all(p in ("[0]", "[1]") for p in placements) and len(placements) == 2
    assert all(v.startswith("table_wise") for v in ranks[0]["plan"].values())

"""Registry: atomic saves, checksums, promote / rollback, champion-challenger gate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from recommender.registry import ArtifactError, Registry, gate

ROOT = Path(__file__).resolve().parents[2]


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))


def _register(reg: Registry, seed: int, auc: float = 0.8, ndcg: float = 0.3) -> str:
    return reg.register(
        weights=_model(seed),
        vocabularies={"item": {"ids": np.arange(10, dtype=np.int64), "oov_buckets": 4}, "names": ["a", "b"]},
        config={"embedding_dim": 16, "seed": seed},
        metrics={"auc": auc, "ndcg@10": ndcg},
    )


def test_register_load_roundtrip(tmp_path):
    reg = Registry(tmp_path)
    v = _register(reg, 1)
    assert v == "v0001"
    art = reg.load(v)
    expected = _model(1).state_dict()
    assert set(art.weights["model"]) == set(expected)
    for k, t in expected.items():
        assert torch.equal(art.weights["model"][k], t)
    np.testing.assert_array_equal(art.vocabularies["item"]["ids"], np.arange(10))
    assert art.vocabularies["item"]["oov_buckets"] == 4 and art.vocabularies["names"] == ["a", "b"]
    assert art.config["embedding_dim"] == 16 and art.metrics["auc"] == 0.8
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "weights.pt",
        "vocabularies.json",
        "vocabularies.npz",
        "config.json",
        "metrics.json",
    }
    assert all(len(m["sha256"]) == 64 for m in manifest["files"].values())


def test_promote_rollback_and_listing(tmp_path):
    reg = Registry(tmp_path)
    assert reg.active() is None
    with pytest.raises(ArtifactError, match="no active model"):
        reg.load()
    v1, v2, v3 = (_register(reg, s) for s in (1, 2, 3))
    reg.promote(v1)
    reg.promote(v2)
    reg.promote(v3)
    assert reg.active() == v3 and reg.load().version == v3
    assert [i.version for i in reg.list_versions()] == [v1, v2, v3]
    assert [i.active for i in reg.list_versions()] == [False, False, True]
    assert reg.rollback() == v2 and reg.active() == v2
    assert reg.rollback() == v1
    with pytest.raises(ArtifactError, match="nothing to roll back"):
        reg.rollback()
    assert reg.active() == v1
    with pytest.raises(ArtifactError, match="does not exist"):
        reg.promote("v0042")


def test_corrupt_byte_in_weights_is_refused_and_never_served(tmp_path):
    reg = Registry(tmp_path)
    good = _register(reg, 1)
    reg.promote(good)
    bad = _register(reg, 2)
    weights = tmp_path / "versions" / bad / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(ArtifactError, match=r"weights\.pt is corrupt") as err:
        reg.load(bad)
    assert err.value.file == "weights.pt" and err.value.version == bad
    with pytest.raises(ArtifactError, match="weights.pt"):
        reg.promote(bad)
    assert reg.active() == good
    assert reg.load().version == good


def test_promote_if_better_never_activates_corrupt_candidate(tmp_path):
    reg = Registry(tmp_path)
    reg.promote(_register(reg, 1, auc=0.7))
    bad = _register(reg, 2, auc=0.9)
    (tmp_path / "versions" / bad / "weights.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(ArtifactError, match="truncated"):
        reg.promote_if_better(bad, tolerance=0.0)
    assert reg.active() == "v0001"


@pytest.mark.parametrize("victim", ["weights.pt", "vocabularies.npz", "manifest.json", "config.json"])
def test_missing_or_truncated_file_is_named(tmp_path, victim):
    reg = Registry(tmp_path)
    v = _register(reg, 1)
    f = tmp_path / "versions" / v / victim
    if victim == "manifest.json":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(ArtifactError, match=victim.replace(".", r"\.")):
        reg.load(v)


def test_weights_pass_checksum_but_not_torch_load(tmp_path):
    """A manifest rewritten to match a garbage file still fails with a clear error, not a pickle error."""
    reg = Registry(tmp_path)
    v = _register(reg, 1)
    vdir = tmp_path / "versions" / v
    (vdir / "weights.pt").write_bytes(b"not a torch file")
    manifest = json.loads((vdir / "manifest.json").read_text())
    import hashlib

    manifest["files"]["weights.pt"] = {"sha256": hashlib.sha256(b"not a torch file").hexdigest(), "size": 16}
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"weights\.pt cannot be loaded"):
        reg.load(v)


def test_gate_rules():
    champ = {"auc": 0.80, "ndcg@10": 0.30}
    assert gate({"auc": 0.5, "ndcg@10": 0.0}, None).passed  # the first model always passes
    assert gate({"auc": 0.81, "ndcg@10": 0.31}, champ, 0.0).passed
    assert gate({"auc": 0.795, "ndcg@10": 0.30}, champ, 0.01).passed  # within tolerance
    d = gate({"auc": 0.78, "ndcg@10": 0.35}, champ, 0.01)
    assert not d.passed and any("auc" in r and "worse" in r for r in d.reasons)
    assert not gate({"auc": 0.85, "ndcg@10": 0.25}, champ, 0.01).passed
    assert not gate({"auc": 0.85}, champ, 0.01).passed  # missing NDCG cannot prove it is not worse
    with pytest.raises(ValueError):
        gate(champ, champ, -0.1)
    # the trainer's spelling is accepted
    assert not gate({"valid_auc": 0.70, "ndcg@10": 0.40}, champ, 0.01).passed
    assert Registry.gate({"valid_auc": 0.80, "ndcg@10": 0.30}, champ).passed


def test_promote_if_better_champion_challenger(tmp_path):
    reg = Registry(tmp_path)
    first = _register(reg, 1, auc=0.70, ndcg=0.20)
    assert reg.promote_if_better(first, tolerance=0.0).passed and reg.active() == first
    worse = _register(reg, 2, auc=0.60, ndcg=0.25)
    decision = reg.promote_if_better(worse, tolerance=0.02)
    assert not decision.passed and reg.active() == first
    better = _register(reg, 3, auc=0.69, ndcg=0.22)
    assert reg.promote_if_better(better, tolerance=0.02).passed and reg.active() == better


CHILD = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    import recommender.registry as r
    point = sys.argv[2]
    real_write, real_fsync_dir = r._write_bytes, r._fsync_dir

    def hang():
        print("MID", flush=True)
        time.sleep(600)

    def write(path, data):
        if path.name == point:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2]); f.flush()
            hang()
        real_write(path, data)

    def fsync_dir(path):
        if point == "before-rename" and path.name.startswith(".tmp-"):
            real_fsync_dir(path)
            hang()
        real_fsync_dir(path)

    r._write_bytes, r._fsync_dir = write, fsync_dir
    reg = r.Registry(sys.argv[1])
    torch.manual_seed(9)
    reg.register(weights={"model": {"w": torch.randn(256, 256)}}, vocabularies={"x": np.arange(5)},
                 config={}, metrics={"auc": 0.99, "ndcg@10": 0.99})
    print("DONE", flush=True)
    """
)


@pytest.mark.parametrize("point", ["weights.pt", "manifest.json", "before-rename"])
def test_sigkill_mid_save_leaves_old_model(tmp_path, point):
    reg = Registry(tmp_path)
    old = _register(reg, 1)
    reg.promote(old)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), point],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line == "MID", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    assert list(tmp_path.glob(".tmp-*")), "the killed save should have left only a hidden temp directory"
    assert [i.version for i in reg.list_versions()] == [old]
    assert reg.active() == old
    assert reg.load().version == old
    # the next save gets a fresh, complete version; the debris can be collected
    new = _register(reg, 2)
    assert new == "v0002" and reg.load(new).version == new
    assert reg.gc_incomplete(older_than_s=0) and not list(tmp_path.glob(".tmp-*"))

"""scripts/gpu-check.sh on a machine without CUDA: it says so and exits 0 (the GPU half needs a GPU)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script runs the real check")
def test_gpu_check_skips_clearly_without_cuda(tmp_path):
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "SKIPPED - no CUDA device" in out.stdout
    assert not any(tmp_path.iterdir()), "nothing is measured or written when there is no GPU"


def test_gpu_check_rejects_unknown_arguments():
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--fast"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "unknown argument --fast" in out.stderr

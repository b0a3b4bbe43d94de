"""The benchmarks' CPU accounting (``benchmarks.harness``) keeps a process that exits during a run.

A PostgreSQL backend closed by ``CONN_MAX_AGE`` in the middle of a long run (R6's 15 minutes) used to
take its CPU with it: the meter counted it for nobody, and the machine's busy time it left behind was
reported as "other processes" (every 60 s, when the connections closed together, a window showed
other processes at 37-50% of the machine).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.harness import CpuMeter, tree_cpu_by_pid

# A parent that starts one child and waits for it (as the postmaster does for a backend). The child burns
# ``a`` seconds of CPU, says so, waits for the go file, burns ``b`` more and exits.
CHILD = """
import os, sys, time
def burn(s):
    end = time.process_time() + s
    while time.process_time() < end:
        pass
flag, go, a, b = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
burn(a)
open(flag, "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
burn(b)
"""
PARENT = """
import subprocess, sys, time
flag, go, a, b, reaped = sys.argv[1:6]
subprocess.Popen([sys.executable, "-c", sys.argv[6], flag, go, a, b]).wait()
open(reaped, "w").close()
time.sleep(120)
"""


def _wait_for(path: Path, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.01)


class Family:
    def __init__(self, tmp: Path, *, before_s: float, during_s: float) -> None:
        self.burnt, self.go, self.reaped = tmp / "burnt", tmp / "go", tmp / "reaped"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PARENT, str(self.burnt), str(self.go), str(before_s), str(during_s),
             str(self.reaped), CHILD]
        )  # fmt: skip
        _wait_for(self.burnt, "the child's first burn")

    def finish(self) -> None:
        self.go.touch()
        _wait_for(self.reaped, "the child's exit")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def family(tmp_path: Path):
    made: list[Family] = []

    def make(*, before_s: float, during_s: float) -> Family:
        folder = tmp_path / str(len(made))
        folder.mkdir()
        made.append(Family(folder, before_s=before_s, during_s=during_s))
        return made[-1]

    yield make
    for f in made:
        f.close()


def test_a_child_that_exits_during_the_span_is_counted_with_its_tree(family) -> None:
    f = family(before_s=0.0, during_s=0.4)
    meter = CpuMeter(pids={"tree": f.proc.pid}).start()
    f.finish()
    used = meter.stop()["cpu_seconds"]["tree"]
    assert used >= 0.3, f"the tree used {used:.3f} s; its child burnt 0.4 s during the span and exited"


def test_the_part_a_child_used_before_the_span_is_not_counted(family) -> None:
    f = family(before_s=0.4, during_s=0.3)
    meter = CpuMeter(pids={"tree": f.proc.pid}).start()
    f.finish()
    used = meter.stop()["cpu_seconds"]["tree"]
    assert 0.2 <= used <= 0.55, f"the tree used {used:.3f} s; its child burnt 0.3 s during the span (0.4 before)"


def test_a_trees_cpu_never_drops_when_one_of_its_processes_exits(family) -> None:
    # R6's windows subtract two such sums: a drop was reported as other processes' work
    f = family(before_s=0.3, during_s=0.0)
    alive = sum(tree_cpu_by_pid(f.proc.pid).values())
    f.finish()
    gone = sum(tree_cpu_by_pid(f.proc.pid).values())
    assert alive >= 0.25
    assert gone >= alive - 0.01, f"the tree's CPU fell from {alive:.3f} to {gone:.3f} s when its child exited"

"""A web process builds its serving pipeline in a child process (RECS_SERVING_BUILD_APART) and serves the
result here: the same rankings as a pipeline built in this process, the same errors when a build fails.

``tests/settings.py`` builds in the test process (a child per build costs a fork server's start); these tests
turn the child on. ``benchmarks.reload`` measures what it is for (how long request threads wait).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from shop.recs import export, keys, serving
from shop.recs.models import ModelVersion
from tests.shop.test_recs_live import served  # noqa: F401 - the fixture
from tests.shop.test_recs_stage1 import unranked  # noqa: F401 - the fixture
from tests.worker.conftest import recs_dirs  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def _ranking(model, visitor, *, use_model: bool = True) -> list[list[str]]:
    user = keys.user_key(visitor_id=visitor, user_id=None)
    now = int(time.time()) + 1
    return [list(model.pipeline.recommend(user, now=now, k=8, use_model=use_model).item_ids)]


def test_a_model_built_in_a_child_ranks_as_one_built_here(served, settings):  # noqa: F811
    shop, version = served
    here = serving.serving_model()
    assert here.built_in_pid == os.getpid()  # the fixture built it in this process (tests/settings.py)
    expected = {v: _ranking(here, v) for v in shop.visitors[:5]}

    settings.RECS_SERVING_BUILD_APART = True
    serving.serving_forget()
    apart = serving.serving_reload()
    assert apart is not None and apart.version == version.version and serving.serving_status().error == ""
    assert apart.built_in_pid not in (0, os.getpid())  # built by another process, served by this one
    assert apart.snapshot == here.snapshot and apart.max_event_id == here.max_event_id
    for visitor, ranking in expected.items():
        assert _ranking(apart, visitor) == ranking, visitor


def test_a_build_that_fails_in_the_child_says_why_and_keeps_what_serves(served, settings):  # noqa: F811
    shop, version = served
    errors = {}
    for apart in (False, True):
        settings.RECS_SERVING_BUILD_APART = apart
        serving.serving_forget()
        copy = Path(settings.MODEL_DIR) / "versions" / version.version
        kept = copy.with_name(copy.name + ".kept")
        shutil.copytree(copy, kept)
        shutil.rmtree(copy)
        try:
            assert serving.serving_reload() is None
            errors[apart] = serving.serving_status().error
        finally:
            kept.rename(copy)
    # the child's exception comes back with its type and message: the same reason as a build here
    assert errors[True] == errors[False] and errors[True].startswith(f"model {version.version} unavailable: ")

    # a model that serves goes on serving while a newer version fails to build in the child
    settings.RECS_SERVING_BUILD_APART = True
    serving.serving_forget()
    serving._failed.clear()
    first = serving.serving_reload()
    assert first is not None and first.version == version.version
    broken = ModelVersion.objects.create(version="v9999", is_active=False, metrics={})
    ModelVersion.objects.filter(is_active=True).update(is_active=False)
    ModelVersion.objects.filter(pk=broken.pk).update(is_active=True)
    assert serving.serving_reload() is first
    assert serving.serving_status().error.startswith("model v9999 unavailable: ")


def test_stage_1_without_a_model_is_fitted_in_a_child(unranked, settings):  # noqa: F811
    assert serving.serving_stage1_reload() is not None
    here = serving.serving_stage1()
    visitor = unranked.visitors[2]
    expected = _ranking(here, visitor, use_model=False)

    settings.RECS_SERVING_BUILD_APART = True
    serving.serving_forget()
    apart = serving.serving_stage1_reload()
    assert apart is not None and apart.stage1_only and apart.snapshot == export.snapshot_latest().name
    assert apart.built_in_pid not in (0, os.getpid()) and serving.serving_stage1_error() == ""
    assert _ranking(apart, visitor, use_model=False) == expected


def test_the_reload_benchmark_measures_both_ways_of_building(served):  # noqa: F811
    """``benchmarks.reload``'s measurement, on the test's small model (figures are not judged here)."""
    from benchmarks.reload import one_build

    runs = [one_build(apart) for apart in (False, True)]
    assert [r["mode"] for r in runs] == ["inline", "apart"]
    assert [r["built_in_child"] for r in runs] == [False, True]
    for r in runs:
        assert r["build_s"] > 0 and r["ticks"] > 0 and r["longest_wait_ms"] >= r["p999_wait_ms"] >= 0
        assert r["version"] == served[1].version
    assert serving.serving_model().built_in_pid != os.getpid()


def test_a_build_whose_web_process_died_leaves_no_file_behind(tmp_path):
    """A web process killed while its child builds (a worker restart, an OOM kill): the child finishes but
    writes nothing, since nobody would read or delete its file (600 MB at 5 million events)."""
    import signal
    import subprocess
    import sys

    # the "build": says it started, then takes 3 s (a module of its own: the child imports it by name)
    (tmp_path / "slow_build.py").write_text(
        "import os, time\nfrom pathlib import Path\n\n"
        "def run(flag):\n    Path(flag + '.tmp').write_text(f'{os.getpid()} {os.getppid()}')\n"
        "    os.replace(flag + '.tmp', flag)  # whole when it appears\n    time.sleep(3)\n    return 'built'\n"
    )
    flag = tmp_path / "started"
    script = (
        f"from slow_build import run\nfrom shop.recs.engine import build_apart\nbuild_apart(run, flag={str(flag)!r})\n"
    )
    builds = tmp_path / "tmp"
    builds.mkdir()
    paths = os.pathsep.join([str(tmp_path), str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TMPDIR": str(builds), "PYTHONPATH": paths}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the fork server starts (it imports torch), then forks the child that builds
    assert flag.exists() and proc.poll() is None
    child, server = (int(x) for x in flag.read_text().split())
    proc.send_signal(signal.SIGKILL)  # the web process dies while its child builds
    proc.wait(10)
    time.sleep(5)  # past the end of the child's build
    (folder,) = builds.glob("shop-serving-build-*")  # left behind by the killed process (empty)
    assert list(folder.iterdir()) == []
    # and neither the child nor its fork server lingers (each holds torch: 300-400 MB resident)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(pid) for pid in (child, server)):
        time.sleep(0.1)
    assert not _running(child) and not _running(server)
    assert folder.stat().st_mode & 0o077 == 0  # only this user may open the folder the result is read from


def _running(pid: int) -> bool:
    """``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

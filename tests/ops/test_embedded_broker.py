"""The embedded demo's broker (kombu's filesystem transport) and the test suite.

`make demo` runs a Celery worker on the message folders under ``var/broker``. Tasks the test suite sends
must not land there: the demo's worker would pick them up later and run them against its own database,
where their runs do not exist ("task run ... does not exist; nothing to do", once a second at start-up).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]


def _messages(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*")} if folder.is_dir() else set()


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("filesystem://"), reason="the tests run on another broker"
)
def test_a_task_the_tests_send_stays_out_of_the_demos_broker_folder():
    out = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_out"])
    demo_out = REPO / "var" / "broker" / "out"
    demo_before = _messages(demo_out)
    before = _messages(out)
    task_id = str(uuid.uuid4())

    current_app.send_task("worker.tasks.task_runs_send_pending", task_id=task_id)

    new = _messages(out) - before
    try:
        assert len(new) == 1, f"expected one message in {out}, found {sorted(new)}"
        assert task_id in (out / next(iter(new))).read_text()
        assert _messages(demo_out) == demo_before, f"the test's message reached {demo_out}"
        assert not out.resolve().is_relative_to(REPO.resolve()), f"{out} is inside the working tree"
    finally:
        for name in new:
            (out / name).unlink(missing_ok=True)


def test_the_broker_folder_is_a_setting(monkeypatch, tmp_path):
    """``BROKER_DIR`` moves the embedded broker's folders (out, processed, control) together."""
    import importlib

    import shop.settings.base as base

    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    monkeypatch.setenv("BROKER_DIR", str(tmp_path / "b"))
    try:
        reloaded = importlib.reload(base)
        options = reloaded.CELERY_BROKER_TRANSPORT_OPTIONS
        assert {k: Path(v) for k, v in options.items() if k.endswith("folder") or "folder_" in k} == {
            "data_folder_in": tmp_path / "b" / "out",
            "data_folder_out": tmp_path / "b" / "out",
            "processed_folder": tmp_path / "b" / "processed",
            "control_folder": tmp_path / "b" / "control",
        }
        monkeypatch.delenv("BROKER_DIR")
        assert Path(importlib.reload(base).CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_out"]) == (
            REPO / "var" / "broker" / "out"
        )
    finally:
        monkeypatch.undo()
        importlib.reload(base)


def test_the_default_broker_url_connects_without_a_warning(monkeypatch, caplog):
    """kombu warned "No hostname was supplied. Reverting to default 'localhost'" for ``filesystem://`` in every
    process that sent or took a task (five times in a `make demo` console)."""
    import importlib
    import logging

    from kombu import Connection

    import shop.settings.base as base

    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    try:
        url = importlib.reload(base).CELERY_BROKER_URL
    finally:
        monkeypatch.undo()
        importlib.reload(base)
    assert url.startswith("filesystem://")
    with caplog.at_level(logging.WARNING, logger="kombu.connection"):
        info = Connection(url).info()
    assert info["transport"] == "filesystem"
    assert [r.getMessage() for r in caplog.records if r.name == "kombu.connection"] == []

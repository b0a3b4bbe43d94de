"""Logging filters shared by the web processes (Django's ``LOGGING``) and the Celery worker."""

from __future__ import annotations

import logging
import os


class LibraryChatter(logging.Filter):
    """Drops INFO and DEBUG records that fbgemm-gpu and torchrec log through the root logger (a line per
    native library loaded, and every TBE they build logs its whole argument list); their warnings and errors
    still show."""

    LIBRARIES = (f"{os.sep}fbgemm_gpu{os.sep}", f"{os.sep}torchrec{os.sep}")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(lib in record.pathname for lib in self.LIBRARIES)


class RoutineTaskChatter(logging.Filter):
    """Drops the INFO lines of a routine beat task's run that did nothing: beat's "Sending due task", the
    worker's "received" and "succeeded" when the task returned its idle value. Every 15 s the outbox sweep
    wrote three such lines into the demo's console, a third of it. What the task does is still logged by the
    task itself, a success with another return value still shows, and failures and retries are warnings or
    errors, which always pass.

    ``idle``: task name -> the repr of the value it returns when there was nothing to do; ``entries``: beat
    schedule entry names of those tasks."""

    def __init__(self, *, idle: dict[str, str], entries: tuple[str, ...]) -> None:
        super().__init__()
        self.idle = idle
        self.beat_lines = tuple(f"Sending due task {entry} (" for entry in entries)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.name == "celery.beat":
            message = record.getMessage()
            return not any(line in message for line in self.beat_lines)
        data = getattr(record, "data", None)  # celery.app.trace and celery.worker.strategy pass their context
        if not isinstance(data, dict) or data.get("name") not in self.idle:
            return True
        if record.name == "celery.worker.strategy":  # "received": whether it will do anything is not known yet
            return False
        return "return_value" in data and data["return_value"] != self.idle[data["name"]]

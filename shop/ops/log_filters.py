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

"""Locating ../shared/data: tests that need it skip with a reason on a user's clone,
but fail when CI=true (CI always has ../shared beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
TA_FENG_ZIP = SHARED_DATA / "ta_feng" / "ta_feng.csv.zip"


def require_shared(path: Path) -> Path:
    """Return ``path`` if present; otherwise skip (user's clone) or fail (CI=true)."""
    if path.exists():
        return path
    reason = f"{path} is absent: the real-data tests need ../shared/data beside the checkout"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason + " (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


def ta_feng_zip() -> Path:
    return require_shared(TA_FENG_ZIP)

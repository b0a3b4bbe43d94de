"""Hole 6 (part): periodic checks expire instead of piling up behind a long task."""

from __future__ import annotations

from django.conf import settings


def test_the_beat_check_expires_within_one_period():
    entry = settings.CELERY_BEAT_SCHEDULE["recs-retrain-if-due"]
    expires = entry.get("options", {}).get("expires")
    assert expires is not None, "a check queued behind a training run would pile up"
    assert 0 < expires <= entry["schedule"]

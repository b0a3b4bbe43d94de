"""Celery workers: ``celery -A worker worker -Q default,gpu`` (a GPU node: ``-Q gpu --pool solo``)."""

from .celery import app

__all__ = ["app"]

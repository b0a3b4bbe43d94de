"""The one way the console talks to the shop: its HTTP API, with the staff token of the session.

Reads are cached for a few seconds per (token, path, query) with ``st.cache_data``; the connection pool is
one ``httpx.Client`` per process (``st.cache_resource``). Errors become exceptions the pages turn into plain
sentences: the API is down, the token was revoked, the account is not staff, the endpoint is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
import streamlit as st

API_URL_ENV = "CONSOLE_API_URL"
DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 10.0
READ_TTL_S = 5
REVOKED_TOKEN_DETAILS = {"Invalid token.", "User inactive or deleted."}


def api_url() -> str:
    return os.environ.get(API_URL_ENV, DEFAULT_API_URL).rstrip("/")


class ApiError(Exception):
    """The API answered with an error; ``status`` is its HTTP status (0: no answer at all)."""

    def __init__(self, message: str, *, status: int = 0, path: str = "", body: Any = None):
        super().__init__(message)
        self.status = status
        self.path = path
        self.body = body if isinstance(body, dict) else {}


class ApiDown(ApiError):
    """No answer: the shop is not running at ``api_url()`` (or timed out)."""


class NotLoggedIn(ApiError):
    """401: the token is missing, revoked or unknown."""


class NotAllowed(ApiError):
    """403: staff only, or a permission this account lacks."""


class NotFound(ApiError):
    """404: no such object, or the shop has no such endpoint (an older version)."""


@st.cache_resource
def _http(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=TIMEOUT_S, headers={"Accept": "application/json"})


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason_phrase
    if isinstance(body, dict):
        if "detail" in body:
            return str(body["detail"])
        return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items())
    return str(body)


def request(
    method: str,
    path: str,
    *,
    token: str | None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
) -> Any:
    """One API call; returns the decoded JSON body (None for 204) or raises an :class:`ApiError`."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    base = api_url()
    try:
        resp = _http(base).request(method, path, params=params, json=json, headers=headers)
    except httpx.HTTPError as e:
        raise ApiDown(f"The shop's API at {base} does not answer ({type(e).__name__}).", path=path) from e
    if resp.status_code == 204:
        return None
    if resp.is_success:
        return resp.json()
    try:
        body = resp.json()
    except ValueError:
        body = None
    detail = _detail(resp)
    cls = {401: NotLoggedIn, 403: NotAllowed, 404: NotFound}.get(resp.status_code, ApiError)
    if resp.status_code == 403 and token and detail in REVOKED_TOKEN_DETAILS:
        # endpoints whose first authenticator is the session answer a revoked token with 403
        cls = NotLoggedIn
    raise cls(detail, status=resp.status_code, path=path, body=body)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _cached_get(base: str, path: str, token: str, params: tuple[tuple[str, Any], ...]) -> Any:
    return request("GET", path, token=token, params=dict(params))


def get(path: str, *, token: str, params: Mapping[str, Any] | None = None, fresh: bool = False) -> Any:
    """A read, cached for ``READ_TTL_S`` seconds (``fresh=True`` skips the cache: live pages, progress)."""
    if fresh:
        return request("GET", path, token=token, params=params)
    return _cached_get(api_url(), path, token, tuple(sorted((params or {}).items())))


def post(path: str, *, token: str | None, json: Any = None) -> Any:
    out = request("POST", path, token=token, json=json)
    _cached_get.clear()  # a write changes what the reads would show
    return out


def delete(path: str, *, token: str) -> Any:
    return request("DELETE", path, token=token)


# ------------------------------------------------------------------------------------------ endpoints

TOKEN = "/api/auth/token"
ME = "/api/console/me"
OVERVIEW = "/api/console/overview"
MODELS = "/api/console/models"
ROLLBACK = "/api/console/models/rollback"
ACCELERATOR = "/api/console/accelerator"
VISITORS = "/api/console/visitors"
RETRAIN = "/api/recs/retrain"
BENCHMARK = "/api/console/benchmark"
SERVING_STATS = "/api/recs/serving-stats"
RECOMMENDATIONS = "/api/recommendations"
EXPERIMENT_RESULTS = "/api/experiments/current/results"
EXPERIMENT_COMPOSITION = "/api/experiments/current/composition"
GUARDRAILS = "/api/console/guardrails"


def promote_path(version: str) -> str:
    return f"/api/console/models/{version}/promote"


def task_path(task_id: str) -> str:
    return f"/api/recs/tasks/{task_id}"


def visitor_events_path(visitor_id: str) -> str:
    return f"/api/console/visitors/{visitor_id}/events"

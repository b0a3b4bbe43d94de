"""Log in with shop credentials (a staff token kept in ``st.session_state``), log out, and the plain-words
messages every page shows when the API cannot give it what it needs."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard import client

TOKEN_KEY = "token"
USER_KEY = "username"
CAN_CHANGE_KEY = "can_change_models"


def token() -> str | None:
    return st.session_state.get(TOKEN_KEY)


def can_change_models() -> bool:
    return bool(st.session_state.get(CAN_CHANGE_KEY))


def _forget() -> None:
    for key in (TOKEN_KEY, USER_KEY, CAN_CHANGE_KEY):
        st.session_state.pop(key, None)


def login_form() -> None:
    """The only thing a visitor without a token sees."""
    st.title("Merchant console")
    st.caption(f"Sign in with your shop staff account ({client.api_url()}).")
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if not submitted:
        return
    if not username or not password:
        st.error("Enter a username and a password.")
        return
    try:
        body = client.post(client.TOKEN, token=None, json={"username": username, "password": password})
    except client.NotAllowed:
        st.error("This account is not staff: the merchant console is for shop staff only.")
        return
    except client.ApiDown as e:
        st.error(f"{e} Start it with `make demo` (or set CONSOLE_API_URL).")
        return
    except client.ApiError as e:
        if e.status == 429:
            st.error(f"Too many attempts: {e}")
        else:
            st.error("Wrong username or password.")
        return
    st.session_state[TOKEN_KEY] = body["token"]
    st.session_state[USER_KEY] = body["username"]
    st.session_state[CAN_CHANGE_KEY] = body["can_change_models"]
    st.rerun()


def logout() -> None:
    tok = token()
    if tok:
        # the shop may be down or the token already gone: forgetting it here is what matters
        with contextlib.suppress(client.ApiError):
            client.delete(client.TOKEN, token=tok)
    _forget()


def api_failed(error: client.ApiError, *, what: str, fill: str | None = None) -> None:
    """Say plainly why ``what`` cannot be shown and, when something fills it, which command."""
    if isinstance(error, client.NotLoggedIn):
        _forget()
        st.warning("Your session has ended (the token was revoked). Log in again.")
        st.rerun()
    elif isinstance(error, client.ApiDown):
        st.error(f"{what}: {error} Start the shop with `make demo`.")
    elif isinstance(error, client.NotAllowed):
        st.error(f"{what}: refused by the shop ({error}).")
    elif isinstance(error, client.NotFound):
        st.warning(f"{what}: this shop does not provide it ({error.path})." + (f" {fill}" if fill else ""))
    else:
        st.error(f"{what}: the shop answered {error.status}: {error}")


def read(
    path: str, *, what: str, params: Mapping[str, Any] | None = None, fill: str | None = None, fresh: bool = False
) -> Any | None:
    """The API's answer for ``path``, or None after saying plainly on the page why it is missing."""
    try:
        return client.get(path, token=token(), params=params, fresh=fresh)
    except client.ApiError as e:
        api_failed(e, what=what, fill=fill)
        return None


def act(path: str, *, what: str, conflict: str) -> tuple[bool, dict]:
    """POST an action. (True, the answer) when done; (False, the 409 body) when the shop says it conflicts
    (already running, nothing to roll back to), said on the page as ``conflict: <detail>``; (False, {}) on
    any other refusal, said as :func:`api_failed` says it."""
    try:
        return True, client.post(path, token=token()) or {}
    except client.ApiError as e:
        if e.status != 409:
            api_failed(e, what=what)
            return False, {}
        st.info(f"{conflict}: {e}")
        return False, e.body

"""Hole 4: safe defaults for every entry point; DRF denies by default; no Basic auth; login throttled.

Also S1 (``check --deploy`` on the production settings) and S2 (headers and cookies)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache.backends.base import CacheKeyWarning
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from tests.factories import UserFactory

REPO = Path(__file__).resolve().parents[2]
# DJANGO_ALLOW_ASYNC_UNSAFE: the browser tests set it for their own process; a deployment never has it
_SCRUB = ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")


def _settings_in_a_fresh_process(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {code}"],
        cwd=REPO,
        env={**base, "ENV_FILE": os.devnull, "DJANGO_SETTINGS_MODULE": "shop.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_entry_point_starts_without_a_secret_key():
    out = _settings_in_a_fresh_process("print(settings.SECRET_KEY)")
    assert out.returncode != 0
    assert "SECRET_KEY is not set" in out.stderr


def test_debug_is_off_unless_asked_for():
    out = _settings_in_a_fresh_process("print(settings.DEBUG)", SECRET_KEY=secrets.token_urlsafe(50))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_local_memory_cache_holds_a_catalogs_lists_and_its_size_is_checked():
    key = secrets.token_urlsafe(50)
    code = "from django.core.cache import cache; print(cache._max_entries)"
    out = _settings_in_a_fresh_process(code, SECRET_KEY=key, CACHE_URL="locmemcache://")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "20000"  # not Django's 300
    out = _settings_in_a_fresh_process(code, SECRET_KEY=key, CACHE_URL="locmemcache://", CACHE_MAX_ENTRIES="0")
    assert out.returncode != 0
    assert "CACHE_MAX_ENTRIES must be at least 1, got 0" in out.stderr


def test_a_negative_number_of_scoring_threads_is_refused_at_start():
    out = _settings_in_a_fresh_process(
        "print('started')", SECRET_KEY=secrets.token_urlsafe(50), RECS_SERVING_THREADS="-1"
    )
    assert out.returncode != 0 and "started" not in out.stdout
    assert "RECS_SERVING_THREADS must be 0 or more, got -1" in out.stderr


@pytest.mark.parametrize("value", ["-1", "20"])
def test_a_build_niceness_outside_0_19_is_refused_at_start(value):
    out = _settings_in_a_fresh_process(
        "print('started')", SECRET_KEY=secrets.token_urlsafe(50), RECS_SERVING_BUILD_NICE=value
    )
    assert out.returncode != 0 and "started" not in out.stdout
    assert f"RECS_SERVING_BUILD_NICE must be 0-19, got {value}" in out.stderr


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_a_revenue_cap_percentile_outside_0_1_is_refused_at_start(value):
    out = _settings_in_a_fresh_process(
        "print('started')", SECRET_KEY=secrets.token_urlsafe(50), EXPERIMENTS_REVENUE_CAP_PERCENTILE=value
    )
    assert out.returncode != 0 and "started" not in out.stdout
    assert "EXPERIMENTS_REVENUE_CAP_PERCENTILE must be between 0 and 1" in out.stderr and value in out.stderr


def test_check_deploy_passes_on_the_production_settings():
    """S1: ``manage.py check --deploy --fail-level WARNING``."""
    base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={
            **base,
            "ENV_FILE": os.devnull,
            "DJANGO_SETTINGS_MODULE": "shop.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "shop.example.com",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def _api_views():
    def walk(patterns):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns)
            elif isinstance(p, URLPattern):
                view_class = getattr(p.callback, "cls", None)
                if view_class is not None and issubclass(view_class, APIView):
                    yield view_class

    return sorted(set(walk(get_resolver().url_patterns)), key=lambda c: c.__name__)


def test_drf_denies_by_default_and_no_view_takes_basic_auth():
    assert settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] == ["rest_framework.permissions.IsAdminUser"]
    assert not any("Basic" in c for c in settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"])
    views = _api_views()
    assert len(views) >= 8
    for view in views:
        assert not any(isinstance(a, BasicAuthentication) for a in view().get_authenticators()), view


PUBLIC_API = {
    "ProductListApi",
    "ProductDetailApi",
    "CategoryListApi",
    "CategoryDetailApi",
    "EventBatchApi",
    "CartApi",
    "CartItemListApi",
    "CartItemDetailApi",
    "CheckoutApi",
    "AuthTokenApi",
    "RecommendationsApi",  # the caller's own visitor; another visitor's only for staff
    "SpectacularAPIView",
    "SpectacularSwaggerView",
}


def _open_to_anonymous(view_class) -> bool:
    for method in ("GET", "POST", "PATCH", "DELETE"):
        view = view_class()
        view.request = RequestFactory().generic(method, "/")
        if any(isinstance(p, AllowAny) for p in view.get_permissions()):
            return True
    return False


def test_only_the_storefront_api_is_open_to_anonymous_clients():
    open_views = {v.__name__ for v in _api_views() if _open_to_anonymous(v)}
    assert open_views <= PUBLIC_API, open_views - PUBLIC_API
    assert {"EventBatchApi", "CartApi", "ProductListApi"} <= open_views


@pytest.mark.django_db
def test_basic_auth_does_not_log_a_staff_member_in():
    UserFactory(username="boss", password="hunter2-hunter2", is_staff=True, is_superuser=True)
    creds = base64.b64encode(b"boss:hunter2-hunter2").decode()
    for url in ["/api/recs/tasks/00000000-0000-0000-0000-000000000000"]:
        resp = Client().get(url, headers={"authorization": f"Basic {creds}"})
        assert resp.status_code in {401, 403}, (url, resp.status_code)


@pytest.mark.django_db
def test_login_is_throttled_per_address_and_per_username(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "5/min"},
    }
    UserFactory(username="ada", password="right-password-1")
    client = Client()
    codes = [
        client.post("/accounts/login/", {"username": "ada", "password": f"guess{i}"}).status_code for i in range(7)
    ]
    assert codes == [200] * 5 + [429] * 2
    refused = client.post("/accounts/login/", {"username": "ada", "password": "right-password-1"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many log-in attempts" in refused.content.decode()
    assert not refused.wsgi_request.user.is_authenticated
    # another address guessing the same account shares the account's bucket
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post("/accounts/login/", {"username": "ADA", "password": "x"}).status_code == 429


@pytest.mark.django_db
def test_the_login_throttle_keys_an_account_by_a_digest_not_the_typed_name(settings):
    """A username is free text: its bucket's cache key stays short and plain whatever is posted (no key of
    the posted field's length in the shared cache, none memcached would refuse), and still one per account.

    Django warns of a key memcached would refuse; raised here as the error memcached gives, a bucket keyed
    by the typed name failed open (the throttles serve when the cache fails): 4 attempts of 4 answered."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "3/min"},
    }
    odd = "\u00e9 \x7f\U0001f3bb" * 400  # 1,600 characters with spaces, a control character and astral ones
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        codes = [
            Client(REMOTE_ADDR=f"10.0.1.{i}").post("/accounts/login/", {"username": odd, "password": "x"}).status_code
            for i in range(4)
        ]
    assert codes == [200, 200, 200, 429]  # four addresses, one account's bucket

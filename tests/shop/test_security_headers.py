"""S2 on live responses: the headers and cookie flags of real responses under the production settings
(``shop.settings.production``, as deployed), not only what ``check --deploy`` reads from the settings.

A separate process loads the production settings against this test's PostgreSQL database, opens the
log-in page over HTTPS (as the TLS proxy forwards it), logs in, and reports every header and cookie.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s2-" + secrets.token_urlsafe(12)

_SCRIPT = r"""
import json, os, sys
import django
django.setup()
from django.test import Client

def dump(r):
    cookies = {k: {a: m[a] for a in ("secure", "httponly", "samesite", "max-age", "path")} for k, m in r.cookies.items()}
    return {"status": r.status_code, "headers": dict(r.headers), "cookies": cookies, "location": r.get("Location")}

c = Client(HTTP_HOST="shop.example.com", HTTP_X_FORWARDED_PROTO="https")
out = {"plain": dump(Client(HTTP_HOST="shop.example.com").get("/accounts/login/"))}
out["page"] = dump(c.get("/accounts/login/"))
out["cart"] = dump(c.get("/cart/"))
before = c.cookies["sessionid"].value if "sessionid" in c.cookies else None
c.post("/cart/add/", {"product_id": "0", "quantity": "1", "csrfmiddlewaretoken": c.cookies["csrftoken"].value})
out["add"] = dump(c.post("/cart/add/", {"product_id": os.environ["S2_PRODUCT"], "quantity": "1", "nonce": "6f1d2c3b-0000-4000-8000-00000000005a",
                                        "csrfmiddlewaretoken": c.cookies["csrftoken"].value}))
out["session_before_login"] = c.cookies["sessionid"].value if "sessionid" in c.cookies else before
out["login"] = dump(c.post("/accounts/login/", {"username": "s2-shopper", "password": os.environ["S2_PASSWORD"],
                                                  "csrfmiddlewaretoken": c.cookies["csrftoken"].value}))
out["session_after_login"] = c.cookies["sessionid"].value if "sessionid" in c.cookies else None
out["api"] = dump(c.get("/api/products"))
print("S2-JSON" + json.dumps(out))
"""


@pytest.fixture
def production_responses(transactional_db):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from tests.factories import ProductFactory

    product = ProductFactory.create_batch(2, stock=5)[0]
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # hashed as production hashes (the tests' settings use a fast hasher production does not accept)
    get_user_model().objects.create(
        username="s2-shopper", password=PBKDF2PasswordHasher().encode(PASSWORD, secrets.token_hex(8))
    )
    s = connection.settings_dict
    auth = f"{s['USER']}:{s.get('PASSWORD') or ''}@" if s.get("PASSWORD") else f"{s['USER']}@"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DEBUG", "SECURE_", "SESSION_", "CSRF_"))
        },
        "ENV_FILE": os.devnull,
        "DJANGO_SETTINGS_MODULE": "shop.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "shop.example.com",
        "DATABASE_URL": f"postgres://{auth}{s['HOST']}:{s['PORT']}/{s['NAME']}",
        "S2_PASSWORD": PASSWORD,
        "S2_PRODUCT": str(product.pk),
    }
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("S2-JSON")), None)
    assert line is not None, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(line[len("S2-JSON") :])


def test_production_responses_carry_the_security_headers(production_responses):
    r = production_responses
    assert r["plain"]["status"] == 301 and r["plain"]["location"].startswith("https://shop.example.com/")
    for name in ("page", "cart", "login", "api"):
        h = {k.lower(): v for k, v in r[name]["headers"].items()}
        assert h["strict-transport-security"].startswith("max-age=31536000"), (name, h)
        assert "includeSubDomains" in h["strict-transport-security"]
        assert h["x-content-type-options"] == "nosniff", name
        assert h["referrer-policy"] == "same-origin", name
        assert h["x-frame-options"] == "DENY", name
        assert h.get("cross-origin-opener-policy") == "same-origin", name


def test_production_cookies_are_secure_httponly_and_samesite(production_responses):
    r = production_responses
    cookies = {**r["page"]["cookies"], **r["cart"]["cookies"], **r["add"]["cookies"], **r["login"]["cookies"]}
    assert {"csrftoken", "vid", "sessionid", "cart_hint"} <= set(cookies), (cookies, r["add"])
    for name, flags in cookies.items():
        if flags["max-age"] == 0:
            continue  # a deletion (e.g. the messages cookie once read) carries nothing
        assert flags["secure"] is True, f"{name} is not Secure"
        assert flags["samesite"] in ("Lax", "Strict"), f"{name}: SameSite={flags['samesite']!r}"
    assert cookies["sessionid"]["httponly"] is True and cookies["vid"]["httponly"] is True
    assert r["add"]["status"] == 302 and r["add"]["cookies"]["cart_hint"]["httponly"] is True
    # the CSRF cookie is read by no script here either
    assert cookies["csrftoken"]["httponly"] is True


def test_the_session_key_rotates_at_login(production_responses):
    r = production_responses
    assert r["login"]["status"] == 302, r["login"]
    assert r["session_after_login"] and r["session_after_login"] != r["session_before_login"]

"""OpenAPI schema and the docs page (served without any external CDN)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command

pytestmark = pytest.mark.django_db

API_PATHS = {
    "/api/products",
    "/api/products/{id}",
    "/api/categories",
    "/api/categories/{slug}",
    "/api/events",
    "/api/cart",
    "/api/cart/items",
    "/api/cart/items/{product_id}",
    "/api/checkout",
}


def test_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schema = yaml.safe_load(out.read_text())
    assert set(schema["paths"]) >= API_PATHS


def test_schema_endpoint_documents_the_event_contract(client):
    resp = client.get("/api/schema/", {"format": "json"})

    assert resp.status_code == 200
    schema = resp.json()
    events = schema["paths"]["/api/events"]["post"]
    assert set(events["requestBody"]["content"]) == {"application/json"}  # text/plain needs no CORS preflight
    assert {"202", "400", "403", "413", "429"} <= set(events["responses"])
    item = schema["components"]["schemas"]["EventItemRequest"]
    assert set(item["required"]) == {"type", "product_id", "idempotency_key"}
    ref = item["properties"]["type"].get("$ref") or item["properties"]["type"]["allOf"][0]["$ref"]
    event_type = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(event_type["enum"]) == {"impression", "click"}  # the rest are logged by the server


def test_docs_page_renders_with_local_assets_only(client):
    resp = client.get("/api/docs/")

    assert resp.status_code == 200
    html = resp.content.decode()
    assert "swagger" in html.lower()
    # every src/href is same-origin: no CDN, nothing fetched from another host
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert refs
    assert not [r for r in refs if re.match(r"^(https?:)?//", r)]
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
    for ref in refs:
        if ref.startswith("/static/"):
            assert finders.find(ref.removeprefix("/static/")), ref

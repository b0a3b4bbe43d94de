"""Public facts about products, read from the public catalogue API and shared by all shoppers.

A person recognises what a product is from its card (picture, name, brand, price); the simulator
reads the same public facts from ``GET /api/products/<id>`` once per product and caches them.
"""

from __future__ import annotations

import threading

import httpx

from .shopper import ProductFacts


class Catalogue:
    def __init__(self, *, base_url: str, timeout: float = 30.0):
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers={"Accept": "application/json"}
        )
        self._facts: dict[int, ProductFacts | None] = {}
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def departments(self) -> list[str]:
        """Slugs of the top-level categories."""
        response = self.client.get("/api/categories")
        response.raise_for_status()
        return sorted(c["slug"] for c in response.json() if c.get("parent") is None)

    def facts(self, product_id: int) -> ProductFacts | None:
        with self._lock:
            if product_id in self._facts:
                return self._facts[product_id]
        try:
            response = self.client.get(f"/api/products/{product_id}")
            self.requests += 1
        except httpx.HTTPError:
            return None
        facts = None
        if response.status_code == 200:
            data = response.json()
            crumbs = data.get("breadcrumbs") or [data["category"]]
            facts = ProductFacts(
                product_id=product_id,
                department=crumbs[0]["slug"],
                leaf=data["category"]["slug"],
                brand=(data.get("brand") or {}).get("slug", ""),
                price=float(data["price"]),
                in_stock=bool(data.get("in_stock", True)),
            )
        with self._lock:
            self._facts[product_id] = facts
        return facts

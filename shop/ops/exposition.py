"""``/metrics`` text: this process's (or, under gunicorn, every process's) samples plus the model version
being served, read from the database at scrape time."""

from __future__ import annotations

import ipaddress
import logging
import os

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)


class ModelVersionCollector:
    """``shop_model_version_info{role="active"|"batch", version="v0007"} 1``: the champion that live
    requests rank with, and the version that scored the batch set the rails read."""

    def collect(self):
        from django.db import DatabaseError

        from shop.recs.models import ModelVersion, ServingPointer

        info = GaugeMetricFamily(
            "shop_model_version_info", "Model version served, by role (active: live ranking; batch: rails).",
            labels=["role", "version"],
        )  # fmt: skip
        up = GaugeMetricFamily("shop_model_version_scrape_ok", "1 when the served model versions could be read.")
        try:
            active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
            batch = (
                ServingPointer.objects.filter(id=1, score_set__model_version__isnull=False)
                .values_list("score_set__model_version__version", flat=True)
                .first()
            )
        except DatabaseError as e:  # the scrape still returns every other metric
            log.warning("metrics: cannot read the served model versions: %s", e)
            up.add_metric([], 0)
            yield up
            return
        if active:
            info.add_metric(["active", active], 1)
        if batch:
            info.add_metric(["batch", batch], 1)
        up.add_metric([], 1)
        yield info
        yield up


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        base = generate_latest(registry)
    else:
        base = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(ModelVersionCollector())
    return base + generate_latest(extra)


def client_may_scrape(request) -> bool:
    """Who may read /metrics: a staff user, a bearer of METRICS_TOKEN, or an address in METRICS_ALLOWED_IPS.

    The address is the TCP peer (REMOTE_ADDR), never X-Forwarded-For, which any client can write.
    """
    import hmac

    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
            return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    try:
        addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(addr in net for net in _allowed_networks())


def _allowed_networks() -> list:
    nets = []
    for item in settings.METRICS_ALLOWED_IPS:
        item = item.strip()
        if item:
            nets.append(ipaddress.ip_network(item, strict=False))
    return nets

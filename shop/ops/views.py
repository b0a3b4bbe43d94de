"""Probes and metrics: ``/healthz`` (the process answers), ``/readyz`` (database, broker and model
reachable; 503 naming the failing part), ``/metrics`` (Prometheus; staff, token or allowed address only)."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from . import checks, exposition


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    ok, parts = checks.readiness()
    failing = [name for name, part in parts.items() if not part["ok"]]
    body = {"status": "ok" if ok else "unavailable", "failing": failing, "checks": parts}
    return JsonResponse(body, status=200 if ok else 503)


@never_cache
@require_safe
def metrics(request):
    if not exposition.client_may_scrape(request):
        return JsonResponse(
            {"detail": "metrics are not public: use the metrics token or an allowed address"}, status=403
        )
    return HttpResponse(exposition.render(), content_type=CONTENT_TYPE_LATEST)

"""Request checks shared by every API endpoint."""

from __future__ import annotations

from django.http import JsonResponse

# The API, and the rails a page fetches after load (``/rails/<placement>``): no parameter of theirs takes a list.
SINGLE_VALUED_PREFIXES = ("/api/", "/rails/")


class SingleValuedQueryMiddleware:
    """No API parameter takes a list, so a repeated query parameter (``?page_size=1&page_size=500``)
    is a 400 naming it, rather than the last value silently winning (and a filter or limit meant by
    the first one being skipped)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(SINGLE_VALUED_PREFIXES):
            repeated = sorted(k for k, values in request.GET.lists() if len(values) > 1)
            if repeated:
                return JsonResponse({name: ["Give this parameter once."] for name in repeated}, status=400)
        return self.get_response(request)

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from shop.catalog.web import whole_number


class StandardPagination(PageNumberPagination):
    """``?page=N&page_size=M`` (1 to 100 per page).

    A ``page_size`` that is not a number in range is a 400 naming it (DRF would quietly fall back
    to the default, so a client asking for 10,000 rows would never learn it got 24); a page past
    the last is DRF's 404.
    """

    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"Must be a whole number from 1 to {self.max_page_size}."]}
            )
        return size

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        number = whole_number(raw)
        if number is None:
            raise ValidationError({self.page_query_param: ["Must be a whole number of 1 or more."]})
        return number

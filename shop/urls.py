from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("shop.ops.urls")),  # healthz, readyz, metrics
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("shop.api_urls")),
    path("accounts/", include("shop.accounts.urls")),
    path("", include("shop.orders.urls")),
    path("", include("shop.catalog.urls")),
]

handler404 = "shop.api.exceptions.page_not_found"  # JSON under /api/
handler500 = "shop.api.exceptions.server_error"  # 503 + Retry-After for outages, JSON under /api/

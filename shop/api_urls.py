"""The REST API under ``/api/`` (schema at ``/api/schema/``, docs at ``/api/docs/``)."""

from django.urls import include, path

from shop.api import console
from shop.catalog.api import CategoryDetailApi, CategoryListApi, ProductDetailApi, ProductListApi
from shop.events.api import EventBatchApi
from shop.orders.api import CartApi, CartItemDetailApi, CartItemListApi, CheckoutApi
from shop.recs.api import RecommendationsApi

app_name = "api"

urlpatterns = [
    path("products", ProductListApi.as_view(), name="product-list"),
    path("products/<int:pk>", ProductDetailApi.as_view(), name="product-detail"),
    path("categories", CategoryListApi.as_view(), name="category-list"),
    path("categories/<slug:slug>", CategoryDetailApi.as_view(), name="category-detail"),
    path("events", EventBatchApi.as_view(), name="events"),
    path("cart", CartApi.as_view(), name="cart"),
    path("cart/items", CartItemListApi.as_view(), name="cart-items"),
    path("cart/items/<int:product_id>", CartItemDetailApi.as_view(), name="cart-item"),
    path("checkout", CheckoutApi.as_view(), name="checkout"),
    path("recommendations", RecommendationsApi.as_view(), name="recommendations"),
    path("recs/", include("shop.recs.urls")),
    path("experiments/", include("shop.experiments.urls")),
    path("auth/", include((console.auth_urlpatterns, "auth"))),
    path("console/", include((console.console_urlpatterns, "console"))),
]

from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("search/suggest/", views.search_suggest, name="search_suggest"),
    path("c/<slug:slug>/", views.category_detail, name="category"),
    path("products/<int:pk>/", views.product_by_id, name="product_by_id"),
    path("products/<int:pk>/image.svg", views.product_image, name="product_image"),
    path("products/<int:pk>/<slug:slug>/", views.product_detail, name="product"),
    path("rails/<str:placement>", views.rail_after_load, name="rail"),
]

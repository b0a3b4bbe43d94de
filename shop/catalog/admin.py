"""Merchant admin for the catalog: categories, brands and products."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.utils import timezone

from .models import Brand, Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "parent", "depth"]
    list_filter = ["depth", ("parent", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["parent"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["parent"]
    ordering = ["depth", "name"]


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


class StockFilter(admin.SimpleListFilter):
    title = "stock"
    parameter_name = "stock"

    def lookups(self, request, model_admin):
        return [("out", "Sold out"), ("low", "Low (1-5)"), ("in", "In stock")]

    def queryset(self, request, queryset: QuerySet[Product]) -> QuerySet[Product]:
        if self.value() == "out":
            return queryset.filter(stock=0)
        if self.value() == "low":
            return queryset.filter(stock__gte=1, stock__lte=5)
        if self.value() == "in":
            return queryset.filter(stock__gt=0)
        return queryset


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "sku", "category", "brand", "price", "stock", "is_active", "created_at"]
    list_display_links = ["name"]
    list_editable = ["price", "stock"]
    list_filter = ["is_active", StockFilter, ("brand", admin.RelatedOnlyFieldListFilter), "created_at"]
    list_select_related = ["category", "brand"]
    search_fields = ["name", "=sku", "brand__name"]
    autocomplete_fields = ["category", "brand"]
    prepopulated_fields = {"slug": ["name"]}
    date_hierarchy = "created_at"
    readonly_fields = ["external_id"]
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["name", "slug", "sku", "description"]}),
        ("Placement", {"fields": ["category", "brand"]}),
        ("Sales", {"fields": ["price", "stock", "is_active"]}),
        ("Other", {"fields": ["image_seed", "created_at", "external_id"], "classes": ["collapse"]}),
    ]
    actions = ["make_active", "make_inactive"]

    def get_changeform_initial_data(self, request):
        return {"created_at": timezone.now(), **super().get_changeform_initial_data(request)}

    @admin.action(description="Show the selected products in the shop")
    def make_active(self, request, queryset: QuerySet[Product]) -> None:
        updated = queryset.update(is_active=True)
        self.message_user(request, f"{updated} products are now shown.")

    @admin.action(description="Hide the selected products from the shop")
    def make_inactive(self, request, queryset: QuerySet[Product]) -> None:
        updated = queryset.update(is_active=False)
        self.message_user(request, f"{updated} products are now hidden.")

"""Merchant admin for orders (and carts, read-only, to see what shoppers are holding)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet

from shop.api.admin_tools import EstimatedCountPaginator

from .models import Cart, CartItem, Order, OrderLine


class OrderLineInline(admin.TabularInline):
    """Lines are what was sold at what price: shown, never rewritten (the total depends on them)."""

    model = OrderLine
    fields = ["product", "quantity", "unit_price", "line_total"]
    readonly_fields = ["product", "quantity", "unit_price", "line_total"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request) -> QuerySet[OrderLine]:
        return super().get_queryset(request).select_related("product")

    @admin.display(description="line total")
    def line_total(self, obj: OrderLine):
        return obj.line_total


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "placed_at", "full_name", "email", "status", "total"]
    list_filter = ["status", "placed_at"]
    search_fields = ["=number", "email", "full_name"]
    search_help_text = "Order number (exact), email or name."
    date_hierarchy = "placed_at"
    inlines = [OrderLineInline]
    raw_id_fields = ["visitor", "user"]
    readonly_fields = ["number", "total", "placed_at", "external_id"]
    fieldsets = [
        (None, {"fields": ["number", "status", "placed_at", "total"]}),
        ("Customer", {"fields": ["full_name", "email", "address", "user", "visitor"]}),
        ("Import", {"fields": ["external_id"], "classes": ["collapse"]}),
    ]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request) -> bool:
        # orders come from checkout or the importer, with their lines, stock and purchase events
        return False


class CartItemInline(admin.TabularInline):
    model = CartItem
    fields = ["product", "quantity", "added_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request) -> QuerySet[CartItem]:
        return super().get_queryset(request).select_related("product")


@admin.register(Cart)
class CartAdmin(admin.ModelAdmin):
    list_display = ["visitor", "updated_at"]
    date_hierarchy = "updated_at"
    search_fields = ["=visitor__id"]
    readonly_fields = ["visitor", "updated_at"]
    inlines = [CartItemInline]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

"""Catalog API representations (read-only) and the product list's query parameters."""

from __future__ import annotations

from decimal import Decimal

from django.urls import reverse
from rest_framework import serializers

from .selectors import SEARCH_SORTS


class CategoryRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.SlugField()


class BrandRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.SlugField()


class ProductSerializer(serializers.Serializer):
    """A product as a list shows it (a card)."""

    id = serializers.IntegerField()
    sku = serializers.CharField()
    name = serializers.CharField()
    slug = serializers.SlugField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=True)
    stock = serializers.IntegerField()
    in_stock = serializers.BooleanField()
    category = CategoryRefSerializer()
    brand = BrandRefSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    url = serializers.CharField(source="get_absolute_url", help_text="The storefront page of the product.")
    image_url = serializers.SerializerMethodField(help_text="The product's generated SVG image.")

    def get_image_url(self, obj) -> str:
        return reverse("catalog:product_image", kwargs={"pk": obj.pk})


class ProductDetailSerializer(ProductSerializer):
    description = serializers.CharField()
    breadcrumbs = CategoryRefSerializer(many=True, help_text="Category path, root first.")


class CategorySerializer(serializers.Serializer):
    """One node of the category tree."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.SlugField()
    parent = serializers.IntegerField(source="parent_id", allow_null=True, help_text="Parent id; null for a root.")
    depth = serializers.IntegerField(help_text="0 for a root category.")
    url = serializers.CharField(help_text="The storefront page of the category.")


class CategoryDetailSerializer(CategorySerializer):
    description = serializers.CharField(allow_blank=True)
    ancestors = CategoryRefSerializer(many=True, help_text="From the root down to the parent.")
    children = CategorySerializer(many=True)


class CategoryListParamsSerializer(serializers.Serializer):
    parent = serializers.SlugField(required=False, help_text="Only the children of this category (its slug).")


class ProductListParamsSerializer(serializers.Serializer):
    """Query parameters of ``GET /api/products``."""

    category = serializers.SlugField(required=False, help_text="Category slug; includes every category below it.")
    brand = serializers.SlugField(required=False, help_text="Brand slug.")
    min_price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0"), required=False)
    max_price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0"), required=False)
    in_stock = serializers.BooleanField(
        required=False, allow_null=True, help_text="true: only products in stock; false: only sold out."
    )
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Search words (name, brand, category, text)."
    )
    ordering = serializers.ChoiceField(
        choices=list(SEARCH_SORTS),
        required=False,
        help_text="popular (default), newest, price_asc, price_desc, name; relevance (default) when searching.",
    )

    def validate(self, attrs: dict) -> dict:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": ["Must be at least min_price."]})
        return attrs

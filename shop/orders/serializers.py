"""Cart and checkout API: request bodies and representations."""

from __future__ import annotations

from rest_framework import serializers

from shop.api.fields import StrictCharField
from shop.catalog.serializers import ProductSerializer

from .services import MAX_LINE_QUANTITY


class CartItemAddSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_LINE_QUANTITY, default=1)
    nonce = StrictCharField(
        max_length=90,
        required=False,
        allow_blank=True,
        help_text="Makes a retry safe: a nonce already used changes nothing (event key add:{nonce}).",
    )
    placement = StrictCharField(max_length=64, allow_blank=True, default="", help_text="Where it was found.")
    position = serializers.IntegerField(min_value=0, max_value=32767, allow_null=True, default=None)
    page_view_id = serializers.UUIDField(allow_null=True, default=None)


class CartItemUpdateSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=0, max_value=MAX_LINE_QUANTITY, help_text="0 removes the line.")
    nonce = StrictCharField(max_length=90, required=False, allow_blank=True)


class CartItemRemoveParamsSerializer(serializers.Serializer):
    nonce = StrictCharField(max_length=90, required=False, allow_blank=True, help_text="Event key rm:{nonce}.")


class CartLineSerializer(serializers.Serializer):
    product = ProductSerializer()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=12, decimal_places=2)
    problem = StrictCharField(help_text='Why the line cannot be bought as it is; "" when it can.')


class CartSerializer(serializers.Serializer):
    lines = CartLineSerializer(many=True)
    count = serializers.IntegerField(help_text="Number of items (sum of quantities).")
    subtotal = serializers.DecimalField(max_digits=12, decimal_places=2)


class CheckoutSerializer(serializers.Serializer):
    full_name = StrictCharField(max_length=120)
    email = serializers.EmailField()
    address = StrictCharField(max_length=1000)


class OrderLineSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    name = StrictCharField(source="product.name")
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=12, decimal_places=2)


class OrderSerializer(serializers.Serializer):
    number = StrictCharField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    placed_at = serializers.DateTimeField()
    url = StrictCharField(source="get_absolute_url", help_text="The order confirmation page.")
    lines = OrderLineSerializer(many=True)

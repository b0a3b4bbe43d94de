from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.urls import reverse


class Cart(models.Model):
    visitor = models.OneToOneField("events.Visitor", on_delete=models.CASCADE, related_name="cart")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"cart of {self.visitor_id}"


class CartItem(models.Model):
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cart", "product"], name="cartitem_unique_product")]
        ordering = ["added_at", "id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"
    SHIPPED = "shipped", "Shipped"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    number = models.CharField(max_length=32, unique=True)
    visitor = models.ForeignKey("events.Visitor", on_delete=models.PROTECT, related_name="orders")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    email = models.EmailField(blank=True)
    full_name = models.CharField(max_length=120, blank=True)
    address = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=OrderStatus.choices, default=OrderStatus.PLACED)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    placed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        return reverse("orders:confirmation", kwargs={"number": self.number})


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity

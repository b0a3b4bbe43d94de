from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse


class Category(models.Model):
    """A node of the category tree (``parent`` is null at the roots)."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    depth = models.PositiveSmallIntegerField(default=0, help_text="0 for a root category.")
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["name"]
        indexes = [models.Index(fields=["parent", "name"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("catalog:category", kwargs={"slug": self.slug})


class Brand(models.Model):
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=140, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220)
    description = models.TextField(blank=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    stock = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    # Drives the locally generated product image (hue, shape); see catalog/images.py.
    image_seed = models.PositiveIntegerField(default=0)
    external_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(db_index=True)
    # Time-decayed interest, kept by catalog.popularity (refreshed by beat, never per request):
    # log2 of sum(weight * 2 ** ((occurred_at - EPOCH) / half_life)) over the product's events. Ordering
    # by it is ordering by the decayed score now; null means no event yet.
    popularity = models.FloatField(null=True, blank=True, editable=False, help_text="7-day half-life, log2")
    trending = models.FloatField(null=True, blank=True, editable=False, help_text="1-day half-life, log2")

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["category", "is_active"]),
            models.Index(fields=["is_active", "-created_at"]),
            models.Index(fields=["price"]),
            models.Index(
                models.F("popularity").desc(nulls_last=True),
                models.F("created_at").desc(),
                name="product_popularity_idx",
                condition=models.Q(is_active=True),
            ),
            models.Index(
                models.F("trending").desc(nulls_last=True),
                name="product_trending_idx",
                condition=models.Q(is_active=True),
            ),
            # a category's lists and rails in their order, read from the index alone: without them a
            # category page's "popular" list visited every product of the category in the heap and
            # sorted it (372 rows, 3.1 -> 0.17 ms with 50,000 products)
            models.Index(
                "category",
                models.F("popularity").desc(nulls_last=True),
                models.F("created_at").desc(),
                models.F("id").desc(),
                name="product_category_popular_idx",
                condition=models.Q(is_active=True),
            ),
            models.Index(
                "category",
                models.F("created_at").desc(),
                models.F("id").desc(),
                name="product_category_new_idx",
                condition=models.Q(is_active=True),
            ),
            # the sold-out products every process reads every few seconds (catalog.stock): a few rows of an
            # index instead of a pass over the catalog
            models.Index(fields=["id"], name="product_sold_out_idx", condition=models.Q(is_active=True, stock=0)),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("catalog:product", kwargs={"pk": self.pk, "slug": self.slug})

    @property
    def in_stock(self) -> bool:
        return self.stock > 0


class PopularityState(models.Model):
    """Where the popularity refresh stopped in the interaction log (one row): the next refresh reads
    only events after ``last_event_id``, so its cost follows new events, never the log's length."""

    last_event_id = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    events_applied = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"popularity up to event {self.last_event_id}"

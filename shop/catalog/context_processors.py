from django.core.cache import cache

from .models import Category


def storefront(request):
    """Top-level categories for the navigation bar (cached: every page renders it)."""
    nav = cache.get("nav_categories")
    if nav is None:
        nav = list(Category.objects.filter(parent__isnull=True).order_by("name").values("name", "slug"))
        cache.set("nav_categories", nav, 300)
    return {"nav_categories": nav}

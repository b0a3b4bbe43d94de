"""Catalog writes: seeding the generated demo catalog.

(The retail-log importer's services live in ``importer.py``.)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from .models import Brand, Category, Product
from .seed import SEED_EXTERNAL_PREFIX, CatalogGenerator, SeedCategory


class CatalogSeedError(Exception):
    """The request cannot be met without changing what is already there (see ``catalog_seed``)."""


@dataclass(frozen=True, slots=True)
class SeedResult:
    seed: int
    products: int  # seeded products in the catalog now
    products_created: int
    categories_created: int
    brands_created: int
    seconds: float

    @property
    def already_seeded(self) -> bool:
        return self.products_created == 0 and self.categories_created == 0 and self.brands_created == 0


def catalog_tables_vacuum() -> None:
    """After a bulk load on PostgreSQL: ``VACUUM (ANALYZE)`` the catalog tables, so the planner knows the
    new rows and their indexes at once rather than after autovacuum's next pass. Until then a search on a
    freshly seeded 5,000-product catalog scanned and parsed every product (155 ms a term instead of 2).
    Not inside a transaction (VACUUM cannot run there); nothing on other databases."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in (Product, Category, Brand))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {tables}")


def _seeded_product_prefix(seed: int) -> str:
    return f"{SEED_EXTERNAL_PREFIX}:{seed}:"


def _categories_ensure(categories: list[SeedCategory]) -> tuple[dict[str, int], int]:
    """Create the tree level by level (a child needs its parent's pk); returns ids by external id."""
    wanted = [c.external_id for c in categories]
    ids = dict(Category.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
    before = len(ids)
    for depth in range(max(c.depth for c in categories) + 1):
        level = [c for c in categories if c.depth == depth and c.external_id not in ids]
        if not level:
            continue
        Category.objects.bulk_create(
            [
                Category(
                    name=c.name,
                    slug=c.slug,
                    depth=c.depth,
                    parent_id=ids[c.parent_external_id] if c.parent_external_id else None,
                    external_id=c.external_id,
                    description=c.description,
                )
                for c in level
            ],
            ignore_conflicts=True,
        )
        ids.update(
            Category.objects.filter(external_id__in=[c.external_id for c in level]).values_list("external_id", "pk")
        )
        clashing = [c.slug for c in level if c.external_id not in ids]
        if clashing:
            raise CatalogSeedError(
                f"category slug(s) already used by other categories: {', '.join(clashing[:5])}; "
                "seed into a fresh database"
            )
    return ids, len(ids) - before


def _brands_ensure(brands) -> tuple[dict[str, int], int]:
    names = [b.name for b in brands]
    ids = dict(Brand.objects.filter(name__in=names).values_list("name", "pk"))
    before = len(ids)
    missing = [b for b in brands if b.name not in ids]
    if missing:
        Brand.objects.bulk_create([Brand(name=b.name, slug=b.slug) for b in missing], ignore_conflicts=True)
        ids.update(Brand.objects.filter(name__in=[b.name for b in missing]).values_list("name", "pk"))
        clashing = [b.slug for b in missing if b.name not in ids]
        if clashing:
            raise CatalogSeedError(f"brand slug(s) already used by other brands: {', '.join(clashing[:5])}")
    return ids, len(ids) - before


def catalog_seed(
    *,
    products: int,
    seed: int,
    now: dt.datetime | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Make the database hold the generated catalog's products ``0 .. products-1`` for ``seed``.

    Semantics, so that re-running is always safe:

    * same ``seed`` and ``products`` on a seeded database: nothing is written (``already_seeded``);
    * a larger ``products``: the missing products are added; product ``i`` depends only on
      ``(seed, i)``, so the ones already there are exactly what a fresh run would make;
    * a smaller ``products``, or another ``seed``: :class:`CatalogSeedError`. Seeding never deletes
      or rewrites products (orders and events may point at them); use a fresh database instead.

    All of it happens in one transaction. ``created_at`` is spread over the ~18 months before
    ``now`` (default: the current time), so "new arrivals" is meaningful on the day you seed.
    ``progress`` is called with the number of products written after each batch.
    """
    if products < 0:
        raise CatalogSeedError("--products must be >= 0")
    if seed < 0:
        raise CatalogSeedError("--seed must be >= 0")
    started = time.perf_counter()
    prefix = _seeded_product_prefix(seed)
    seeded = Product.objects.filter(external_id__startswith=f"{SEED_EXTERNAL_PREFIX}:")
    other = seeded.exclude(external_id__startswith=prefix).values_list("external_id", flat=True).first()
    if other is not None:
        other_seed = other.split(":")[1]
        raise CatalogSeedError(
            f"this catalog was seeded with --seed {other_seed}; one database holds one seeded catalog. "
            f"Use --seed {other_seed} (to extend it) or a fresh database."
        )
    existing = {int(e.rsplit(":", 1)[1]) for e in seeded.values_list("external_id", flat=True)}
    if existing and max(existing) >= products:
        raise CatalogSeedError(
            f"the catalog already holds {len(existing)} products from seed {seed}; seeding only adds products "
            f"and never removes them, so --products must be at least {max(existing) + 1}."
        )
    missing = [i for i in range(products) if i not in existing]
    if not missing and existing:
        # already seeded (its categories and brands too: products protect their category)
        return SeedResult(
            seed=seed,
            products=len(existing),
            products_created=0,
            categories_created=0,
            brands_created=0,
            seconds=time.perf_counter() - started,
        )

    generator = CatalogGenerator(seed=seed, now=now or timezone.now())
    with transaction.atomic():
        category_ids, categories_created = _categories_ensure(generator.categories)
        brand_ids, brands_created = _brands_ensure(generator.brands)
        created = 0
        for start in range(0, len(missing), batch_size):
            rows = generator.products(missing[start : start + batch_size])
            Product.objects.bulk_create(
                [
                    Product(
                        sku=p.sku,
                        external_id=p.external_id,
                        name=p.name,
                        slug=p.slug,
                        description=p.description,
                        category_id=category_ids[p.category_external_id],
                        brand_id=brand_ids[p.brand_name],
                        price=p.price,
                        stock=p.stock,
                        image_seed=p.image_seed,
                        created_at=p.created_at,
                    )
                    for p in rows
                ],
                batch_size=batch_size,
            )
            created += len(rows)
            if progress is not None:
                progress(len(rows))
    if categories_created:
        cache.delete("nav_categories")  # the navigation bar caches the root categories
    if created:
        catalog_tables_vacuum()
    return SeedResult(
        seed=seed,
        products=len(existing) + created,
        products_created=created,
        categories_created=categories_created,
        brands_created=brands_created,
        seconds=time.perf_counter() - started,
    )

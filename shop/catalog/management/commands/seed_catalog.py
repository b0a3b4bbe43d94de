from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from shop.catalog.services import CatalogSeedError, catalog_seed


class Command(BaseCommand):
    help = (
        "Generate a deterministic demo catalog (categories, brands, products; images are drawn on the fly). "
        "Same --seed, same catalog. Re-running with the same arguments writes nothing ('already seeded'); "
        "a larger --products adds the missing products and leaves the existing ones as they are; "
        "a smaller --products or another --seed is refused (seeding never deletes products)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=5000, help="number of products (default 5000)")
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")

    def handle(self, *args, products: int, seed: int, verbosity: int = 1, **options):
        bar = tqdm(
            total=products, unit=" products", desc="Seeding", file=sys.stderr, disable=verbosity < 1, leave=False
        )
        try:
            result = catalog_seed(products=products, seed=seed, progress=bar.update)
        except CatalogSeedError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        if result.already_seeded:
            self.stdout.write(f"Catalog already seeded: {result.products:,} products from seed {seed}; nothing to do.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {result.products_created:,} products (catalog now {result.products:,}, seed {seed}), "
                f"{result.categories_created} categories, {result.brands_created} brands "
                f"in {result.seconds:.2f} s."
            )
        )

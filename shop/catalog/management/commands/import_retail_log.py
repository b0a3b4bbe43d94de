from __future__ import annotations

import resource
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from shop.catalog.importer import RetailLogError, retail_log_import
from shop.catalog.services import catalog_tables_vacuum


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS; this project runs on Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Command(BaseCommand):
    help = (
        "Import a retail purchase log in the Ta Feng format (.csv, or .zip holding one .csv): products in "
        "sub-class categories, customers (as visitors), one order per customer and day, order lines and "
        "purchase events. Two passes: the whole file (or the first --limit rows) is validated first, so a "
        "malformed file is rejected with the line named and NOTHING is written; then rows are imported in "
        "chunks, one transaction each, in constant memory. Idempotent: rows already imported are skipped, "
        "so a second run adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the log: a .csv file or a .zip holding one")
        parser.add_argument("--limit", type=int, default=None, help="import only the first N data rows")
        parser.add_argument("--batch-size", type=int, default=2000, help="rows per INSERT (default 2000)")
        parser.add_argument(
            "--chunk-size", type=int, default=5000, help="rows per transaction (default 5000; memory grows with it)"
        )

    def handle(self, *args, path: str, limit: int | None, batch_size: int, chunk_size: int, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be >= 1")
        if batch_size < 1 or chunk_size < 1:
            raise CommandError("--batch-size and --chunk-size must be >= 1")
        quiet = options.get("verbosity", 1) < 1
        checking = tqdm(desc="Validating", unit=" rows", unit_scale=True, total=limit, file=sys.stderr, disable=quiet)
        bars = {"check": checking}

        def validated(rows: int) -> None:
            bars["check"].close()
            bars["import"] = tqdm(
                desc="Importing", unit=" rows", unit_scale=True, total=rows, file=sys.stderr, disable=quiet
            )

        try:
            stats = retail_log_import(
                path=path,
                limit=limit,
                chunk_size=chunk_size,
                batch_size=batch_size,
                on_validated=validated,
                validate_progress=checking.update,
                progress=lambda n: bars["import"].update(n),
            )
        except RetailLogError as exc:
            if "import" not in bars:
                raise CommandError(f"{exc} (file rejected; nothing was imported)") from exc
            # only if the file changed between the passes
            raise CommandError(f"{exc} (the chunk holding it was rolled back; earlier chunks were kept)") from exc
        finally:
            for bar in bars.values():
                bar.close()

        if stats.products_created:
            catalog_tables_vacuum()  # the planner sees the new products at once (see the function)
        if stats.nothing_added:
            self.stdout.write(f"Already imported: {stats.rows:,} rows read, nothing added.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {stats.rows:,} rows from {path}."))
        self.stdout.write(
            f"  created: {stats.products_created:,} products, {stats.categories_created:,} categories, "
            f"{stats.customers_created:,} customers, {stats.orders_created:,} orders, "
            f"{stats.lines_created:,} order lines, {stats.events_created:,} purchase events; "
            f"{stats.prices_updated:,} prices updated\n"
            f"  time: {stats.seconds:.1f} s (validation {stats.validate_seconds:.1f} s, "
            f"import {stats.import_seconds:.1f} s), {stats.rows_per_second:,.0f} rows/s overall\n"
            f"  peak memory: {_peak_rss_mib():.0f} MiB"
        )

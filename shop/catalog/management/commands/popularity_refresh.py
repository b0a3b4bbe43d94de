"""Apply the interaction log's new events to the products' decayed popularity (beat runs the same)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from tqdm import tqdm

from shop.catalog.models import PopularityState
from shop.catalog.popularity import popularity_rebuild, popularity_refresh
from shop.events.models import Event


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="recompute every score from the whole log in one SQL statement (PostgreSQL; for a first run "
            "over millions of events); later refreshes continue from where it stopped",
        )

    def handle(self, *args, verbosity: int = 1, rebuild: bool = False, **options):
        if rebuild:
            t0 = time.perf_counter()
            result = popularity_rebuild()
            self.stdout.write(
                f"Rebuilt the scores of {result.products:,} products from {result.events:,} events in "
                f"{time.perf_counter() - t0:.2f} s (up to event {result.last_event_id:,})."
            )
            return
        state = PopularityState.objects.filter(pk=1).first()
        last = state.last_event_id if state else 0
        pending = Event.objects.filter(id__gt=last).count()
        t0 = time.perf_counter()
        with tqdm(total=pending, unit="events", desc="Popularity", disable=verbosity < 1) as bar:
            result = popularity_refresh(progress=bar.update)
        self.stdout.write(
            f"Applied {result.events:,} events to {result.products:,} products in "
            f"{time.perf_counter() - t0:.2f} s (up to event {result.last_event_id:,})."
        )

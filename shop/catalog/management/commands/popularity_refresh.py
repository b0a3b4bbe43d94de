"""Apply the interaction log's new events to the products' decayed popularity (beat runs the same)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from tqdm import tqdm

from shop.catalog.models import PopularityState
from shop.catalog.popularity import popularity_refresh
from shop.events.models import Event


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, verbosity: int = 1, **options):
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

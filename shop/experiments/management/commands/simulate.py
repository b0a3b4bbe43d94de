"""``manage.py simulate``: blind shoppers browse a running storefront over HTTP (see shop.simulator)."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shop.simulator.run import Config, session_count, simulate


class Command(BaseCommand):
    help = "Simulate shoppers with hidden tastes browsing the storefront at --url (HTTP only, never the database)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The running storefront.")
        parser.add_argument("--shoppers", type=int, default=300)
        parser.add_argument("--minutes", type=float, default=5.0, help="Spread session starts over this long.")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--concurrency", type=int, default=8, help="Sessions browsing at the same time.")
        parser.add_argument("--think", type=float, default=0.3, help="Mean seconds between a shopper's pages.")

    def handle(self, *args, url, shoppers, minutes, seed, concurrency, think, **options):
        if shoppers < 1 or minutes < 0 or concurrency < 1 or think < 0:
            raise CommandError("--shoppers and --concurrency must be >= 1; --minutes and --think >= 0.")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
        config = Config(url=url, shoppers=shoppers, minutes=minutes, seed=seed, concurrency=concurrency, think_s=think)
        console = Console(file=self.stdout, width=120)
        with Progress(
            TextColumn("[bold]shopping"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sessions"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("sessions", total=session_count(config))
            try:
                summary = simulate(config, on_session_done=lambda: progress.advance(task))
            except Exception as exc:  # the site is down or not a storefront
                raise CommandError(f"Could not simulate against {url}: {exc}") from exc
        c = summary.counters
        table = Table(title=f"Simulated shoppers against {url} (seed {seed})")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for name, value in (
            ("shoppers", summary.shoppers),
            ("sessions", summary.sessions),
            ("pages", c.pages),
            ("personal rails fetched after load", c.rails_fetched),
            ("events sent (impressions, clicks)", c.events_sent),
            ("events refused", c.events_refused),
            ("rail/list clicks", c.clicks),
            ("add to cart", c.add_to_carts),
            ("orders", c.orders),
            ("revenue", f"${c.revenue:,.2f}"),
            ("sign-ups", c.signups),
            ("log-ins", c.logins),
            ("throttled responses", c.throttled),
            ("server errors", c.http_errors),
            ("seconds", f"{summary.seconds:.1f}"),
        ):
            table.add_row(name, str(value))
        console.print(table)
        for err in c.errors[:10]:
            console.print(f"[red]error:[/red] {err}")

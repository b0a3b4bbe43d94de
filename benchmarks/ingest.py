"""Ingest benchmark: events/s stored in PostgreSQL through ``POST /api/events``.

    .venv/bin/python -m benchmarks.ingest [--duration 20] [--batch-size 500] [--concurrency 8]

Starts a throwaway PostgreSQL (or uses ``--database-url``), migrates, seeds the catalog, starts
gunicorn on loopback, then posts realistic impression/click events (views are logged by the server) from C concurrent posters
(asyncio + httpx, in this process) for a fixed time. Each run counts the Event rows before and
after and checks that every accepted event was stored exactly once, then replays a batch to check
that replays are not stored again.

Baseline in the same run: the same kind of events posted one per request (batch size 1), same
posters, same server. Events/s = rows stored / wall time of the run. Target: >= 5,000 events/s on
2 cores. The ``events`` throttle is raised for the benchmark (EVENTS_THROTTLE_RATE), and the output
says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shop.events.middleware import visitor_cookie_value

from . import harness
from .harness import BENCH_DIR, CpuMeter, Stack, console

TARGET_EVENTS_PER_S = 5000
PLACEMENTS = (
    "home.new_arrivals",
    "home.popular",
    "category.grid",
    "category.popular",
    "search.results",
    "product.similar",
    "cart.suggestions",
)
DEVICES = ("desktop", "mobile", "tablet")
VISITOR_POOL = 2000


class EventStream:
    """Believable beacon traffic, page view by page view.

    A page view shows 4 to 24 cards in one placement (one impression each, positions 0..k-1); in
    about one view in ten a card is clicked, and about one in four is a product page (a view event).
    Idempotency keys follow the contract (``imp:{pv}:{placement}:{pos}``, ``clk:...``, ``view:{pv}``),
    so every event of the run is unique.
    """

    def __init__(self, *, product_ids: list[int], seed: int) -> None:
        self.rng = random.Random(seed)
        self.product_ids = product_ids
        self.buffer: list[dict[str, Any]] = []
        self.visitors = [str(uuid.UUID(int=self.rng.getrandbits(128), version=4)) for _ in range(VISITOR_POOL)]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _page_view(self) -> list[dict[str, Any]]:
        rng = self.rng
        pv = self._uuid()
        placement = rng.choice(PLACEMENTS)
        device = rng.choice(DEVICES)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        cards = rng.sample(self.product_ids, k=min(len(self.product_ids), rng.randint(4, 24)))
        events = [
            {
                "type": "impression",
                "product_id": pid,
                "placement": placement,
                "position": pos,
                "page_view_id": pv,
                "idempotency_key": f"imp:{pv}:{placement}:{pos}",
                "occurred_at": now,
                "device": device,
            }
            for pos, pid in enumerate(cards)
        ]
        if rng.random() < 0.1:
            pos = rng.randrange(len(cards))
            events.append(
                {
                    "type": "click",
                    "product_id": cards[pos],
                    "placement": placement,
                    "position": pos,
                    "page_view_id": pv,
                    "idempotency_key": f"clk:{pv}:{placement}:{pos}",
                    "occurred_at": now,
                    "device": device,
                }
            )
        return events

    def take(self, n: int) -> list[dict[str, Any]]:
        while len(self.buffer) < n:
            self.buffer.extend(self._page_view())
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def visitor(self) -> str:
        return self.rng.choice(self.visitors)


@dataclass
class RunStats:
    name: str
    batch_size: int
    concurrency: int
    duration_s: float
    requests: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    first_body: bytes | None = None
    first_cookie: str | None = None

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message[:300])


async def _poster(
    client: httpx.AsyncClient, stream: EventStream, stats: RunStats, deadline: float, record: bool
) -> None:
    while time.perf_counter() < deadline:
        events = stream.take(stats.batch_size)
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        # a browser's beacon: the visitor is the vid cookie
        cookie = f"vid={visitor_cookie_value(uuid.UUID(stream.visitor()))}"  # signed, as the server sets it
        if record and stats.first_body is None:
            stats.first_body, stats.first_cookie = body, cookie
        t0 = time.perf_counter()
        try:
            r = await client.post(
                "/api/events", content=body, headers={"Content-Type": "application/json", "Cookie": cookie}
            )
        except httpx.HTTPError as exc:
            stats.error(f"{type(exc).__name__}: {exc}")
            continue
        latency = time.perf_counter() - t0
        if not record:
            continue
        stats.requests += 1
        stats.events_sent += len(events)
        stats.latencies_s.append(latency)
        if r.status_code != 202:
            stats.error(f"HTTP {r.status_code}: {r.text[:200]}")
            continue
        payload = r.json()
        stats.accepted += payload.get("accepted", 0)
        stats.duplicates += payload.get("duplicates", 0)


async def _run(base_url: str, stream: EventStream, stats: RunStats, *, record: bool, progress: Progress | None) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, trust_env=False)
        for _ in range(stats.concurrency)
    ]
    t0 = time.perf_counter()
    deadline = t0 + stats.duration_s
    task_id = None
    if progress is not None:
        task_id = progress.add_task(stats.name, total=stats.duration_s, rate="")

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.25)
            elapsed = time.perf_counter() - t0
            if progress is not None:
                progress.update(
                    task_id,
                    completed=min(elapsed, stats.duration_s),
                    rate=f"{stats.accepted / max(elapsed, 1e-9):,.0f} events/s accepted",
                )

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(_poster(c, stream, stats, deadline, record) for c in clients))
    finally:
        stats.wall_s = time.perf_counter() - t0  # until the last in-flight response came back
        tick.cancel()
        for c in clients:
            await c.aclose()
        if progress is not None:
            progress.update(task_id, completed=stats.duration_s)


def event_rows() -> int:
    """Events stored through the ingest API (beacon or token). Not the storefront's own: gunicorn's
    readiness probe opens the home page, whose rails' impressions may land during a run."""
    from shop.events.models import Event, EventSource

    return Event.objects.filter(source__in=[EventSource.BEACON, EventSource.API]).count()


def measure(
    stack: Stack, stream: EventStream, *, name: str, batch_size: int, concurrency: int, duration_s: float
) -> dict[str, Any]:
    stats = RunStats(name=name, batch_size=batch_size, concurrency=concurrency, duration_s=duration_s)
    before = event_rows()
    meter = CpuMeter(
        pids={"gunicorn": stack.web.pid, "postgres": stack.postgres_pid, "load_generator": os.getpid()},
        exclude_children={"load_generator"},
    ).start()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
        console=console,
        transient=False,
    ) as progress:
        asyncio.run(_run(stack.web.base_url, stream, stats, record=True, progress=progress))
    cpu = meter.stop()
    after = event_rows()
    stored = after - before
    lat = harness.latency_summary_ms(stats.latencies_s)
    return {
        "name": name,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "duration_s": duration_s,
        "wall_s": round(stats.wall_s, 3),
        "requests": stats.requests,
        "events_sent": stats.events_sent,
        "events_accepted": stats.accepted,
        "duplicates_reported": stats.duplicates,
        "rows_before": before,
        "rows_after": after,
        "events_stored": stored,
        "events_per_s": round(stored / stats.wall_s, 1) if stats.wall_s else 0.0,
        "requests_per_s": round(stats.requests / stats.wall_s, 1) if stats.wall_s else 0.0,
        "post_latency": lat,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        # every event sent was new, so all of them must be stored, once
        "exactly_once": stats.errors == 0 and stored == stats.accepted == stats.events_sent,
        "cpu": cpu,
        "efficiency": harness.efficiency(cpu, stored),
        "_first": (stats.first_body, stats.first_cookie),
    }


def replay_check(stack: Stack, body: bytes | None, cookie: str | None) -> dict[str, Any]:
    """Post a batch that was already stored: every event must come back as a duplicate."""
    if body is None:
        return {"checked": False}
    n = len(json.loads(body)["events"])
    before = event_rows()
    with httpx.Client(base_url=stack.web.base_url, timeout=60, trust_env=False) as client:
        r = client.post("/api/events", content=body, headers={"Content-Type": "application/json", "Cookie": cookie})
    after = event_rows()
    payload = r.json() if r.status_code == 202 else {}
    return {
        "checked": True,
        "status": r.status_code,
        "events": n,
        "accepted": payload.get("accepted"),
        "duplicates": payload.get("duplicates"),
        "rows_added": after - before,
        "ok": r.status_code == 202 and payload.get("duplicates") == n and after == before,
    }


def warm_up(stack: Stack, stream: EventStream, *, seconds: float, concurrency: int, batch_size: int) -> None:
    if seconds <= 0:
        return
    stats = RunStats(name="warm-up", batch_size=batch_size, concurrency=concurrency, duration_s=seconds)
    with console.status(f"Warming up ({seconds:g} s, not measured)..."):
        asyncio.run(_run(stack.web.base_url, stream, stats, record=False, progress=None))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measured run (default 20)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per post (default 500, the API limit)")
    parser.add_argument("--baseline-batch-size", type=int, default=1, help="events per post in the baseline (1)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent posters (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured warm-up seconds (default 2)")
    parser.add_argument(
        "--throttle-rate", default=harness.BENCH_THROTTLE_RATE, help="EVENTS_THROTTLE_RATE for the server"
    )
    harness.add_common_arguments(parser, default_json=BENCH_DIR / "ingest.json")
    args = parser.parse_args(argv)
    harness.check_common_arguments(parser, args)
    if not 1 <= args.batch_size <= 10_000 or not 1 <= args.baseline_batch_size <= 10_000:
        parser.error("batch sizes must be between 1 and 10000")
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600] seconds")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console.rule("[bold]Ingest benchmark: POST /api/events into PostgreSQL")
    console.print(
        f"Throttle: EVENTS_THROTTLE_RATE={args.throttle_rate} for this run (default 6000/min per visitor), "
        "so the ingest path is measured, not the throttle."
    )
    with Stack(
        database_url=args.database_url,
        products=args.products,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        worker_class=args.worker_class,
        server_cpus=args.server_cpus,
        client_cpus=args.client_cpus,
        server=args.server,
        extra_env={"EVENTS_THROTTLE_RATE": args.throttle_rate, "EVENTS_IP_THROTTLE_RATE": args.throttle_rate},
    ) as stack:
        from shop.catalog.models import Product

        product_ids = list(Product.objects.order_by("pk").values_list("pk", flat=True))
        if not product_ids:
            raise SystemExit("no products to post events about")
        stream = EventStream(product_ids=product_ids, seed=args.seed)
        console.print(
            f"Load: {args.concurrency} concurrent posters (asyncio + httpx in this process, closed loop: "
            f"each posts its next batch when the previous answers), {args.duration:g} s per run, "
            f"{len(product_ids):,} products, {VISITOR_POOL:,} visitors (vid cookie)."
        )
        warm_up(stack, stream, seconds=args.warmup, concurrency=args.concurrency, batch_size=args.batch_size)

        # Baseline first: ours then runs on the larger table, which can only slow it down.
        baseline = measure(
            stack,
            stream,
            name=f"baseline: {args.baseline_batch_size} event/post",
            batch_size=args.baseline_batch_size,
            concurrency=args.concurrency,
            duration_s=args.duration,
        )
        ours = measure(
            stack,
            stream,
            name=f"ours: {args.batch_size} events/post",
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            duration_s=args.duration,
        )
        replay = replay_check(stack, *ours.pop("_first"))
        baseline.pop("_first")

        result = {
            "benchmark": "ingest",
            "command": "python -m benchmarks.ingest " + " ".join(sys.argv[1:] if argv is None else argv),
            "target": {"events_per_s": TARGET_EVENTS_PER_S, "cores": 2},
            "load_model": (
                f"closed loop: {args.concurrency} posters in one asyncio process, each sends its next "
                "batch as soon as the previous one is answered"
            ),
            "throttle_rate": args.throttle_rate,
            "machine": harness.machine_info(),
            "postgres": stack.postgres_facts(),
            "settings": stack.settings_used(),
            "ours": ours,
            "baseline": baseline,
            "ratio": {
                "events_per_s": harness.ratio(ours["events_per_s"], baseline["events_per_s"]),
                "p50_post_latency": harness.ratio(ours["post_latency"]["p50_ms"], baseline["post_latency"]["p50_ms"]),
            },
            "replay_check": replay,
            "meets_target": ours["events_per_s"] >= TARGET_EVENTS_PER_S,
            "contended": ours["efficiency"]["contended"] or baseline["efficiency"]["contended"],
            "projected_meets_target": ours["efficiency"]["projected_per_s_on_2_uncontended_cores"]
            >= TARGET_EVENTS_PER_S,
        }
        report(result)
        path = harness.write_json(args.json, result)
        console.print(f"Wrote {path}")
    ok = ours["exactly_once"] and baseline["exactly_once"] and replay.get("ok", False)
    return 0 if ok else 1


def report(result: dict[str, Any]) -> None:
    ours, base = result["ours"], result["baseline"]
    table = Table(title="Ingest: events stored in PostgreSQL per second", title_justify="left")
    table.add_column("")
    table.add_column(ours["name"], justify="right")
    table.add_column(base["name"], justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        "[bold]events/s stored[/]",
        f"[bold]{ours['events_per_s']:,.0f}[/]",
        f"{base['events_per_s']:,.0f}",
        f"[bold]{result['ratio']['events_per_s'] or 0:.1f}x[/]",
    )
    table.add_row("requests/s", f"{ours['requests_per_s']:,.1f}", f"{base['requests_per_s']:,.1f}", "")
    for key in ("p50_ms", "p99_ms", "max_ms"):
        table.add_row(
            f"post latency {key[:-3]} (ms)",
            f"{ours['post_latency'][key]:,.1f}",
            f"{base['post_latency'][key]:,.1f}",
            "",
        )
    table.add_row(
        "events sent / stored",
        f"{ours['events_sent']:,} / {ours['events_stored']:,}",
        f"{base['events_sent']:,} / {base['events_stored']:,}",
        "",
    )
    table.add_row(
        "stored exactly once",
        "yes" if ours["exactly_once"] else "[red]NO[/]",
        "yes" if base["exactly_once"] else "[red]NO[/]",
        "",
    )
    table.add_row("errors", str(ours["errors"]), str(base["errors"]), "")
    oe, be = ours["efficiency"], base["efficiency"]
    table.add_row(
        "server CPU ms per event",
        f"{oe['server_cpu_ms_per_unit'] or 0:.3f}",
        f"{be['server_cpu_ms_per_unit'] or 0:.3f}",
        f"{(be['server_cpu_ms_per_unit'] or 0) / (oe['server_cpu_ms_per_unit'] or 1):.1f}x less",
    )
    table.add_row(
        "events per CPU-second (all)",
        f"{oe['units_per_own_cpu_second']:,.0f}",
        f"{be['units_per_own_cpu_second']:,.0f}",
        "",
    )
    table.add_row(
        "[bold]projected on 2 quiet cores[/]",
        f"[bold]{oe['projected_per_s_on_2_uncontended_cores']:,.0f}[/]",
        f"{be['projected_per_s_on_2_uncontended_cores']:,.0f}",
        "",
    )
    for who in ("gunicorn", "postgres", "load_generator", "other"):
        table.add_row(
            f"CPU share: {who}",
            f"{100 * ours['cpu']['share_of_machine'].get(who, 0):.0f}%",
            f"{100 * base['cpu']['share_of_machine'].get(who, 0):.0f}%",
            "",
        )
    console.print(table)
    console.print(
        harness.comparison_chart(
            "events/s",
            [
                (ours["name"], ours["events_per_s"], "green"),
                (base["name"], base["events_per_s"], "yellow"),
                ("target", TARGET_EVENTS_PER_S, "dim"),
            ],
            unit="events/s",
        )
    )
    harness.contention_warning([ours, base])
    replay = result["replay_check"]
    if replay.get("checked"):
        console.print(
            f"Replay of one stored batch: HTTP {replay['status']}, {replay['duplicates']} of {replay['events']} "
            f"reported duplicate, {replay['rows_added']} rows added -> {'ok' if replay['ok'] else '[red]FAILED[/]'}"
        )
    for run in (ours, base):
        for sample in run["error_samples"]:
            console.print(f"[red]{run['name']} error:[/] {sample}")
    console.print(
        f"Ours: [bold]{ours['events_per_s']:,.0f} events/s[/], baseline {base['events_per_s']:,.0f} events/s, "
        f"ratio [bold]{result['ratio']['events_per_s'] or 0:.1f}x[/]; target >= {TARGET_EVENTS_PER_S:,} events/s on "
        f"2 cores: {harness.verdict(result['meets_target'])} (this machine: {result['machine']['usable_cores']} cores, "
        "load generator on the same cores)"
    )
    console.print(
        f"CPU-normalised: {oe['units_per_own_cpu_second']:,.0f} events per CPU-second of server + load generator, "
        f"about {oe['projected_per_s_on_2_uncontended_cores']:,.0f} events/s projected on 2 uncontended cores: "
        f"{harness.verdict(result['projected_meets_target'])}"
    )


if __name__ == "__main__":
    sys.exit(main())

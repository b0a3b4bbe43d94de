"""Benchmark: export N events from PostgreSQL to a Parquet snapshot (the retrain's first stage).

    python -m worker.bench_export [--events 1000000] [--out var/bench/export.json]

Starts a throwaway PostgreSQL (benchmarks.harness.Postgres), migrates it, loads N events with COPY,
then exports them twice, each in a fresh process so peak memory is its own:

- ours: ``shop.recs.export.training_data_export`` (server-side cursor, tuples, Parquet row groups);
- baseline: the obvious way, every row in a list, then a pandas DataFrame written in one go.

Prints events/s and peak memory (ru_maxrss of the exporting process, its growth over the process after
imports, and tracemalloc's Python-heap peak) for both and their ratio; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _setup_django(database_url: str, snapshot_dir: str) -> None:
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "SNAPSHOT_DIR": snapshot_dir,
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "DEBUG": "0",
        }
    )
    import django

    django.setup()


def load(database_url: str, events: int, *, visitors: int, products: int) -> float:
    """Migrate and fill the database; returns the seconds COPY took for the events."""
    import datetime as dt
    import random
    import uuid

    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from shop.catalog.models import Brand, Category, Product

    cat = Category.objects.create(name="Bench", slug="bench")
    brand = Brand.objects.create(name="Bench", slug="bench")
    now = dt.datetime.now(dt.UTC)
    Product.objects.bulk_create(
        [
            Product(
                sku=f"B{i}", name=f"P{i}", slug=f"p{i}", category=cat, brand=brand, price=9, stock=5, created_at=now
            )
            for i in range(products)
        ],
        batch_size=5000,
    )
    pids = list(Product.objects.values_list("id", flat=True))
    rng = random.Random(0)
    vids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(visitors)]
    types = ["impression"] * 6 + ["view", "click", "click", "add_to_cart", "purchase"]
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        raw = cur.cursor
        with raw.copy("COPY events_visitor (id, attributes, created_at) FROM STDIN") as cp:
            for v in vids:
                cp.write_row((v, "{}", now))
        cols = "idempotency_key, visitor_id, product_id, type, placement, position, quantity, source, device, occurred_at, received_at"
        with raw.copy(f"COPY events_event ({cols}) FROM STDIN") as cp:
            start = now - dt.timedelta(days=60)
            for i in range(events):
                kind = types[i % len(types)]
                pos = i % 12 if kind in ("impression", "click") else None
                t = start + dt.timedelta(seconds=i * 5)
                cp.write_row((f"b:{i}", vids[rng.randrange(visitors)], pids[rng.randrange(len(pids))], kind,
                              "home.popular" if pos is not None else "", pos, 1, "web", "mobile", t, t))  # fmt: skip
    connection.cursor().execute("ANALYZE events_event")
    return time.perf_counter() - t0


def export_child(database_url: str, mode: str) -> dict:
    """Run in a fresh process: one export, its time and memory."""
    snap = tempfile.mkdtemp(prefix="bench-snap-")
    _setup_django(database_url, snap)
    import pyarrow as pa

    from shop.events.models import Event
    from shop.recs import export, keys

    Event.objects.exists()  # connect before measuring
    rss0, peak0 = _rss_mib(), _peak_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    c0 = _cpu_s()
    if mode == "ours":
        result = export.training_data_export()
        n = result["events"]
    else:
        result = {}
        import pandas as pd

        rows = list(
            Event.objects.order_by("id").values_list(
                keys.event_user_key(),
                "product_id",
                "type",
                keys.epoch_seconds("occurred_at"),
                "placement",
                "position",
                "device",
            )
        )
        frame = pd.DataFrame(rows, columns=list(export.INTERACTION_SCHEMA_COLUMNS))
        frame["item_id"] = frame["item_id"].astype(str)
        frame["position"] = frame["position"].fillna(-1).astype("int32")
        frame.to_parquet(Path(snap) / "interactions.parquet", index=False, compression="zstd")
        n = len(frame)
    seconds = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    written = Path(result["path"]) if mode == "ours" else Path(snap)
    files = [written] if written.is_file() else list(written.rglob("*.parquet"))
    size = sum(p.stat().st_size for p in files)
    return {
        "mode": mode,
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        # this process's own CPU time (user + sys): steadier than wall time on a shared machine
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": round(n / cpu, 1) if cpu else None,
        "rss_after_imports_mib": round(rss0, 1),
        "peak_rss_mib": round(_peak_mib(), 1),
        "peak_rss_growth_mib": round(_peak_mib() - peak0, 1),  # above the process's peak before the export
        "python_heap_peak_mib": round(py_peak / 2**20, 1),
        "arrow_pool_peak_mib": round(pa.default_memory_pool().max_memory() / 2**20, 1),
        "parquet_mib": round(size / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.bench_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--visitors", type=int, default=50_000)
    p.add_argument("--products", type=int, default=5_000)
    p.add_argument("--no-baseline", action="store_true", help="skip the all-in-memory baseline")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "export.json")
    p.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(export_child(args.database_url, args.child)))
        return 0

    sys.path.insert(0, str(ROOT))
    from benchmarks.harness import Postgres, machine_info, postgres_facts, ratio, write_json

    pg = Postgres(dbname="bench_export").start()
    try:
        _setup_django(pg.url, tempfile.mkdtemp(prefix="bench-snap-"))
        print(f"loading {args.events:,} events into a throwaway PostgreSQL on port {pg.port} ...", flush=True)
        copy_s = load(pg.url, args.events, visitors=args.visitors, products=args.products)
        print(f"  COPY: {args.events / copy_s:,.0f} events/s")
        from django.db import connections

        connections.close_all()
        runs = {}
        for mode in ("ours",) if args.no_baseline else ("ours", "baseline"):
            out = subprocess.run(
                [sys.executable, "-m", "worker.bench_export", "--child", mode, "--database-url", pg.url],
                cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(f"{mode} export failed:\n{out.stdout}\n{out.stderr}")
            runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = runs[mode]
            print(
                f"  {mode:8}: {r['events_per_s']:>10,.0f} events/s ({r['events_per_cpu_s']:,.0f} per CPU-s)  {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mib']:7.1f} MiB "
                f"(+{r['peak_rss_growth_mib']:.1f} over imports)  python heap peak {r['python_heap_peak_mib']:.1f} MiB  "
                f"arrow peak {r['arrow_pool_peak_mib']:.1f} MiB  parquet {r['parquet_mib']:.1f} MiB"
            )
        report = {
            "benchmark": "export events -> Parquet snapshot",
            "events": args.events,
            "copy_events_per_s": round(args.events / copy_s, 1),
            "ours": runs["ours"],
            "machine": machine_info(),
            "postgres": postgres_facts(pg.url),
        }
        if "baseline" in runs:
            b, o = runs["baseline"], runs["ours"]
            report["baseline"] = {"name": "list(values_list) + pandas.DataFrame.to_parquet", **b}
            report["speed_ratio_ours_over_baseline"] = ratio(o["events_per_s"], b["events_per_s"])
            report["peak_rss_growth_ratio_baseline_over_ours"] = ratio(
                b["peak_rss_growth_mib"], o["peak_rss_growth_mib"]
            )
            print(
                f"  ratio: ours {report['speed_ratio_ours_over_baseline']:.2f}x the baseline's speed, baseline peak RSS "
                f"growth {report['peak_rss_growth_ratio_baseline_over_ours']:.1f}x ours"
            )
        path = write_json(args.out, report)
        print(f"wrote {path}")
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

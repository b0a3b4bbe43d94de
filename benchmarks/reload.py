"""How long a web process's request threads wait while it builds a new serving pipeline.

    DATABASE_URL=... MODEL_DIR=... SNAPSHOT_DIR=... .venv/bin/python -m benchmarks.reload [--rounds 2]

A web process rebuilds its pipeline whenever the active model version or the latest snapshot changes
(``shop.recs.serving``). This loads the active version on the latest snapshot of the configured database the
way a web process does (``serving_reload``), alternately in this process (``inline``, the baseline) and in a
child process handed back whole (``apart``, RECS_SERVING_BUILD_APART), ``--rounds`` times each. Meanwhile a
thread stands in for a request thread: it sleeps 1 ms at a time and records how late it wakes. Lateness is
the time it waited for the interpreter lock, which the build held; any request thread of the process waits
as long. Reported per mode: the build's wall time, the longest wait, the 99.9th percentile of wakes, the
number of waits over 20 and 100 ms, and the time spent in waits over 5 ms (a wake on an idle core is about
0.1 ms late). JSON under ``var/bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from .harness import BENCH_DIR, console

TICK_S = 0.001


class Ticker(threading.Thread):
    """A stand-in request thread: wakes every millisecond and records how late (seconds past the tick)."""

    def __init__(self) -> None:
        super().__init__(name="bench-ticker", daemon=True)
        self.late: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        last = time.perf_counter()
        while not self._done.is_set():
            time.sleep(TICK_S)
            now = time.perf_counter()
            self.late.append(max(0.0, now - last - TICK_S))
            last = now

    def stop(self) -> list[float]:
        self._done.set()
        self.join()
        return self.late


def one_build(apart: bool) -> dict[str, Any]:
    """Build the active version on the latest snapshot once (in this process, or apart) and measure."""
    from django.test.utils import override_settings

    from shop.recs import serving

    serving.serving_forget()
    ticker = Ticker()
    ticker.start()
    t0 = time.perf_counter()
    with override_settings(RECS_SERVING_BUILD_APART=apart):
        model = serving.serving_reload()
    wall = time.perf_counter() - t0
    late = np.array(ticker.stop()) * 1000
    status = serving.serving_status()
    if model is None:
        raise RuntimeError(f"no model could be built: {status.error}")
    return {
        "mode": "apart" if apart else "inline",
        "version": model.version,
        "snapshot": model.snapshot,
        "built_in_child": model.built_in_pid != os.getpid(),
        "build_s": round(wall, 2),
        "longest_wait_ms": round(float(late.max()), 1) if len(late) else None,
        "p999_wait_ms": round(float(np.percentile(late, 99.9)), 1) if len(late) else None,
        "waits_over_20ms": int((late > 20).sum()),
        "waits_over_100ms": int((late > 100).sum()),
        "waited_s": round(float(late[late > 5].sum()) / 1000, 2),
        "ticks": len(late),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reload", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="builds per mode, alternating (default 2)")
    p.add_argument("--json", type=Path, default=None, help="JSON result (default var/bench/reload-<time>.json)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    os.environ.setdefault("RECS_SERVING_LOAD", "false")  # no loader thread: this builds itself
    import django

    django.setup()
    from shop.recs.engine import load_snapshot
    from shop.recs.export import snapshot_latest
    from shop.recs.models import ModelVersion

    active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    snap = snapshot_latest()
    if active is None or snap is None:
        raise SystemExit("benchmarks.reload needs an active model version and a snapshot (train one first)")
    events = len(load_snapshot(snap).interactions)
    import torch  # noqa: F401  (imported once, outside the measured builds, as a serving process has it)

    console.print(f"Building model {active} on {snap.name} ({events:,} events), {args.rounds} rounds per mode")
    runs = []
    for r in range(args.rounds):
        for apart in (False, True):
            with console.status(f"round {r + 1}: {'apart' if apart else 'inline'}"):
                try:
                    runs.append(one_build(apart))
                except RuntimeError as exc:  # the version cannot be built (artifact missing or corrupt)
                    raise SystemExit(f"benchmarks.reload: {exc}") from None
            console.print(runs[-1])
    table = Table(title="A request thread's waits while a web process builds its pipeline")
    for col in ("mode", "build s", "longest wait ms", "p99.9 ms", "> 20 ms", "> 100 ms", "waited s"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for run in runs:
        table.add_row(
            run["mode"],
            f"{run['build_s']:.2f}",
            f"{run['longest_wait_ms']:.1f}",
            f"{run['p999_wait_ms']:.1f}",
            str(run["waits_over_20ms"]),
            str(run["waits_over_100ms"]),
            f"{run['waited_s']:.2f}",
        )
    console.print(table)
    inline = max(r["longest_wait_ms"] for r in runs if r["mode"] == "inline")
    apart = max(r["longest_wait_ms"] for r in runs if r["mode"] == "apart")
    console.print(
        f"Longest wait, worst round: inline {inline:.1f} ms, apart {apart:.1f} ms ({inline / max(apart, 0.1):.1f}x)"
    )
    out = args.json or BENCH_DIR / f"reload-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"version": active, "snapshot": snap.name, "events": events, "runs": runs}, indent=2))
    console.print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The price of arriving at a cold core: ``python -m benchmarks.idle``.

One small piece of work, the kind a request does (reading a few thousand Python objects spread over a large
heap), timed three ways in the same run, interleaved round by round: back to back (the baseline: the third
piece in a row, its memory in the caches), after the thread slept for ``--gap-ms`` (its core idle, as between
the paced benchmarks' requests), and after it spun for the same gap (its core kept busy by this thread,
which touches almost no memory meanwhile). CPU time of the piece only (``time.thread_time``), medians and p90
over ``--rounds``, each beside the baseline as a ratio.

Where either gap costs several times the baseline, the piece's memory left the caches during the gap: on a
machine shared with others (a virtual machine's host and other guests, a hyperthread sibling) what a
process does not touch for some milliseconds is evicted, whether its own core sleeps (sleeping) or not
(spinning). A paced benchmark's CPU per request, and its latency, then include that refill, which a closed
loop (no gaps) does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from .harness import console, cpu_model, percentile

MODES = ("back to back", "after sleeping", "after spinning")


def _heap(objects: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": str(i)} for i in range(objects)]


def _work(heap: list[dict[str, Any]], step: int) -> int:
    total = 0
    for i in range(0, len(heap), step):
        total += heap[i]["id"]
    return total


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure(*, objects: int, touch: int, gap_s: float, rounds: int) -> dict[str, dict[str, float]]:
    """CPU ms of one ``touch``-object walk over a heap of ``objects``, per mode: median and p90."""
    heap = _heap(objects)
    step = max(1, objects // touch)
    samples: dict[str, list[float]] = {m: [] for m in MODES}

    def piece() -> float:
        t = time.thread_time()
        _work(heap, step)
        return 1000 * (time.thread_time() - t)

    for _ in range(rounds):  # the modes interleaved, so a slow minute of the machine falls on all three
        time.sleep(gap_s)
        samples["after sleeping"].append(piece())
        piece()  # the piece after a cold one still refills part of what it reads: the baseline is the third
        samples["back to back"].append(piece())
        _spin(gap_s)
        samples["after spinning"].append(piece())
    out = {}
    for mode, xs in samples.items():
        xs.sort()
        out[mode] = {"median_ms": round(statistics.median(xs), 4), "p90_ms": round(percentile(xs, 90), 4)}
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=300_000, help="objects on the heap (300,000)")
    parser.add_argument("--touch", type=int, default=3_000, help="objects one piece of work reads (3,000)")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="idle or busy gap before each piece (20 ms)")
    parser.add_argument("--rounds", type=int, default=100, help="pieces of work per mode (100)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not 1_000 <= args.objects <= 10_000_000:
        parser.error("--objects must be between 1,000 and 10,000,000")
    if not 1 <= args.touch <= args.objects:
        parser.error("--touch must be between 1 and --objects")
    if not 0 < args.gap_ms <= 1_000:
        parser.error("--gap-ms must be in (0, 1000]")
    if not 5 <= args.rounds <= 100_000:
        parser.error("--rounds must be between 5 and 100,000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with console.status(f"{args.rounds} rounds of three modes, {args.gap_ms:g} ms gaps..."):
        figures = measure(objects=args.objects, touch=args.touch, gap_s=args.gap_ms / 1000, rounds=args.rounds)
    base = figures["back to back"]["median_ms"]
    table = Table(
        title=f"Reading {args.touch:,} of {args.objects:,} objects, CPU ms ({cpu_model()}; {args.rounds} rounds)"
    )
    for col in ("mode", "median", "p90", "median x back to back"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, row in figures.items():
        table.add_row(mode, f"{row['median_ms']:.3f}", f"{row['p90_ms']:.3f}", f"{row['median_ms'] / base:.2f}")
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"args": {k: str(v) for k, v in vars(args).items()}, "cpu_model": cpu_model(), "modes": figures}
        args.json.write_text(json.dumps(result, indent=2))
        console.print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

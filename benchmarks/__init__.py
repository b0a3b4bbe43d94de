"""Benchmark commands (not timed tests): they print figures, compare with a baseline measured in
the same run, and write JSON under ``var/bench/``.

- ``python -m benchmarks.ingest``: events/s stored in PostgreSQL through batched ``POST /api/events``
  against the same events posted one per request.
- ``python -m benchmarks.pages``: product page latency (p50/p90/p99/max) and throughput under 50
  concurrent clients against gunicorn, paced and closed-loop, against a static file as the floor.

Each run starts its own throwaway PostgreSQL and gunicorn on loopback ports (``benchmarks.harness``)
and tears them down when it ends.
"""

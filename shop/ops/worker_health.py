"""Worker health check: ``python -m shop.ops.worker_health [--max-age S]``.

Healthy when the heartbeat file (``WORKER_HEARTBEAT_FILE``) was refreshed within ``--max-age`` seconds
(default ``WORKER_HEARTBEAT_MAX_AGE_S`` or 60). Reads one small file: no Django, no broker round trip,
so it answers even while a ``--pool solo`` worker is busy with a long task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shop.ops.worker_health", description=__doc__.split("\n\n")[0])
    p.add_argument("--file", default=os.environ.get("WORKER_HEARTBEAT_FILE", "/tmp/worker-heartbeat"))  # noqa: S108  # nosec B108  # per container
    p.add_argument("--max-age", type=float, default=float(os.environ.get("WORKER_HEARTBEAT_MAX_AGE_S", "60")))
    args = p.parse_args(argv)
    path = Path(args.file)
    try:
        beat = json.loads(path.read_text())
        age = time.time() - float(beat["at"])
    except FileNotFoundError:
        print(f"unhealthy: no heartbeat file {path} (worker not started or not ready)", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError, OSError) as e:
        print(f"unhealthy: unreadable heartbeat file {path}: {e}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(
            f"unhealthy: last heartbeat {age:.0f}s ago (> {args.max_age:.0f}s) from {beat.get('hostname')}",
            file=sys.stderr,
        )
        return 1
    print(f"healthy: {beat.get('hostname')} pid {beat.get('pid')}, heartbeat {age:.1f}s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())

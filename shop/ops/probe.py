"""Container health check without curl in the image: ``python -m shop.ops.probe URL [--timeout S]``.

Exit 0 on a 2xx answer, 1 otherwise (printing the status and the start of the body)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shop.ops.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args(argv)
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as resp:  # noqa: S310 - URL from the operator  # nosec B310
            status, body = resp.status, resp.read(500)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read(500)
    except (OSError, ValueError) as e:
        print(f"{args.url}: {e}", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        return 0
    print(f"{args.url}: HTTP {status} {body.decode(errors='replace')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

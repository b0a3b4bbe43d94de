#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing: PostgreSQL and Redis
# servers (started per test session on loopback by pytest-postgresql / pytest-redis) and Debian's
# Chromium (driven headless by Playwright). Uses apt-get as root, or sudo when available.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # load generator of `make bench-pages`
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)  # the benchmarks' --server nginx
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)  # validates docker/compose.yaml (no engine needed)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "Installing system packages: ${missing[*]}"
if [ "$(id -u)" = "0" ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "error: missing ${missing[*]} and not root (no sudo): install them with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

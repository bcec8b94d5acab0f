#!/usr/bin/env bash
# Creates benchmarks/.peers/NAME, a virtualenv holding one peer library, for throughput.py.
set -euo pipefail
peer="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.peers/$peer"
case "$peer" in
  huey) packages="huey" ;;
  arq) packages="arq" ;;
  procrastinate) packages="procrastinate[psycopg] asyncpg" ;;
  pgqueuer) packages="pgqueuer asyncpg" ;;
  saq) packages="saq[redis] typing_extensions" ;;  # saq 0.26 imports it undeclared
  taskiq) packages="taskiq taskiq-redis" ;;
  *) echo "unknown peer: $peer" >&2; exit 2 ;;
esac
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet $packages

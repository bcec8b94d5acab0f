#!/usr/bin/env bash
# Creates benchmarks/.peers/NAME, a virtualenv holding one peer library, for throughput.py;
# for graphile (Node 20 and npm), a folder with graphile-worker from the npm registry.
set -euo pipefail
peer="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.peers/$peer"
if [ "$peer" = graphile ]; then
  mkdir -p "$venv"
  cd "$venv"
  echo '{"name": "conveyor-bench-graphile", "private": true}' > package.json
  npm install --silent --no-audit --no-fund graphile-worker@0.17.3
  exit 0
fi
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

#!/usr/bin/env bash
# Creates benchmarks/.peers/NAME, a virtualenv holding one peer library, for throughput.py;
# for graphile and bullmq (Node 20 and npm), a folder with graphile-worker or BullMQ from the
# npm registry (BULLMQ_VERSION picks another BullMQ release, e.g. 6.7.0).
set -euo pipefail
peer="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.peers/$peer"
case "$peer" in
  graphile) npm_package="graphile-worker@0.17.3" ;;
  bullmq) npm_package="bullmq@${BULLMQ_VERSION:-5.81.5}" ;;
  *) npm_package="" ;;
esac
if [ -n "$npm_package" ]; then
  mkdir -p "$venv"
  cd "$venv"
  echo "{\"name\": \"conveyor-bench-$peer\", \"private\": true}" > package.json
  npm install --silent --no-audit --no-fund "$npm_package"
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

#!/usr/bin/env bash
# Recovery after the cluster is SIGKILLed, with production timings (issue #7).
# Runs the chaos test of orders/tests/test_recovery.py with more rounds and prints its
# measurements ("recovery: {...}" and "stall detected after ..."). Broker: the ORM broker on
# SQLite by default; with DATABASE_URL and REDIS_URL set, PostgreSQL and Redis.
#   bench/recovery.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RECOVERY_CHAOS_ROUNDS=${1:-12} .venv/bin/python -m pytest orders/tests/test_recovery.py \
  -q -s -p no:cacheprovider "${@:2}" 2>&1 | grep -E "^recovery:|stall detected|passed|failed"

#!/usr/bin/env bash
# Day two of the demo (issue #7): `make run` in a terminal (tmux), buy with every payment method
# in headless Chromium, stop it with Ctrl-C and time the stop; ROUNDS times in a row.
# Needs tmux and Debian's chromium. Usage: bench/demo_restarts.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
session=reseller-demo-restarts
# The demo's processes: those of this checkout (a test's cluster elsewhere does not count).
alive() {
  local pid
  for pid in $(pgrep -f "manage.py (qcluster|runserver)|fakes\.(supplier|toncenter|cryptopay|stripe)|bin/run-demo"); do
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$PWD" ]] && return 0
  done
  return 1
}
if alive; then echo "the demo is already running: stop it first" >&2; exit 2; fi
failures=0
for round in $(seq 1 "$rounds"); do
  tmux new-session -d -s "$session" "make run"
  for _ in $(seq 1 120); do
    curl -fs -o /dev/null http://127.0.0.1:8000/ && break
    sleep 0.5
  done
  sleep 2  # the cluster and the fakes come up beside the web server
  echo "== round $round"
  .venv/bin/python bench/demo_payments.py --methods sandbox ton cryptopay stripe || failures=$((failures + 1))
  started=$(date +%s.%N)
  tmux send-keys -t "$session" C-c
  while alive; do sleep 0.05; done
  echo "Ctrl-C -> every process gone: $(echo "$(date +%s.%N) - $started" | bc | cut -c1-4) s"
  tmux kill-session -t "$session" 2>/dev/null || true
done
exit $(( failures > 0 ))

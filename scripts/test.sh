#!/usr/bin/env bash
# Every test, in the order that fails fastest: data validation, unit and action tests,
# training, conversation tests, end-to-end tests against real servers and a real browser, then the
# production profile's replica, fault and soak tests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

step() { printf '\n==> %s\n' "$*"; }

if ! command -v chromium >/dev/null; then
  step "Installing Chromium for the browser tests"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -q && apt-get install -y -q chromium chromium-driver
  else
    sudo apt-get update -q && sudo apt-get install -y -q chromium chromium-driver
  fi
fi

step "rasa data validate"
"$BIN/rasa" data validate --fail-on-warnings

# Training runs beside the unit tests: they mostly wait on PostgreSQL and SQLite, so the two
# share 2 cores well and the whole run is several minutes shorter.
step "rasa train in the background (skipped when nothing changed), log in var/log/train.log"
mkdir -p var/log
make --no-print-directory train > var/log/train.log 2>&1 &
TRAIN_PID=$!
trap 'kill "$TRAIN_PID" 2>/dev/null || true' EXIT

step "pytest: shop backend, actions, web pages"
"$BIN/pytest" tests/unit tests/actions tests/web

step "waiting for rasa train"
if ! wait "$TRAIN_PID"; then
  tail -n 40 var/log/train.log
  echo "rasa train failed: the whole log is var/log/train.log"
  exit 1
fi

step "rasa test: conversation tests"
rm -rf results
"$BIN/rasa" test core --model models/shop.tar.gz --stories tests \
  --fail-on-prediction-errors --out results

step "pytest: end-to-end (REST, socket.io, browser)"
"$BIN/pytest" tests/e2e

# Last: the slowest, and they need the local PostgreSQL, Redis and RabbitMQ.
step "pytest: production profile (two Rasa replicas, faults, 100 x 20 soak)"
"$BIN/pytest" tests/production

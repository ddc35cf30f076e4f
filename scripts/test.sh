#!/usr/bin/env bash
# Every test, in the order that fails fastest: data validation, unit and action tests,
# training, conversation tests, then end-to-end tests against real servers and a real browser.
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

step "pytest: shop backend, actions, web pages"
"$BIN/pytest" tests/unit tests/actions tests/web

step "rasa train (skipped when nothing changed)"
make --no-print-directory train

step "rasa test: conversation tests"
rm -rf results
"$BIN/rasa" test core --model models/shop.tar.gz --stories tests \
  --fail-on-prediction-errors --out results

step "pytest: end-to-end (REST, socket.io, browser)"
"$BIN/pytest" tests/e2e

#!/usr/bin/env bash
# Starts the action server, the Rasa server, the shop front and the background worker; Ctrl-C stops all four.
# SHOP_PROFILE=production runs them on PostgreSQL, Redis and RabbitMQ (see scripts/profile.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/profile.sh

# Creates or upgrades the shop schema (migrations) and seeds the demo shop into an empty catalog.
"$BIN/python" -m shop seed --if-empty

# The action server runs on ACTION_SERVER_PORT behind the action balancer on ACTION_PORT (where Rasa calls
# it): while it is down, failing or hung the shopper gets an honest message and an offer of a person
# instead of silence (ops/action_fallback.py); it is started again if it stops.
ACTION_SERVER_PORT=${ACTION_SERVER_PORT:-$((ACTION_PORT + 1))}
start_action_server supervise "$ACTION_SERVER_PORT"
start balancer-actions.log "$BIN/python" -m ops.balancer --listen "$ACTION_HOST:$ACTION_PORT" --action-fallback \
  --timeout "${ACTION_TIMEOUT_SECONDS:-4}" --backend "http://$ACTION_HOST:$ACTION_SERVER_PORT"
start_rasa start "$RASA_HOST" "$RASA_PORT"
start web.log "$BIN/python" -m web
# Cart reminders, stock alerts and lead delivery: jobs kept in the shop database (shop/worker.py).
start worker.log "$BIN/python" -m shop worker

echo "Loading the model (profile: $SHOP_PROFILE, logs in $SHOP_LOG_DIR/)..."
wait_for_model "http://$RASA_HOST:$RASA_PORT"

echo
echo "  The shop assistant is ready: open http://localhost:$WEB_PORT and click the chat bubble."
echo "  Rasa API: http://$RASA_HOST:$RASA_PORT   action server: http://$ACTION_HOST:$ACTION_PORT"
echo "  Press Ctrl-C to stop."
wait_for_any_exit

#!/usr/bin/env bash
# Starts the action server, the Rasa server, the shop front and the background worker; Ctrl-C stops all four.
# SHOP_PROFILE=production runs them on PostgreSQL, Redis and RabbitMQ (see scripts/profile.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/profile.sh

# Creates or upgrades the shop schema (migrations) and seeds the demo shop into an empty catalog.
"$BIN/python" -m shop seed --if-empty

start_action_server start "$ACTION_PORT"
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

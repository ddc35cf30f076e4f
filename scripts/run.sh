#!/usr/bin/env bash
# Starts the action server, the Rasa server and the shop front; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
RASA_HOST=${RASA_HOST:-127.0.0.1}
RASA_PORT=${RASA_PORT:-5005}
ACTION_PORT=${ACTION_PORT:-5055}
WEB_HOST=${WEB_HOST:-127.0.0.1}
WEB_PORT=${WEB_PORT:-8000}
RASA_ENDPOINTS=${RASA_ENDPOINTS:-endpoints.yml}
RASA_MODEL=${RASA_MODEL:-models/shop.tar.gz}
RASA_CORS_ORIGINS=${RASA_CORS_ORIGINS:-http://localhost:$WEB_PORT http://127.0.0.1:$WEB_PORT}
export WEB_HOST WEB_PORT
export RASA_SOCKET_URL=${RASA_SOCKET_URL:-http://127.0.0.1:$RASA_PORT}
export SHOP_PUBLIC_URL=${SHOP_PUBLIC_URL:-http://localhost:$WEB_PORT}
mkdir -p var/log

"$BIN/python" -m shop seed --if-empty

pids=()
stop_all() {
  trap - EXIT INT TERM
  echo "Stopping..."
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM

"$BIN/rasa" run actions --port "$ACTION_PORT" >var/log/actions.log 2>&1 &
pids+=($!)
# shellcheck disable=SC2086 # the origins are a space-separated list on purpose
"$BIN/rasa" run --model "$RASA_MODEL" --enable-api -i "$RASA_HOST" -p "$RASA_PORT" \
  --endpoints "$RASA_ENDPOINTS" --credentials credentials.yml --cors $RASA_CORS_ORIGINS \
  >var/log/rasa.log 2>&1 &
pids+=($!)
"$BIN/python" -m web >var/log/web.log 2>&1 &
pids+=($!)

echo "Loading the model (logs in var/log/)..."
until curl -fs "http://$RASA_HOST:$RASA_PORT/status" 2>/dev/null | grep -q '"model_file"'; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "A server stopped during start-up; the end of its log:" >&2
      tail -n 20 var/log/*.log >&2
      exit 1
    fi
  done
  sleep 1
done

echo
echo "  The shop assistant is ready: open http://localhost:$WEB_PORT and click the chat bubble."
echo "  Rasa API: http://$RASA_HOST:$RASA_PORT   action server: http://localhost:$ACTION_PORT"
echo "  Press Ctrl-C to stop."
wait -n "${pids[@]}"
echo "A server stopped unexpectedly; see var/log/." >&2
exit 1

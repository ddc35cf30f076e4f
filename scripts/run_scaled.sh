#!/usr/bin/env bash
# Scale-out on one machine: RASA_REPLICAS Rasa servers and ACTION_REPLICAS action servers (2 each by
# default), each group behind a round-robin balancer (ops/balancer.py) on the usual ports, plus the
# shop front. Always the production profile: replicas share PostgreSQL, Redis and RabbitMQ.
# A replica that stops is started again; while no action server can answer, the action balancer
# gives the shopper an honest message and an offer of a person within ACTION_TIMEOUT_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
export SHOP_PROFILE=production
source scripts/profile.sh

RASA_REPLICAS=${RASA_REPLICAS:-2}
ACTION_REPLICAS=${ACTION_REPLICAS:-2}
# The replicas' own ports (space-separated); by default the ones right after the balancers' ports.
RASA_REPLICA_PORTS=${RASA_REPLICA_PORTS:-$(seq -s ' ' $((RASA_PORT + 1)) $((RASA_PORT + RASA_REPLICAS)))}
ACTION_REPLICA_PORTS=${ACTION_REPLICA_PORTS:-$(seq -s ' ' $((ACTION_PORT + 1)) $((ACTION_PORT + ACTION_REPLICAS)))}
ACTION_TIMEOUT_SECONDS=${ACTION_TIMEOUT_SECONDS:-4}

"$BIN/python" -m shop seed --if-empty

action_backends=()
for port in $ACTION_REPLICA_PORTS; do
  start_action_server supervise "$port"
  action_backends+=(--backend "http://$ACTION_HOST:$port")
done
start balancer-actions.log "$BIN/python" -m ops.balancer --listen "$ACTION_HOST:$ACTION_PORT" \
  --action-fallback --timeout "$ACTION_TIMEOUT_SECONDS" "${action_backends[@]}"

rasa_backends=()
replica_urls=()
for port in $RASA_REPLICA_PORTS; do
  start_rasa supervise 127.0.0.1 "$port"
  rasa_backends+=(--backend "http://127.0.0.1:$port")
  replica_urls+=("http://127.0.0.1:$port")
done
start balancer-rasa.log "$BIN/python" -m ops.balancer --listen "$RASA_HOST:$RASA_PORT" "${rasa_backends[@]}"
start web.log "$BIN/python" -m web
# One background worker is enough (jobs are claimed row by row, so more would be safe too); restarted if it stops.
supervise worker.log "$BIN/python" -m shop worker

echo "Loading the model in ${#replica_urls[@]} Rasa replicas (logs in $SHOP_LOG_DIR/)..."
wait_for_model "${replica_urls[@]}" "http://$RASA_HOST:$RASA_PORT"

echo
echo "  The shop assistant is ready: open http://localhost:$WEB_PORT and click the chat bubble."
echo "  Rasa API (balanced over ports $RASA_REPLICA_PORTS): http://$RASA_HOST:$RASA_PORT"
echo "  action servers (balanced over ports $ACTION_REPLICA_PORTS): http://$ACTION_HOST:$ACTION_PORT"
echo "  Press Ctrl-C to stop."
wait_for_any_exit

# Sourced by run.sh and run_scaled.sh: the settings of the chosen profile and the handling of the
# server processes. SHOP_PROFILE=default runs on SQLite with nothing to install; SHOP_PROFILE=production
# runs on PostgreSQL, Redis and RabbitMQ (every variable below is in README's settings table and in
# deploy/production.env.example).

BIN=.venv/bin
SHOP_PROFILE=${SHOP_PROFILE:-default}
RASA_HOST=${RASA_HOST:-127.0.0.1}
RASA_PORT=${RASA_PORT:-5005}
ACTION_HOST=${ACTION_HOST:-127.0.0.1}
ACTION_PORT=${ACTION_PORT:-5055}
WEB_HOST=${WEB_HOST:-127.0.0.1}
WEB_PORT=${WEB_PORT:-8000}
RASA_MODEL=${RASA_MODEL:-models/shop.tar.gz}
RASA_CORS_ORIGINS=${RASA_CORS_ORIGINS:-http://localhost:$WEB_PORT http://127.0.0.1:$WEB_PORT}
SHOP_LOG_DIR=${SHOP_LOG_DIR:-var/log}
export WEB_HOST WEB_PORT
export RASA_SOCKET_URL=${RASA_SOCKET_URL:-http://127.0.0.1:$RASA_PORT}
export RASA_URL=${RASA_URL:-http://127.0.0.1:$RASA_PORT}
export SHOP_PUBLIC_URL=${SHOP_PUBLIC_URL:-http://localhost:$WEB_PORT}

new_secret() {
  "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))'
}

case "$SHOP_PROFILE" in
  default)
    RASA_ENDPOINTS=${RASA_ENDPOINTS:-endpoints.yml}
    ;;
  production)
    RASA_ENDPOINTS=${RASA_ENDPOINTS:-endpoints.production.yml}
    export SHOP_DATABASE_URL=${SHOP_DATABASE_URL:-postgresql+psycopg2://postgres@127.0.0.1:5432/shop}
    # endpoints.production.yml: Rasa refuses to start with any of these unset, so each has a default.
    export ACTION_SERVER_URL=${ACTION_SERVER_URL:-http://127.0.0.1:$ACTION_PORT/webhook}
    export TRACKER_DB_HOST=${TRACKER_DB_HOST:-127.0.0.1}
    export TRACKER_DB_PORT=${TRACKER_DB_PORT:-5432}
    export TRACKER_DB_NAME=${TRACKER_DB_NAME:-rasa_tracker}
    export TRACKER_DB_LOGIN_DB=${TRACKER_DB_LOGIN_DB:-postgres}
    export TRACKER_DB_USER=${TRACKER_DB_USER:-postgres}
    export TRACKER_DB_PASSWORD=${TRACKER_DB_PASSWORD:-}
    export REDIS_HOST=${REDIS_HOST:-127.0.0.1}
    export REDIS_PORT=${REDIS_PORT:-6379}
    export REDIS_DB=${REDIS_DB:-1}
    export REDIS_PASSWORD=${REDIS_PASSWORD:-}
    export REDIS_KEY_PREFIX=${REDIS_KEY_PREFIX:-shop}
    # socket.io through Redis: an agent's message or a push reaches the shopper whichever replica holds
    # their socket (set SOCKETIO_REDIS_URL empty to keep emits in each process). The password goes into
    # a URL here: percent-encode characters such as @ or /.
    export SOCKETIO_REDIS_URL=${SOCKETIO_REDIS_URL-redis://${REDIS_PASSWORD:+:$REDIS_PASSWORD@}$REDIS_HOST:$REDIS_PORT/$REDIS_DB}
    export SOCKETIO_REDIS_CHANNEL=${SOCKETIO_REDIS_CHANNEL:-$REDIS_KEY_PREFIX-socketio}
    export RABBITMQ_HOST=${RABBITMQ_HOST:-127.0.0.1}
    export RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
    export RABBITMQ_USER=${RABBITMQ_USER:-guest}
    export RABBITMQ_PASSWORD=${RABBITMQ_PASSWORD:-guest}
    export RABBITMQ_QUEUE=${RABBITMQ_QUEUE:-rasa_events}
    # Secrets: without one from the environment each run makes its own, shared only by the processes
    # started here. Rasa's HTTP API then needs RASA_TOKEN; the action server needs ACTION_SERVER_TOKEN.
    export RASA_TOKEN=${RASA_TOKEN:-$(new_secret)}
    export ACTION_SERVER_TOKEN=${ACTION_SERVER_TOKEN:-$(new_secret)}
    ;;
  *)
    echo "SHOP_PROFILE must be 'default' or 'production', not '$SHOP_PROFILE'." >&2
    exit 2
    ;;
esac

# The Rasa HTTP API answers only with this token when it is set (the shop front sends it too).
RASA_AUTH_ARGS=()
if [ -n "${RASA_TOKEN:-}" ]; then
  RASA_AUTH_ARGS=(--auth-token "$RASA_TOKEN")
fi

mkdir -p "$SHOP_LOG_DIR"
pids=()
pid_files=()

# The servers started here, supervised ones included (their current process is in their .pid file).
all_server_pids() {
  local file
  echo "${pids[@]}"
  for file in "${pid_files[@]}"; do
    cat "$file" 2>/dev/null || true
  done
}

stop_all() {
  trap - EXIT INT TERM
  echo "Stopping..."
  local servers left _
  servers=$(all_server_pids)
  # shellcheck disable=SC2086 # one process id per word
  kill $servers 2>/dev/null || true
  # A Rasa server still loading its model acts on the signal only once the model is loaded.
  for _ in $(seq 10); do
    # shellcheck disable=SC2086
    left=$(ps -o pid= -p $servers 2>/dev/null || true)
    [ -z "$left" ] && break
    sleep 1
  done
  # shellcheck disable=SC2086
  [ -n "${left:-}" ] && kill -9 $left 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM

# start LOGNAME COMMAND...: run a server in the background, its output in $SHOP_LOG_DIR/LOGNAME.
start() {
  local log=$1
  shift
  "$@" >"$SHOP_LOG_DIR/$log" 2>&1 &
  pids+=($!)
}

# supervise LOGNAME COMMAND...: like start, but a server that stops is started again two seconds later
# (a replica's crash must not take the others down). Its current process id is in LOGNAME's .pid file.
supervise() {
  local log=$1
  shift
  : >"$SHOP_LOG_DIR/$log"
  pid_files+=("$SHOP_LOG_DIR/${log%.log}.pid")
  (
    child=
    trap 'kill "$child" 2>/dev/null; exit 0' TERM INT
    while true; do
      "$@" >>"$SHOP_LOG_DIR/$log" 2>&1 &
      child=$!
      echo "$child" >"$SHOP_LOG_DIR/${log%.log}.pid"
      wait "$child" || true
      echo "--- stopped; starting again in 2 s" >>"$SHOP_LOG_DIR/$log"
      sleep 2
    done
  ) &
  pids+=($!)
}

# The servers' commands; LAUNCH is start or supervise.
start_action_server() {  # LAUNCH PORT
  SANIC_HOST="$ACTION_HOST" "$1" "actions-$2.log" "$BIN/python" -m ops.action_server --actions actions --port "$2"
}

start_rasa() {  # LAUNCH HOST PORT
  # shellcheck disable=SC2086 # the origins are a space-separated list on purpose
  "$1" "rasa-$3.log" "$BIN/rasa" run --model "$RASA_MODEL" --enable-api -i "$2" -p "$3" \
    --endpoints "$RASA_ENDPOINTS" --credentials credentials.yml --cors $RASA_CORS_ORIGINS "${RASA_AUTH_ARGS[@]}"
}

# wait_for_model URL...: until every Rasa server has loaded its model, or fail if a server stopped.
wait_for_model() {
  local url pid
  for url in "$@"; do
    until curl -fs "$url/status${RASA_TOKEN:+?token=$RASA_TOKEN}" 2>/dev/null | grep -q '"model_file"'; do
      for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
          echo "A server stopped during start-up; the end of its log:" >&2
          tail -n 20 "$SHOP_LOG_DIR"/*.log >&2
          exit 1
        fi
      done
      sleep 1
    done
  done
}

# Runs until any server stops, which stops them all.
wait_for_any_exit() {
  wait -n "${pids[@]}"
  echo "A server stopped unexpectedly; see $SHOP_LOG_DIR/." >&2
  exit 1
}

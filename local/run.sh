#!/usr/bin/env bash
# `make local`: the whole demo on one machine, with neither Docker nor a Datadog account.
#
# MariaDB with the Agent's setup SQL, Datadog's test agent standing in for the Datadog Agent, the
# release service, and the load generator for DURATION (default 30s); then what a Datadog APM service
# page would show, per resource, from the spans the test agent received. Everything it starts is
# stopped on exit, Ctrl-C included. PORT=0 serves on a free port (the default is the Flask app's 5050).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30s}
RATE=${RATE:-50}
PORT=${PORT:-5050}
SERVICE=apm-demo
RELEASE=target/release
work=$(mktemp -d -t apm-demo-local-XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "interrupted: stopping everything"; exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for SECONDS WHAT COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "local: $what did not come up within ${seconds}s" >&2
    return 1
}

step() { printf '\n== %s\n' "$*"; }

step "MariaDB with the Datadog Agent's setup SQL (agent-config/mysql/datadog-user.sh)"
mysql_port=$(free_port)
mysql_socket=$work/mysqld.sock
mariadb-install-db --datadir="$work/mysql" --user=root --auth-root-authentication-method=socket \
    --skip-test-db >"$work/mariadb-install.log" 2>&1
mariadbd --no-defaults --datadir="$work/mysql" --user=root --socket="$mysql_socket" --port="$mysql_port" \
    --bind-address=127.0.0.1 --performance-schema=ON --pid-file="$work/mysqld.pid" >"$work/mariadbd.log" 2>&1 &
pids+=($!)
wait_for 60 MariaDB mariadb --no-defaults --socket="$mysql_socket" -uroot -e 'SELECT 1'
MYSQL_DATADOG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
export MYSQL_DATADOG_PASSWORD
MYSQL="mariadb --no-defaults --socket=$mysql_socket -uroot" sh agent-config/mysql/datadog-user.sh
queries=$(mariadb --no-defaults -h127.0.0.1 -P"$mysql_port" -udatadog -p"$MYSQL_DATADOG_PASSWORD" -N \
    -e "SHOW GLOBAL STATUS LIKE 'Queries'" | cut -f2)
echo "the datadog user reads the server's status (mysql.performance.queries source): Queries=$queries"

step "Datadog's test agent (ddapm-test-agent) in place of the Datadog Agent"
agent_port=$(free_port)
ENABLED_CHECKS=trace_count_header,meta_tracer_version_header,trace_content_length \
DD_POOL_TRACE_CHECK_FAILURES=true \
    .venv/bin/ddapm-test-agent --port "$agent_port" --otlp-http-port "$(free_port)" \
    --otlp-grpc-port "$(free_port)" >"$work/test-agent.log" 2>&1 &
pids+=($!)
wait_for 60 "the test agent" curl -fsS "http://127.0.0.1:$agent_port/test/traces"
echo "listening on http://127.0.0.1:$agent_port"

step "the service ($RELEASE/apm-demo), traces to the test agent"
HOST=127.0.0.1 PORT=$PORT DD_SERVICE=$SERVICE DD_ENV=local DD_TRACE_AGENT_URL="http://127.0.0.1:$agent_port" \
    LOG_FORMAT=json "$RELEASE/apm-demo" >"$work/app.log" 2>&1 &
app=$!
pids+=("$app")
wait_for 20 "the service" grep -q '"address"' "$work/app.log"
address=$(python3 -c 'import json, sys; print(next(json.loads(l)["address"] for l in open(sys.argv[1]) if "\"address\"" in l))' "$work/app.log")
echo "serving on http://$address (open it in a browser while the load runs)"

step "load: $RATE requests/s for $DURATION, each starting a Datadog trace"
"$RELEASE/loadgen" "http://$address" --rate "$RATE" --duration "$DURATION" --connections 8 \
    --trace-headers datadog --json >"$work/loadgen.json"

step "stopping the service (SIGTERM flushes its spans)"
kill -TERM "$app"
wait "$app" || true
grep '"stopped"' "$work/app.log" || true

step "what Datadog's APM service page would show for $SERVICE"
python3 local/summary.py --agent "http://127.0.0.1:$agent_port" --service "$SERVICE" \
    --loadgen "$work/loadgen.json" ${SUMMARY_JSON:+--json-out "$SUMMARY_JSON"}

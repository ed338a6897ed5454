#!/usr/bin/env bash
# `make local`: the whole demo on one machine, with neither Docker nor a Datadog account.
#
# MariaDB set up as the compose MySQL is (the Agent's user with Database Monitoring, the service's
# database and user), Datadog's test agent standing in for the Datadog Agent, the release service on
# that database, and the load generator for DURATION (default 30s, loadgen's default mix: the seed's
# routes and the database routes); then what a Datadog APM service page would show, per resource,
# from the spans the test agent received, and a statement DBM would sample, linked to its trace. Everything it starts is
# stopped on exit, Ctrl-C included; KEEP=1 leaves the test agent up until Ctrl-C. What the run leaves
# behind goes to OUT (default local/last-run): the logs, loadgen's summary, the traces (traces.json)
# and a page drawing each trace as a waterfall of its spans (traces.html). PORT=0 serves on a free
# port (the default is the Flask app's 5050). The binaries come from BIN_DIR (default: cargo's target
# directory, CARGO_TARGET_DIR honoured, /release). The service reads its fault flags from
# local/flags/flags.json (all off; edit it while a run goes to switch one). FAULT=<flag> (a key of that
# file) switches that flag on a third of the way into the load, in a copy of the file, and the summary
# compares before and during the fault, with the monitors that would have fired (docs/faults.md).
# EXPORTER (TRACE_EXPORTER of the service: opentelemetry-datadog, its default, or datadog-opentelemetry)
# chooses the crate that sends the service's spans. Next to traces.html goes service.html, the run's
# service page: graphs per resource, the service map, the slowest and failed traces (docs/local.md).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30s}
RATE=${RATE:-50}
PORT=${PORT:-5050}
OUT=${OUT:-local/last-run}
KEEP=${KEEP:-}
FAULT=${FAULT:-}
EXPORTER=${EXPORTER:-opentelemetry-datadog}
FLAGS=local/flags/flags.json
BIN_DIR=${BIN_DIR:-$(local/bin-dir.sh)}
SERVICE=apm-demo
TEST_AGENT=.venv/bin/ddapm-test-agent
work=$(mktemp -d -t apm-demo-local-XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "interrupted: stopping everything"; exit 130' INT TERM

fail() { # fail MESSAGE [LOG]: the cause, then the end of the log that has the details
    echo "local: $1" >&2
    if [[ -n ${2:-} && -s $2 ]]; then
        echo "local: the last lines of $2:" >&2
        tail -n 15 "$2" | sed 's/^/    /' >&2
    fi
    exit 1
}

free_port() { python3 local/ports.py; }

wait_for() { # wait_for SECONDS WHAT PID LOG COMMAND...: until COMMAND succeeds, or PID exits, or time is up
    local seconds=$1 what=$2 pid=$3 log=$4 status=0
    shift 4
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || status=$?
            fail "$what exited (status $status) before it was ready" "$log"
        fi
        ((SECONDS < deadline)) || fail "$what was not ready within ${seconds}s" "$log"
        sleep 0.1
    done
}

step() { printf '\n== %s\n' "$*"; }

# What the run needs, named before anything starts.
if [[ -n $FAULT ]]; then
    python3 -c 'import json, sys; sys.exit(sys.argv[2] not in json.load(open(sys.argv[1]))["flags"])' "$FLAGS" "$FAULT" ||
        fail "FAULT=$FAULT is not a flag of $FLAGS: $(python3 -c 'import json, sys; print(", ".join(json.load(open(sys.argv[1]))["flags"]))' "$FLAGS")"
fi
for binary in "$BIN_DIR/apm-demo" "$BIN_DIR/loadgen"; do
    [[ -x $binary ]] || fail "$binary is missing: \`make release\` builds it there (\`make local\` does it first)"
done
[[ -x $TEST_AGENT ]] || fail "$TEST_AGENT is missing: \`make venv\` installs it (\`make local\` does it first)"
command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || fail "mariadbd is missing: \`make mariadb\` installs it"
PATH=$PATH:/usr/sbin
mkdir -p "$OUT"
rm -f "$OUT"/{mariadb.log,test-agent.log,app.log,loadgen.json,traces.json,traces.html,service.html,summary.json,dbm-statements.txt}

# MariaDB and the test agent start side by side. MariaDB comes from the project's one launcher
# (local/mariadb_server.py), set up as the compose MySQL is at its first start: the server options of
# agent-config/mysql-conf/, then agent-config/mysql/*.sh run as the MySQL image runs them, on a free
# port. It prints one JSON line once the server answers, and stops the server when its standard
# input, a pipe from this script, closes: when this script exits, however it exits.
# (Bash gives the pipe's ends to no other child; it unsets MARIADB if the launcher exits, which it
# does early only when it fails.)
coproc MARIADB { exec python3 local/mariadb_server.py "$work/mariadb" --log "$OUT/mariadb.log"; }
mysql_pid=$MARIADB_PID
pids+=("$mysql_pid")
agent_port=$(free_port)
ENABLED_CHECKS=trace_count_header,meta_tracer_version_header,trace_content_length \
DD_POOL_TRACE_CHECK_FAILURES=true \
    "$TEST_AGENT" --port "$agent_port" --otlp-http-port "$(free_port)" \
    --otlp-grpc-port "$(free_port)" >"$OUT/test-agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")

step "Datadog's test agent (ddapm-test-agent) in place of the Datadog Agent"
wait_for 60 "the test agent" "$agent_pid" "$OUT/test-agent.log" curl -fsS "http://127.0.0.1:$agent_port/test/traces"
echo "listening on http://127.0.0.1:$agent_port"

step "MariaDB, set up as the MySQL container's first start sets it up (agent-config/mysql/*.sh)"
mariadb_report=
read -r -t 120 -u "${MARIADB[0]:-}" mariadb_report 2>/dev/null || true
if [[ -z $mariadb_report ]]; then
    kill "$mysql_pid" 2>/dev/null || true
    fail "MariaDB did not start (local/mariadb_server.py's message is above)" "$OUT/mariadb.log"
fi
# Read from its report through a pipe, never an argument: the passwords stay out of the process list.
{ read -r mysql_port; read -r MYSQL_APP_PASSWORD; read -r MYSQL_DATADOG_PASSWORD; } < <(python3 -c '
import json, sys
report = json.load(sys.stdin)
print(report["port"], report["passwords"]["MYSQL_APP_PASSWORD"], report["passwords"]["MYSQL_DATADOG_PASSWORD"], sep="\n")
' <<<"$mariadb_report")
# The Agent's user logs in from an option file only this user can read, not with -p on a command line.
(umask 077 && printf '[client]\nuser = datadog\npassword = "%s"\nhost = 127.0.0.1\nport = %s\n' \
    "$MYSQL_DATADOG_PASSWORD" "$mysql_port" >"$work/datadog.cnf")
echo "listening on 127.0.0.1:$mysql_port: the Agent's user \`datadog\` (with DBM's schema and procedures), the service's database and user \`apm_demo\`"

step "the service ($BIN_DIR/apm-demo), traces to the test agent through $EXPORTER, its database on MariaDB (DBM comments: full)"
flags_file=$PWD/$FLAGS
if [[ -n $FAULT ]]; then
    flags_file=$work/flags.json
    cp "$FLAGS" "$flags_file"
fi
echo "fault flags: $flags_file (all off$([[ -n $FAULT ]] && echo "; FAULT=$FAULT switches $FAULT on during the load"))"
TRACE_EXPORTER=$EXPORTER FLAGD_OFFLINE_FLAG_SOURCE_PATH=$flags_file FLAGD_OFFLINE_POLL_MS=100 HOST=127.0.0.1 PORT=$PORT DD_SERVICE=$SERVICE DD_ENV=local DD_TRACE_AGENT_URL="http://127.0.0.1:$agent_port" \
    MYSQL_HOST=127.0.0.1 MYSQL_PORT=$mysql_port MYSQL_PASSWORD=$MYSQL_APP_PASSWORD DD_DBM_PROPAGATION_MODE=full \
    LOG_FORMAT=json "$BIN_DIR/apm-demo" >"$OUT/app.log" 2>&1 &
app=$!
pids+=("$app")
wait_for 20 "the service (HOST=127.0.0.1 PORT=$PORT)" "$app" "$OUT/app.log" grep -q '"address"' "$OUT/app.log"
address=$(python3 -c 'import json, sys; print(next(json.loads(l)["address"] for l in open(sys.argv[1]) if "\"address\"" in l))' "$OUT/app.log")
echo "serving on http://$address (open it in a browser while the load runs)"

step "load: $RATE requests/s for $DURATION, each a trace that loadgen starts with its own client span"
echo "(latency here is client-side: loadgen's time from sending a request to reading its answer)"
"$BIN_DIR/loadgen" "http://$address" --rate "$RATE" --duration "$DURATION" --connections 8 \
    --trace-headers datadog --trace-agent "http://127.0.0.1:$agent_port" --json >"$OUT/loadgen.json" &
loadgen=$!
pids+=("$loadgen")
fault_args=()
if [[ -n $FAULT ]]; then
    # A third of the way into the load, FAULT's flag is switched on (the file replaced whole, as an
    # editor does); the service reads it within FLAGD_OFFLINE_POLL_MS (100 ms here).
    seconds=$(python3 -c 'import re, sys
units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
print(sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", sys.argv[1])))' "$DURATION")
    sleep "$(python3 -c 'import sys; print(float(sys.argv[1]) / 3)' "$seconds")"
    rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$app/status")
    fault_start=$(date +%s%N)
    python3 -c 'import json, os, sys
path, flag = sys.argv[1], sys.argv[2]
flags = json.load(open(path))
flags["flags"][flag]["state"] = "ENABLED"
with open(path + ".new", "w") as f:
    json.dump(flags, f, indent=2)
os.replace(path + ".new", path)' "$flags_file" "$FAULT"
    echo "FAULT=$FAULT: switched on at $(date -u -d "@$((fault_start / 1000000000))" +%H:%M:%S) UTC, $(printf %.1f "$(python3 -c 'import sys; print(float(sys.argv[1]) / 3)' "$seconds")") s into the load: $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["flags"][sys.argv[2]].get("metadata", {}).get("description", ""))' "$flags_file" "$FAULT")"
    fault_args=(--fault "$FAULT" --fault-start "$fault_start")
fi
wait "$loadgen" || {
    status=$?
    # Ctrl-C: loadgen ends by SIGINT once its summary is out (docs/loadgen.md), and bash, waiting
    # for it, does not run the INT trap then: stop here as the trap does.
    if ((status == 130)); then
        echo "interrupted: stopping everything"
        exit 130
    fi
    fail "loadgen failed (status $status): its message is above"
}
if [[ -n $FAULT ]]; then
    rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$app/status")
    echo "the service's resident memory: $((rss_before / 1024)) MiB when $FAULT went on, $((rss_after / 1024)) MiB at the end of the load"
fi

step "what the Datadog Agent's MySQL check and Database Monitoring read, as its \`datadog\` user"
datadog_sql() {
    mariadb --defaults-file="$work/datadog.cnf" --batch -N --raw -e "$1"
}
queries=$(datadog_sql "SHOW GLOBAL STATUS LIKE 'Queries'" | cut -f2)
echo "the server's status (mysql.performance.queries source): Queries=$queries"
# The statement samples DBM collects (the Agent reads events_statements_history_long): the app's,
# each with its comment, kept for the summary to match against the traces.
datadog_sql "SELECT SQL_TEXT FROM performance_schema.events_statements_history_long
             WHERE SQL_TEXT LIKE '/*dddb=%' ORDER BY EVENT_ID DESC LIMIT 200" >"$OUT/dbm-statements.txt"
echo "statement samples with the service's DBM comment: $(wc -l <"$OUT/dbm-statements.txt") (of the last ones the server keeps)"

step "stopping the service (SIGTERM flushes its spans)"
kill -TERM "$app"
wait "$app" || true
grep '"stopped"' "$OUT/app.log" || true

step "what Datadog's APM service page would show for $SERVICE"
python3 local/summary.py --agent "http://127.0.0.1:$agent_port" --service "$SERVICE" --exporter "$EXPORTER" \
    --loadgen "$OUT/loadgen.json" --out-dir "$OUT" --json-out "${SUMMARY_JSON:-$OUT/summary.json}" \
    --dbm-statements "$OUT/dbm-statements.txt" \
    ${fault_args[@]+"${fault_args[@]}"}

if [[ -n $KEEP ]]; then
    step "KEEP=$KEEP: the test agent stays up until Ctrl-C"
    echo "its traces: curl -s http://127.0.0.1:$agent_port/test/traces | python3 -m json.tool"
    echo "(spans sent to it now are kept too: DD_TRACE_AGENT_URL=http://127.0.0.1:$agent_port)"
    wait "$agent_pid" || true
fi

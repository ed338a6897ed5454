"""bench-database: what tracing costs the database routes, against a private MariaDB, in one run.

1. Instructions per request (callgrind, the service process only: the MariaDB server's work is not
   the service's cost) of `GET /api/visits/{id}` (an existing id), `POST /api/visits` and, for
   reference, the seed's `GET /api/apm`: untraced (DD_TRACE_ENABLED=false, DBM comments disabled),
   and traced by each exporter (TRACE_EXPORTER) without DBM comments and with them (full), so that
   the spans and the comment each show. Spans go to the null sink (null_agent.py). One run serves N
   requests of every route; one run per route serves the same plus `extra` more of that route: the
   difference divided by `extra` is the route's cost, start-up, schema and shutdown cancelling out.
   Two runs at a time (each counts its own process).
2. p50/p99 at a fixed rate (open loop) of the database routes' mix, untraced and traced (DBM full) by
   each exporter, with spans to the null sink and to Datadog's test agent, alternating rounds.
3. No span lost, with each exporter: the database mix traced to the test agent at the fault suite's
   rate (tests/faults.rs, 400/s), every request span and every query span counted against the
   requests sent, and, for the default exporter, against its own `spans_exported`/`spans_dropped`/
   `spans_failed` (its "stopped" line; datadog-opentelemetry reports its queue in its own telemetry).
   A lost or dropped span exits 1.
"""

import argparse
import json
import os
import tempfile
import time
import urllib.request

from bench_instructions import SERVICE, measure
from common import (EXPORTERS, LOAD_CPU, SERVICE_CPU, MariaDb, Process, binary, free_port, loadgen, median, mode_env,
                    null_sink, test_agent, wait_for_port)

# The database routes as loadgen's default mix has them (ids drawn among rows that exist: SEED_ROWS).
DB_MIX = 'POST /api/visits {"page":"/b"}=1,GET /api/visits/{1..50}=2,GET /api/visits=1'
SEED_ROWS = 60
# Query spans per request of a route, where not 1 (src/routes/visits.rs: POST inserts, then reads the row back).
STATEMENTS = {"POST /api/visits": 2}
# (label, loadgen mix entry, expected status) for the instruction counts.
ROUTES = [("GET /api/apm (seed, no database)", "/api/apm", 200),
          ("GET /api/visits/{id}", "/api/visits/7", 200),
          ('POST /api/visits', 'POST /api/visits {"page":"/b"}', 201)]
# (label, common.MODES entry, DD_DBM_PROPAGATION_MODE)
MODES = [("untraced", "untraced", "disabled")] + [
    (f"{exporter}, DBM {label}", exporter, dbm) for exporter in EXPORTERS for label, dbm in (("off", "disabled"),
                                                                                           ("full", "full"))]


def db_service_env(db, agent_url, mode, dbm):
    return mode_env(mode, agent_url, {**db.env, "DD_DBM_PROPAGATION_MODE": dbm})


def seed_rows(db):
    """SEED_ROWS visits, so that every id the mixes ask for exists (ids start at 1 in a new table)."""
    db.sql("CREATE TABLE IF NOT EXISTS apm_demo.visits (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, "
           "page VARCHAR(255), user_agent VARCHAR(255), created_at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
    count = int(db.sql("SELECT COUNT(*) FROM apm_demo.visits"))
    if count < SEED_ROWS:
        db.sql("INSERT INTO apm_demo.visits (page, user_agent) VALUES "
               + ",".join(["('/seed', 'bench')"] * (SEED_ROWS - count)))


def instructions(db, sink_url, args):
    """{mode: {route label: instructions per request}}."""
    base = [(entry, status, args.requests) for _, entry, status in ROUTES]
    runs = []
    for mode, exporter, dbm in MODES:
        if mode not in args.modes:
            continue
        env = db_service_env(db, sink_url, exporter, dbm)
        runs.append(((mode, None), args.binary, env, base, 0))
        runs += [((mode, label), args.binary, env, base + [(entry, status, args.extra)], 0)
                 for label, entry, status in ROUTES]
    totals = measure(runs, args.jobs)
    figures = {}
    for mode in args.modes:
        figures[mode] = {label: (totals[(mode, label)] - totals[(mode, None)]) / args.extra for label, _, _ in ROUTES}
        for label, _, _ in ROUTES:
            print(f"  {mode:31} {label:34} {figures[mode][label]:>9,.0f} instructions per request", flush=True)
    return figures


def fixed_rate(db, agent_url, mode, args):
    """loadgen's summary of the database mix at args.rate for args.duration, against a fresh service."""
    port = free_port()
    env = {**db_service_env(db, agent_url, mode, "disabled" if mode == "untraced" else "full"), "PORT": str(port)}
    with Process([binary("apm-demo")], env=env, cpu=SERVICE_CPU):
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        loadgen(url, "-d", "1s", "-c", "8", "--rate", str(args.rate), "--mix", DB_MIX)  # warm-up: the pool's connections
        summary = loadgen(url, "-c", "8", "--rate", str(args.rate), "-d", f"{args.duration}s", "--mix", DB_MIX)
    if summary["errors"] or set(summary["status_codes"]) - {"200", "201"}:
        raise RuntimeError(f"the database mix answered {summary['status_codes']}")
    return summary


def server_connections(db):
    """Connections MariaDB has accepted since it started (a pool that keeps its connections opens few)."""
    return int(db.sql("SHOW GLOBAL STATUS LIKE 'Connections'").split()[1])


def stopped_line(log_path):
    with open(log_path) as f:
        for line in f:
            if '"stopped"' in line:
                return json.loads(line)
    raise RuntimeError(f"the service logged no \"stopped\" line ({log_path})")


def no_span_lost(db, exporter, args):
    """Counts of the completeness run with `exporter`; `lost` is what the check fails on."""
    agent_port = free_port()
    with test_agent(agent_port), tempfile.TemporaryDirectory() as tmp:
        agent_url = f"http://127.0.0.1:{agent_port}"
        port, log_path = free_port(), os.path.join(tmp, "app.log")
        env = {**db_service_env(db, agent_url, exporter, "full"), "PORT": str(port)}
        with open(log_path, "w") as log, Process([binary("apm-demo")], env=env, cpu=SERVICE_CPU, stdout=log):
            wait_for_port(port)
            connections = server_connections(db)
            summary = loadgen(f"http://127.0.0.1:{port}", "-c", "8", "--rate", str(args.fault_rate),
                              "-d", f"{args.duration}s", "--mix", DB_MIX, "--trace-headers", "datadog")
            connections = server_connections(db) - connections - 1  # the second look is a connection too
        # Leaving `with` sent SIGTERM: the service flushed its queue and logged its counts.
        stopped = stopped_line(log_path)
        with urllib.request.urlopen(f"{agent_url}/test/traces") as response:
            spans = [span for trace in json.load(response) for span in trace]
    queries = [s for s in spans if s["name"] == "mysql.query"]
    requests = {s["span_id"]: s for s in spans if s["name"] != "mysql.query"}
    children = {}
    for query in queries:
        if query.get("parent_id") in requests:
            children[query["parent_id"]] = children.get(query["parent_id"], 0) + 1
    missing_queries = sum(max(0, STATEMENTS.get(span["resource"], 1) - children.get(span_id, 0))
                          for span_id, span in requests.items())
    answered = sum(summary["status_codes"].values())
    counts = {"requests_sent": summary["requests"], "answered": answered, "errors": summary["errors"],
              "achieved_rate": summary["achieved_rate"], "request_spans": len(requests), "query_spans": len(queries),
              "query_spans_in_requests": sum(children.values()), "missing_query_spans": missing_queries,
              "spans_received": len(spans), "spans_exported": stopped.get("spans_exported"),
              "spans_dropped": stopped.get("spans_dropped"), "spans_failed": stopped.get("spans_failed"),
              "mysql_connections_opened": connections}
    # Missing spans only (a difference the other way, say a span the agent got twice, is not a loss). The
    # service's own counts are the default exporter's (none from datadog-opentelemetry).
    counts["lost"] = (max(0, answered - len(requests)) + missing_queries
                      + max(0, (counts["spans_exported"] or 0) - len(spans))
                      + (counts["spans_dropped"] or 0) + (counts["spans_failed"] or 0))
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests of each route in the base run")
    parser.add_argument("--extra", type=int, default=6000, help="how many more of one route the second run sends")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=200, help="fixed rate of the latency rounds, per second")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each fixed-rate run")
    parser.add_argument("--fault-rate", type=int, default=400, help="rate of the no-span-lost run (tests/faults.rs)")
    parser.add_argument("--binary", default=SERVICE, help="the service binary of the instruction counts")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time (default 2)")
    parser.add_argument("--instructions-only", action="store_true", help="part 1 only")
    parser.add_argument("--modes", nargs="+", choices=[mode for mode, _, _ in MODES], default=[m for m, _, _ in MODES],
                        help="the modes of part 1 (default all); any but all implies --instructions-only")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    started = time.monotonic()
    result = {}
    with MariaDb() as db:
        seed_rows(db)
        print(f"MariaDB {db.sql('SELECT VERSION()').strip()} on 127.0.0.1:{db.port} (CPU {LOAD_CPU}), "
              f"{SEED_ROWS} visits; the service on CPU {SERVICE_CPU}\n")

        print(f"1. instructions per request (callgrind, the service only; {args.requests} of each route, "
              f"then {args.extra} more of one; spans to the null sink; {args.jobs} runs at a time)", flush=True)
        sink, sink_url = null_sink()
        with sink:
            figures = instructions(db, sink_url, args)
        result["instructions_per_request"] = figures
        if len(args.modes) < len(MODES):
            return
        off = figures["untraced"]
        print(f"\n  {'route':34} {'untraced':>9}   " + "   ".join(f"{e + ', DBM off / full':>41}" for e in EXPORTERS))
        for label, _, _ in ROUTES:
            cells = []
            for exporter in EXPORTERS:
                on, dbm = figures[f"{exporter}, DBM off"][label], figures[f"{exporter}, DBM full"][label]
                cells.append(f"{on:>9,.0f} (+{on - off[label]:>7,.0f}) {dbm:>9,.0f} (x{dbm / off[label]:.2f})")
            print(f"  {label:34} {off[label]:>9,.0f}   " + "   ".join(f"{cell:>41}" for cell in cells))
        print("  (+n: what the spans add to untraced; xn: DBM full against untraced)")
        if args.instructions_only:
            return

        print(f"\n2. database mix at {args.rate}/s for {args.duration} s, open loop, 8 connections "
              f"({DB_MIX}); traced = DBM full", flush=True)
        # Alternating rounds: untraced, and each exporter to the null sink (the service's own cost) and to the
        # test agent (which decodes every span in Python on CPU 1, where MariaDB and loadgen run too).
        agent_port = free_port()
        sink, sink_url = null_sink()
        sides = [("untraced", "untraced", sink_url)] + [
            (f"{exporter}, {where}", exporter, url) for exporter in EXPORTERS
            for where, url in (("null sink", sink_url), ("test agent", f"http://127.0.0.1:{agent_port}"))]
        runs = {label: [] for label, _, _ in sides}
        with test_agent(agent_port), sink:
            for round_ in range(args.rounds):
                for label, mode, agent_url in sides:
                    s = fixed_rate(db, agent_url, mode, args)
                    runs[label].append(s)
                    print(f"  round {round_ + 1} {label:33} {s['requests']} requests at {s['achieved_rate']:.0f}/s  "
                          f"p50 {s['latency_ms']['p50']:.3f}  p99 {s['latency_ms']['p99']:.3f} ms", flush=True)
        latency = {}
        print(f"\n  medians of {args.rounds} rounds (ms), against untraced")
        for key in ("p50", "p99"):
            m = {label: median(r["latency_ms"][key] for r in runs[label]) for label, _, _ in sides}
            off = m["untraced"]
            print(f"  {key} untraced {off:.3f}")
            for label, _, _ in sides[1:]:
                print(f"      {label:33} {m[label]:>8.3f} = {m[label] / off:.2f}x {1000 * (m[label] - off):>+6.0f} us")
            latency[key] = {label + "_ms": value for label, value in m.items()}
        result["fixed_rate"] = {"rate": args.rate, "duration_s": args.duration, "rounds": args.rounds, **latency}

        print(f"\n3. no span lost: the database mix at {args.fault_rate}/s (tests/faults.rs) for {args.duration} s, "
              f"traced (DBM full) to Datadog's test agent", flush=True)
        result["no_span_lost"] = {}
        for exporter in EXPORTERS:
            counts = no_span_lost(db, exporter, args)
            result["no_span_lost"][exporter] = counts
            print(f"  {exporter}: {counts['requests_sent']} requests sent at {counts['achieved_rate']:.0f}/s, "
                  f"{counts['answered']} answered, {counts['errors']} failed")
            print(f"    test agent received {counts['spans_received']} spans: {counts['request_spans']} request spans, "
                  f"{counts['query_spans']} query spans ({counts['query_spans_in_requests']} children of a request "
                  f"span: {counts['missing_query_spans']} missing, POST counting 2, INSERT and SELECT; the one left is "
                  f"the schema's at start)")
            if counts["spans_exported"] is not None:
                print(f"    the service's stopped line: spans_exported {counts['spans_exported']}, spans_dropped "
                      f"{counts['spans_dropped']}, spans_failed {counts['spans_failed']}")
            print(f"    lost: {counts['lost']}")
            print(f"    MariaDB connections the service opened during the load: {counts['mysql_connections_opened']} "
                  f"({counts['mysql_connections_opened'] / counts['requests_sent']:.2f} per request)", flush=True)
    result["wall_s"] = round(time.monotonic() - started)
    print(f"\nwall time {result['wall_s']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if any(counts["lost"] or counts["errors"] for counts in result["no_span_lost"].values()):
        raise SystemExit("FAIL: spans lost (or requests failed) in a no-span-lost run")


if __name__ == "__main__":
    main()

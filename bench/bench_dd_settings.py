"""bench-dd-settings: what datadog-opentelemetry's optional work costs, setting by setting.

Datadog's own tracer (TRACE_EXPORTER=datadog-opentelemetry) reads its DD_* settings from the
environment, as every Datadog tracer does. Three of them switch off work this demo may not need:

- DD_INSTRUMENTATION_TELEMETRY_ENABLED=false: no instrumentation telemetry (the tracer's own
  configuration, health counters and error logs, to /telemetry/proxy/api/v2/apmtelemetry);
- DD_REMOTE_CONFIGURATION_ENABLED=false: no remote configuration (no poll of /v0.7/config every 5 s,
  so sampling rules and rate cannot be changed from Datadog while the service runs);
- DD_TRACE_STATS_COMPUTATION_ENABLED=false: no client-side stats (the Agent computes the trace
  metrics from the spans it receives, and the tracer no longer drops unsampled traces itself).

For its defaults, each setting alone, and the three together, in one run: instructions per request
(callgrind, as bench_instructions.py measures them: the difference of runs of N and N + extra
requests) of the seed route and, against a private MariaDB, of `GET /api/visits/{id}` (one query
span: client-side stats aggregate it by its peer tags); instructions per second of the idle service
(runs idle for `idle` and 3 x `idle` seconds: what a tracer does on its timers); and, without
valgrind, what the service sent the null sink in `window` seconds after 1,000 requests (requests and
bytes per endpoint), and its peak RSS.
"""

import argparse
import os
import time

from bench_database import SEED_ROWS, seed_rows
from bench_instructions import SERVICE, measure, send
from common import (LOAD_CPU, SERVICE_CPU, MariaDb, Process, free_port, mode_env, null_sink, sink_counts,
                    wait_for_port)

EXPORTER = "datadog-opentelemetry"
SETTINGS = ["DD_INSTRUMENTATION_TELEMETRY_ENABLED", "DD_REMOTE_CONFIGURATION_ENABLED",
            "DD_TRACE_STATS_COMPUTATION_ENABLED"]
VARIANTS = ([("defaults", {})] + [(f"{name}=false", {name: "false"}) for name in SETTINGS]
            + [("all three false", {name: "false" for name in SETTINGS})])


def traffic(variant_env, db_env, args):
    """{endpoint: (requests, bytes)} the service sent a fresh null sink in args.window seconds from
    its start (1,000 requests of the seed route first), and its peak RSS in MiB."""
    sink, sink_url = null_sink()
    with sink:
        port = free_port()
        env = {**mode_env(EXPORTER, sink_url, {**db_env, **variant_env}), "PORT": str(port)}
        started = time.monotonic()
        with Process([SERVICE], env=env, cpu=SERVICE_CPU) as svc:
            wait_for_port(port)
            send(f"http://127.0.0.1:{port}", 1000, "/api/apm", 200)
            time.sleep(max(0.0, args.window - (time.monotonic() - started)))
            peak = svc.rss_kib("VmHWM") / 1024
        counts = sink_counts(sink_url)  # after SIGTERM: what the tracer sends on its way out is in
    return {key: (n, counts["bytes"].get(key, 0)) for key, n in counts["requests"].items()}, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests of the first run")
    parser.add_argument("--extra", type=int, default=4000, help="how many more the second run sends")
    parser.add_argument("--idle", type=float, default=10, help="seconds of the shorter idle run")
    parser.add_argument("--window", type=float, default=30, help="seconds of the traffic runs")
    parser.add_argument("--no-database", action="store_true", help="the seed route only (no MariaDB)")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time (default 2)")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start", flush=True)
    db = None if args.no_database else MariaDb()
    try:
        db_env = {}
        routes = [("seed", "/api/apm", 200)]
        if db:
            db.start()
            seed_rows(db)
            db_env = {**db.env, "DD_DBM_PROPAGATION_MODE": "disabled"}
            routes.append(("GET /api/visits/{id}", "/api/visits/7", 200))
            print(f"MariaDB on CPU {LOAD_CPU}, {SEED_ROWS} visits", flush=True)
        sink, sink_url = null_sink()
        with sink:
            runs = []
            for variant, settings in VARIANTS:
                env = mode_env(EXPORTER, sink_url, {**db_env, **settings})
                for name, entry, status in routes:
                    for count in (args.requests, args.requests + args.extra):
                        runs.append(((variant, name, count), SERVICE, env, [(entry, status, count)], 0))
                for seconds in (args.idle, 3 * args.idle):
                    runs.append(((variant, "idle", seconds), SERVICE, env, [], seconds))
            totals = measure(runs, args.jobs)
        traffics = {variant: traffic(settings, db_env, args) for variant, settings in VARIANTS}
    finally:
        if db:
            db.stop()

    print(f"\n{EXPORTER}: instructions per request ({args.requests}, then {args.requests + args.extra} requests), "
          f"per idle second, and peak RSS after 1,000 requests")
    names = [name for name, _, _ in routes]
    print(f"  {'':44} " + " ".join(f"{name:>22}" for name in names) + f" {'idle, per second':>17} {'peak RSS':>9}")
    base = {}
    for variant, _ in VARIANTS:
        cells = []
        for name in names:
            value = (totals[(variant, name, args.requests + args.extra)] - totals[(variant, name, args.requests)]) \
                / args.extra
            base.setdefault(name, value)
            cells.append(f"{value:>11,.0f} ({value - base[name]:>+7,.0f})")
        idle = (totals[(variant, "idle", 3 * args.idle)] - totals[(variant, "idle", args.idle)]) / (2 * args.idle)
        base.setdefault("idle", idle)
        print(f"  {variant:44} " + " ".join(f"{cell:>22}" for cell in cells)
              + f" {idle:>17,.0f} {traffics[variant][1]:>5.1f} MiB")
    print(f"\nwhat the service sent the null sink in its first {args.window:g} s (1,000 requests, then idle, then "
          f"SIGTERM): requests / bytes per endpoint")
    endpoints = sorted({key for counts, _ in traffics.values() for key in counts})
    for variant, _ in VARIANTS:
        counts = traffics[variant][0]
        print(f"  {variant:44} " + "  ".join(f"{key} {counts[key][0]} / {counts[key][1]:,}"
                                             for key in endpoints if key in counts))
    print(f"\n{len(runs)} callgrind runs; {time.monotonic() - started:.0f} s; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()

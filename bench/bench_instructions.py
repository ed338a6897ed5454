"""bench-instructions: the service's instructions per request, untraced and traced by each exporter (callgrind).

Unlike requests per second, instruction counts do not depend on what else the machine is doing, so
they show small changes that throughput noise hides. The release binary runs under
`valgrind --tool=callgrind` (all threads: the request path, the exporter's threads, the log writer)
and receives N, then N + extra requests of a route; the difference of the two totals divided by
extra is the cost of one request, start-up and shutdown cancelling out. Spans go to the null sink
(null_agent.py, which answers what each exporter asks of an Agent). Modes: untraced
(DD_TRACE_ENABLED=false), traced by opentelemetry-datadog, traced by datadog-opentelemetry
(TRACE_EXPORTER); routes: the seed's /api/apm and a 404 (the database route: bench_database.py).

Work an exporter does on a timer (a poll, a flush every few seconds) is not per request: it lands
in the difference in proportion to how much longer the longer run lasts. `--idle` measures it
apart, as instructions per second of an idle service (runs idle for `idle` and 3 x `idle` seconds).

    python3 bench/bench_instructions.py                      # make bench-instructions
    python3 bench/bench_instructions.py --binary /tmp/before --modes opentelemetry-datadog
    python3 bench/bench_instructions.py --modes datadog-opentelemetry --env DD_TRACE_STATS_COMPUTATION_ENABLED=false

The CI gate (gate_instructions.py, `make bench-gate`) measures each route of bench/budget.json with
`measure` below.
"""

import argparse
import json
import os
import re
import subprocess
import tempfile
import time

from concurrent.futures import ThreadPoolExecutor

from common import LOAD_CPU, MODES, RELEASE, Process, free_port, mode_env, null_sink, pinned, wait_for_port

SERVICE = os.path.join(RELEASE, "apm-demo")
# Under callgrind a request runs tens of times slower, more on a busy machine: deadlines that let every
# request finish (a 503 or 504 would be another path's instructions, and fails the run). The limits'
# work per request is the same whatever their values.
PATIENT = {"REQUEST_TIMEOUT": "120s", "MYSQL_TIMEOUT": "120s", "MYSQL_QUERY_TIMEOUT": "120s"}
# (name, loadgen mix entry, expected status)
ROUTES = [("seed", "/api/apm", 200), ("404", "/no/such/page", 404)]


def send(base_url, requests, entry, status):
    """`requests` requests of a loadgen mix entry (`/api/apm`, `POST /api/visits {...}`) with loadgen,
    every one of which must answer `status`."""
    argv = pinned(LOAD_CPU, [os.path.join(RELEASE, "loadgen"), base_url, "--json", "--mix", f"{entry}=1",
                             "-c", "4", "-n", str(requests), "--timeout", "30s"])
    summary = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    if set(summary["status_codes"]) != {str(status)}:
        raise RuntimeError(f"{base_url} {entry} answered {summary['status_codes']}, not only {status}")


def total_instructions(binary, env, batches, idle=0.0):
    """Instructions `binary` executed, start to exit, serving `batches` [(entry, status, count)] one
    after the other on $PORT, then staying idle `idle` seconds."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary]
        with Process(argv, env={**PATIENT, **env, "PORT": str(port)}) as server:
            # Valgrind starting the binary on a busy shared machine: minutes, not seconds.
            wait_for_port(port, timeout=600)
            for entry, status, count in batches:
                if count:
                    send(f"http://127.0.0.1:{port}", count, entry, status)
            time.sleep(idle or 1.5)  # the exporters send what they hold within their 1 s flush interval
            # SIGTERM: a graceful exit, after which callgrind writes its totals (slowly on a busy machine).
            server.stop(timeout=300)
        with open(out) as f:
            match = re.search(r"^summary: (\d+)", f.read(), re.M)
    if not match:
        raise RuntimeError(f"callgrind wrote no summary for {binary}")
    return int(match.group(1))


def measure(runs, jobs):
    """{key: total instructions} of `runs` [(key, binary, env, batches, idle)], `jobs` at a time: each
    callgrind counts its own process's instructions, so runs side by side give the same figures,
    sooner (valgrind's start-up is most of a run)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = pool.map(lambda run: total_instructions(*run[1:]), runs)
        return dict(zip([run[0] for run in runs], totals))


def parse_env(pairs):
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env {pair}: expected NAME=VALUE")
        env[key] = value
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests of the first run")
    parser.add_argument("--extra", type=int, default=10000, help="how many more the second run sends")
    parser.add_argument("--binary", default=SERVICE, help="the service binary (default: the release build)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--routes", nargs="+", choices=[name for name, _, _ in ROUTES], default=None)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the service, e.g. one of an exporter's own (repeatable)")
    parser.add_argument("--idle", type=float, default=0, metavar="SECONDS",
                        help="also measure instructions per second of an idle service")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time (default 2)")
    args = parser.parse_args()
    routes = [r for r in ROUTES if args.routes is None or r[0] in args.routes]
    extra_env = parse_env(args.env)
    started = time.monotonic()
    sink, sink_url = null_sink()
    with sink:
        runs = []
        for mode in args.modes:
            env = mode_env(mode, sink_url, extra_env)
            for name, entry, status in routes:
                for count in (args.requests, args.requests + args.extra):
                    runs.append(((mode, name, count), args.binary, env, [(entry, status, count)], 0))
            if args.idle:
                for seconds in (args.idle, 3 * args.idle):
                    runs.append(((mode, "idle", seconds), args.binary, env, [], seconds))
        totals = measure(runs, args.jobs)
    print(f"instructions per request ({os.path.basename(args.binary)}"
          f"{', ' + ' '.join(args.env) if args.env else ''}; {args.requests} then {args.requests + args.extra} "
          f"requests, the difference / {args.extra}):")
    print(f"  {'route':8} " + " ".join(f"{mode:>22}" for mode in args.modes))
    for name, _, _ in routes:
        figures = {mode: (totals[(mode, name, args.requests + args.extra)] - totals[(mode, name, args.requests)])
                   / args.extra for mode in args.modes}
        print(f"  {name:8} " + " ".join(f"{figures[mode]:>22,.0f}" for mode in args.modes))
        if "untraced" in figures:
            for mode in args.modes[1:] if args.modes[0] == "untraced" else []:
                print(f"           {mode} adds {figures[mode] - figures['untraced']:,.0f} "
                      f"(traced / untraced = {figures[mode] / figures['untraced']:.3f})")
    if args.idle:
        print(f"idle: instructions per second (runs idle {args.idle:g} s and {3 * args.idle:g} s, the difference / "
              f"{2 * args.idle:g})")
        for mode in args.modes:
            per_second = (totals[(mode, "idle", 3 * args.idle)] - totals[(mode, "idle", args.idle)]) / (2 * args.idle)
            print(f"  {mode:22} {per_second:>12,.0f}")
    print(f"\n{len(runs)} callgrind runs in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()

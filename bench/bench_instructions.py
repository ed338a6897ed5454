"""bench-instructions: the service's instructions per request, traced and untraced (callgrind).

Unlike requests per second, instruction counts do not depend on what else the machine is doing, so
they show small changes that throughput noise hides. The release binary runs under
`valgrind --tool=callgrind` (all threads: the request path, the export thread, the log writer) and
receives N, then N + extra requests of /api/apm; the difference of the two totals divided by extra is
the cost of one request, start-up and shutdown cancelling out. Spans go to a null sink.

With --dd-trace-rs, the same for the fixture in dd_trace_rs/: the service's request span exported by
Datadog's own tracer instead (no log lines there, so compare what tracing adds, not the totals).

`per_request` is what the CI gate (gate_instructions.py, `make bench-gate`) measures for each route of
bench/budget.json.
"""

import argparse
import json
import os
import re
import subprocess
import tempfile
import time

from common import LOAD_CPU, RELEASE, ROOT, Process, free_port, null_sink, pinned, service_env, wait_for_port


def send(base_url, requests, path, status):
    """`requests` requests of `path` with loadgen, every one of which must answer `status`."""
    argv = pinned(LOAD_CPU, [os.path.join(RELEASE, "loadgen"), base_url, "--json", "--mix", f"{path}=1",
                             "-c", "4", "-n", str(requests), "--timeout", "30s"])
    summary = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    if set(summary["status_codes"]) != {str(status)}:
        raise RuntimeError(f"{base_url}{path} answered {summary['status_codes']}, not only {status}")


def total_instructions(binary, env, requests, path="/api/apm", status=200):
    """Instructions `binary` executed, start to exit, serving `requests` requests of `path` on $PORT."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary]
        with Process(argv, env={**env, "PORT": str(port)}) as server:
            wait_for_port(port, timeout=120)
            send(f"http://127.0.0.1:{port}", requests, path, status)
            time.sleep(1.5)  # the export thread sends the last batch within its 1 s flush interval
            server.stop()  # SIGTERM: a graceful exit, after which callgrind writes its totals
        with open(out) as f:
            return int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))


def per_request(subject, traced, sink_url, requests, extra, path="/api/apm", status=200):
    """Instructions per request: the totals of runs of `requests` and `requests + extra` requests, their
    difference divided by `extra` (start-up and shutdown cancel out)."""
    first = total_instructions(*subject(traced, sink_url), requests, path, status)
    second = total_instructions(*subject(traced, sink_url), requests + extra, path, status)
    return (second - first) / extra


def service(traced, sink_url):
    """This service, as the other benchmarks run it."""
    return os.path.join(RELEASE, "apm-demo"), service_env(sink_url, traced)


def dd_trace_rs(traced, sink_url):
    """The fixture in dd_trace_rs/: the same span exported by dd-trace-rs, and no log lines."""
    return DD_TRACE_RS, {"TRACED": "1" if traced else "0", "DD_TRACE_AGENT_URL": sink_url,
                         "DD_SERVICE": "apm-demo"}


DD_TRACE_RS = os.path.join(ROOT, "target", "dd_trace_rs", "release", "dd-trace-rs-fixture")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests of the first run")
    parser.add_argument("--extra", type=int, default=10000, help="how many more the second run sends")
    parser.add_argument("--dd-trace-rs", action="store_true",
                        help="also measure the dd-trace-rs fixture (build it first: make bench-dd-trace-rs)")
    args = parser.parse_args()
    subjects = [("this service", service)] + ([("dd-trace-rs fixture", dd_trace_rs)] if args.dd_trace_rs else [])
    sink, sink_url = null_sink()
    with sink:
        for name, subject in subjects:
            figures = {}
            for traced in (False, True):
                figures[traced] = per_request(subject, traced, sink_url, args.requests, args.extra)
                print(f"  {name}, {'traced  ' if traced else 'untraced'} {figures[traced]:>9,.0f} instructions per request",
                      flush=True)
            on, off = figures[True], figures[False]
            print(f"{name}: tracing adds {on - off:,.0f} instructions per request: traced / untraced = {on / off:.3f}\n")


if __name__ == "__main__":
    main()

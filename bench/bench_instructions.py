"""bench-instructions: the service's instructions per request, traced and untraced (callgrind).

Unlike requests per second, instruction counts do not depend on what else the machine is doing, so
they show small changes that throughput noise hides. The release binary runs under
`valgrind --tool=callgrind` (all threads: the request path, the export thread, the log writer) and
receives N, then N + extra requests of /api/apm; the difference of the two totals divided by extra is
the cost of one request, start-up and shutdown cancelling out. Spans go to a null sink.
"""

import argparse
import os
import re
import tempfile
import time

from common import RELEASE, Process, free_port, loadgen, null_sink, wait_for_port


def total_instructions(traced, requests, sink_url):
    """Instructions the service executed, start to exit, serving `requests` requests."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = {"HOST": "127.0.0.1", "PORT": str(port), "LOG_FORMAT": "json",
               "DD_TRACE_ENABLED": str(traced).lower(), "DD_TRACE_AGENT_URL": sink_url}
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", os.path.join(RELEASE, "apm-demo")]
        with Process(argv, env=env) as service:
            wait_for_port(port, timeout=120)
            loadgen(f"http://127.0.0.1:{port}", "-c", "4", "-n", str(requests), "--timeout", "30s", path="/api/apm")
            time.sleep(1.5)  # the export thread sends the last batch within its 1 s flush interval
            service.stop()  # SIGTERM: a graceful exit, after which callgrind writes its totals
        with open(out) as f:
            return int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests of the first run")
    parser.add_argument("--extra", type=int, default=10000, help="how many more the second run sends")
    args = parser.parse_args()
    sink, sink_url = null_sink()
    with sink:
        per_request = {}
        for traced in (False, True):
            first = total_instructions(traced, args.requests, sink_url)
            second = total_instructions(traced, args.requests + args.extra, sink_url)
            per_request[traced] = (second - first) / args.extra
            print(f"  {'traced  ' if traced else 'untraced'} {per_request[traced]:>9,.0f} instructions per request",
                  flush=True)
    on, off = per_request[True], per_request[False]
    print(f"\ntracing adds {on - off:,.0f} instructions per request: traced / untraced = {on / off:.3f}")


if __name__ == "__main__":
    main()

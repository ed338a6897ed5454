"""bench-export: export completeness with each exporter: spans received / requests sent, at a fixed
1000 requests/s for 30 s, with Datadog trace headers.

For each exporter (TRACE_EXPORTER), one run to a healthy Datadog test agent (the spans it holds at
the end: `/test/traces`), and one to the null sink counting the spans of every payload (null_agent.py
--count): the two must agree, which shows the sink the other benchmarks use receives what an agent
does. The service is stopped (SIGTERM: it flushes what it holds) before the counts are read; the
default exporter's "stopped" log line adds its own counts (exported, dropped, failed). A lost span
exits 1.
"""

import argparse
import json
import os
import tempfile
import urllib.request

from common import (SERVICE_CPU, EXPORTERS, Process, binary, free_port, loadgen, null_sink, service_env, sink_counts,
                    test_agent, wait_for_port)


def stopped_line(log_path):
    """The service's "stopped" line (the default exporter's counts are on it), or {}."""
    with open(log_path) as f:
        for line in f:
            if '"stopped"' in line:
                return json.loads(line)
    return {}


def one(exporter, agent_url, args):
    """(loadgen's summary, the service's stopped line) of one run against agent_url."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "app.log")
        port = free_port()
        env = {**service_env(agent_url, True, exporter=exporter), "PORT": str(port)}
        with open(log_path, "w") as log, Process([binary("apm-demo")], env=env, cpu=SERVICE_CPU, stdout=log):
            wait_for_port(port)
            summary = loadgen(f"http://127.0.0.1:{port}", "--rate", str(args.rate), "-c", "16",
                              "-d", f"{args.duration}s", "--trace-headers", "datadog")
        # Leaving `with` sent SIGTERM: the service flushed what it held before exiting.
        return summary, stopped_line(log_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=30)
    args = parser.parse_args()
    lost_any = False
    for exporter in EXPORTERS:
        received = {}
        for where in ("test agent", "null sink"):
            if where == "test agent":
                agent_port = free_port()
                agent_url = f"http://127.0.0.1:{agent_port}"
                with test_agent(agent_port):
                    summary, stopped = one(exporter, agent_url, args)
                    with urllib.request.urlopen(f"{agent_url}/test/traces") as response:
                        spans = sum(len(trace) for trace in json.load(response))
            else:
                sink, sink_url = null_sink(count=True)
                with sink:
                    summary, stopped = one(exporter, sink_url, args)
                    counts = sink_counts(sink_url)
                spans = counts["spans"]
                if counts["undecodable_payloads"]:
                    raise SystemExit(f"the null sink could not decode {counts['undecodable_payloads']} payloads")
            sent = summary["requests"]
            answered = sum(summary["status_codes"].values())
            received[where] = spans
            own = (f"; the service's counts: exported {stopped['spans_exported']}, dropped {stopped['spans_dropped']}, "
                   f"failed {stopped['spans_failed']}" if "spans_exported" in stopped else "")
            print(f"  {exporter:21} to the {where:10}: {sent} requests at {summary['achieved_rate']:.0f}/s, "
                  f"{summary['errors']} failed; {spans} spans received: {spans / sent:.4f} ({answered - spans} lost)"
                  f"{own}", flush=True)
            lost_any |= spans < answered or bool(stopped.get("spans_dropped")) or bool(stopped.get("spans_failed"))
        same = "the same count" if received["test agent"] == received["null sink"] else "DIFFERENT counts"
        print(f"  {exporter}: the test agent and the null sink received {same}\n")
    if lost_any:
        raise SystemExit("FAIL: spans lost")


if __name__ == "__main__":
    main()

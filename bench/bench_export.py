"""bench-export: export completeness with each exporter: spans received / requests sent, at a fixed
1000 requests/s for 30 s, with Datadog trace headers, to a healthy agent, a slow one and none.

For each exporter (TRACE_EXPORTER), four runs:
- to a healthy Datadog test agent (the spans it holds at the end: `/test/traces`);
- to the null sink counting the spans of every payload (null_agent.py --count): the two must agree,
  which shows the sink the other benchmarks use receives what an agent does;
- to a slow agent: the same sink answering every trace payload `--delay` seconds late (0.5 s, under
  both exporters' request timeouts): how much of the stream an exporter keeps when the Agent lags;
- to no agent (a port where nothing listens): every span is lost by definition; what counts is that
  requests are unaffected (failures, p99) and memory stays bounded (peak RSS).
The service is stopped (SIGTERM: it flushes what it holds) before the counts are read; the default
exporter's "stopped" log line adds its own counts (exported, dropped, failed). A span lost to a
healthy agent (the first two runs) exits 1; the last two are figures, not a pass or fail.
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
    """(loadgen's summary, the service's stopped line, its peak RSS in MiB) of one run against agent_url."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "app.log")
        port = free_port()
        env = {**service_env(agent_url, True, exporter=exporter), "PORT": str(port)}
        with open(log_path, "w") as log, Process([binary("apm-demo")], env=env, cpu=SERVICE_CPU,
                                                 stdout=log) as svc:
            wait_for_port(port)
            summary = loadgen(f"http://127.0.0.1:{port}", "--rate", str(args.rate), "-c", "16",
                              "-d", f"{args.duration}s", "--trace-headers", "datadog")
            peak = svc.rss_kib("VmHWM") / 1024
        # Leaving `with` sent SIGTERM: the service flushed what it held before exiting.
        return summary, stopped_line(log_path), peak


def run(exporter, where, args):
    """(summary, stopped line, peak RSS, spans received) of one run to `where`."""
    if where == "test agent":
        agent_port = free_port()
        agent_url = f"http://127.0.0.1:{agent_port}"
        with test_agent(agent_port):
            summary, stopped, peak = one(exporter, agent_url, args)
            with urllib.request.urlopen(f"{agent_url}/test/traces") as response:
                return summary, stopped, peak, sum(len(trace) for trace in json.load(response))
    if where == "no agent":
        return *one(exporter, None, args), 0  # service_env's default: a port where nothing listens
    sink, sink_url = null_sink(count=True, delay=args.delay if where == "slow agent" else 0.0)
    with sink:
        summary, stopped, peak = one(exporter, sink_url, args)
        counts = sink_counts(sink_url)
    if counts["undecodable_payloads"]:
        raise SystemExit(f"the null sink could not decode {counts['undecodable_payloads']} payloads")
    return summary, stopped, peak, counts["spans"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the slow agent takes per payload")
    args = parser.parse_args()
    wheres = ("test agent", "null sink", "slow agent", "no agent")
    print(f"{args.rate} requests/s for {args.duration} s, Datadog trace headers; the slow agent answers each "
          f"trace payload after {args.delay:g} s", flush=True)
    lost_healthy = False
    rows = []
    for exporter in EXPORTERS:
        received = {}
        for where in wheres:
            summary, stopped, peak, spans = run(exporter, where, args)
            answered = sum(summary["status_codes"].values())
            received[where] = spans
            own = (f"; its stopped line: exported {stopped['spans_exported']}, dropped {stopped['spans_dropped']}, "
                   f"failed {stopped['spans_failed']}" if "spans_exported" in stopped else "")
            rows.append((exporter, where, summary, answered, spans, peak))
            print(f"  {exporter:21} {where:10}: {summary['requests']} requests at {summary['achieved_rate']:.0f}/s, "
                  f"{summary['errors']} failed, p99 {summary['latency_ms']['p99']:.3f} ms, peak RSS {peak:.1f} MiB; "
                  f"{spans} spans received ({answered - spans} lost){own}", flush=True)
            if where in ("test agent", "null sink"):
                lost_healthy |= (spans < answered or bool(summary["errors"]) or bool(stopped.get("spans_dropped"))
                                 or bool(stopped.get("spans_failed")))
        same = "the same count" if received["test agent"] == received["null sink"] else "DIFFERENT counts"
        print(f"  {exporter}: the test agent and the null sink received {same}\n", flush=True)
    print(f"{'exporter':21} {'agent':10} {'sent':>7} {'failed':>6} {'p99 ms':>7} {'peak RSS':>9} {'received':>9} "
          f"{'lost':>7} {'lost %':>7}")
    for exporter, where, summary, answered, spans, peak in rows:
        print(f"{exporter:21} {where:10} {summary['requests']:>7} {summary['errors']:>6} "
              f"{summary['latency_ms']['p99']:>7.3f} {peak:>5.1f} MiB {spans:>9} {answered - spans:>7} "
              f"{100 * (answered - spans) / max(answered, 1):>6.1f}%")
    if lost_healthy:
        raise SystemExit("FAIL: spans lost (or requests failed) with a healthy agent")

if __name__ == "__main__":
    main()

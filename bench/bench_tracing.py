"""bench-tracing: what tracing costs the service, with each exporter, measured side by side in one run.

The same release binary untraced (DD_TRACE_ENABLED=false) and traced by each exporter (TRACE_EXPORTER:
opentelemetry-datadog, datadog-opentelemetry), in rounds that alternate the three (each round in
another order, so that a drift of the shared machine favours none): saturation (closed loop, 32
connections) with loadgen and with wrk, then p50/p99 at a fixed rate well below saturation (loadgen,
open loop), and the service's peak RSS (VmHWM) over the run. Beside requests per second, the CPU
time the service spent per request in the saturation run (all its threads, bench_ab.cpu_ns): on a
shared machine other work moves throughput by tens of percent, the CPU a request takes far less. Spans go to the null sink
(null_agent.py, which answers what each exporter asks of an Agent: the service's own cost), and, as a
second table, to Datadog's test agent (which decodes every span in Python on the load generator's core).
"""

import argparse
import os
import time

from bench_ab import cpu_ns
from common import EXPORTERS, MODES, free_port, loadgen, median, null_sink, service, test_agent, wrk


def measure(agent_url, mode, args):
    port = free_port()
    traced = mode != "untraced"
    with service(port, agent_url, traced, exporter=mode if traced else None) as svc:
        url, path = f"http://127.0.0.1:{port}", "/api/apm"
        loadgen(url, "-d", "1s", "-c", "8", path=path)  # warm-up
        before = cpu_ns(svc.popen.pid)
        closed = loadgen(url, "-c", "32", "-d", f"{args.duration}s", path=path)
        time.sleep(1.5)  # the exporters send what they hold within their 1 s flush interval
        cpu_us = (cpu_ns(svc.popen.pid) - before) / 1000 / closed["requests"]
        w = wrk(url + path, 32, args.duration)
        fixed = loadgen(url, "--rate", str(args.rate), "-c", "8", "-d", f"{args.duration}s", path=path)
        peak = svc.rss_kib("VmHWM")
    return {"loadgen_rps": closed["achieved_rate"], "wrk_rps": w["rps"], "p50": fixed["latency_ms"]["p50"],
            "p99": fixed["latency_ms"]["p99"], "rss_mib": peak / 1024, "cpu_us": cpu_us}


def rounds(agent_url, args):
    runs = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        order = MODES[round_ % len(MODES):] + MODES[:round_ % len(MODES)]
        for mode in order:
            r = measure(agent_url, mode, args)
            runs[mode].append(r)
            print(f"  round {round_ + 1} {mode:21} loadgen {r['loadgen_rps']:>9.0f}  wrk {r['wrk_rps']:>9.0f}  "
                  f"CPU {r['cpu_us']:.2f} us/request  p50 {r['p50']:.3f}  p99 {r['p99']:.3f} ms  "
                  f"peak RSS {r['rss_mib']:.1f} MiB", flush=True)
    return runs


def report(label, runs):
    print(f"\n{label}: medians of {len(runs['untraced'])} rounds; each exporter against untraced")
    print(f"  {'':22} {'untraced':>10} " + " ".join(f"{mode:>34}" for mode in EXPORTERS))
    for key, name, unit in [("loadgen_rps", "saturation, loadgen", "req/s"), ("wrk_rps", "saturation, wrk", "req/s"),
                            ("cpu_us", "CPU per request", "us"), ("p50", "p50 at fixed rate", "ms"), ("p99", "p99 at fixed rate", "ms"),
                            ("rss_mib", "peak RSS", "MiB")]:
        off = median(r[key] for r in runs["untraced"])
        cells = []
        for mode in EXPORTERS:
            on = median(r[key] for r in runs[mode])
            if unit == "req/s":
                cells.append(f"{on:>10,.0f} = {on / off:.3f} (cost {100 * (1 - on / off):4.1f}%)")
            elif unit == "us":
                cells.append(f"{on:>10.2f} us = {on / off:.3f}x")
            elif unit == "ms":
                cells.append(f"{on:>10.3f} ms, added {1000 * (on - off):+5.0f} us")
            else:
                cells.append(f"{on:>10.1f} MiB, {on - off:+5.1f} MiB")
        print(f"  {name:22} {off:>10,.{ {'req/s': 0, 'ms': 3, 'us': 2}.get(unit, 1)}f} "
              + " ".join(f"{cell:>34}" for cell in cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--no-test-agent", action="store_true", help="the null sink only")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start (2 cores; the service on "
          f"CPU 0, the load generators and the sink on CPU 1)", flush=True)
    sink, sink_url = null_sink()
    with sink:
        report("to the null sink", rounds(sink_url, args))
    if not args.no_test_agent:
        agent_port = free_port()
        with test_agent(agent_port):
            report("to Datadog's test agent", rounds(f"http://127.0.0.1:{agent_port}", args))
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()

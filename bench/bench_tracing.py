"""bench-tracing: what tracing costs the service, measured side by side in one run.

The same release binary with DD_TRACE_ENABLED=true and =false, alternating A/B in pairs:
saturation (closed loop, 32 connections) with loadgen and with wrk, then p50/p99 at a fixed rate
well below saturation (loadgen, open loop). Spans go to a sink that accepts and discards payloads
(the service's own cost), and, as a second row, to Datadog's test agent (which decodes every span
in Python on the load generator's core).
"""

import argparse

from common import free_port, loadgen, median, null_sink, service, test_agent, wrk


def measure(agent_url, traced, args):
    port = free_port()
    with service(port, agent_url, traced):
        url, path = f"http://127.0.0.1:{port}", "/api/apm"
        loadgen(url, "-d", "1s", "-c", "8", path=path)  # warm-up
        closed = loadgen(url, "-c", "32", "-d", f"{args.duration}s", path=path)
        w = wrk(url + path, 32, args.duration)
        fixed = loadgen(url, "--rate", str(args.rate), "-c", "8", "-d", f"{args.duration}s", path=path)
    return {"loadgen_rps": closed["achieved_rate"], "wrk_rps": w["rps"],
            "p50": fixed["latency_ms"]["p50"], "p99": fixed["latency_ms"]["p99"]}


def report(label, runs):
    on, off = runs[True], runs[False]
    print(f"\n{label}: medians of {len(on)} A/B pairs (traced / untraced = ratio)")
    for key, name, unit in [("loadgen_rps", "saturation, loadgen", "req/s"), ("wrk_rps", "saturation, wrk", "req/s"),
                            ("p50", f"p50 at fixed rate", "ms"), ("p99", f"p99 at fixed rate", "ms")]:
        a, b = median(r[key] for r in on), median(r[key] for r in off)
        extra = f"  cost {100 * (1 - a / b):+.1f}%" if unit == "req/s" else f"  added {1000 * (a - b):+.0f} us"
        print(f"  {name:22} {a:>10.3f} / {b:>10.3f} {unit:5} = {a / b:.3f}{extra}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()
    sink, sink_url = null_sink()
    with sink:
        runs = {True: [], False: []}
        for pair in range(args.pairs):
            for traced in (True, False):
                runs[traced].append(measure(sink_url, traced, args))
                r = runs[traced][-1]
                print(f"  pair {pair + 1} {'traced  ' if traced else 'untraced'} loadgen {r['loadgen_rps']:>9.0f}  "
                      f"wrk {r['wrk_rps']:>9.0f}  p50 {r['p50']:.3f}  p99 {r['p99']:.3f} ms", flush=True)
        report("to a null sink", runs)
    agent_port = free_port()
    with test_agent(agent_port):
        runs = {True: [], False: []}
        for _ in range(args.pairs):
            for traced in (True, False):
                runs[traced].append(measure(f"http://127.0.0.1:{agent_port}", traced, args))
        report("to Datadog's test agent", runs)


if __name__ == "__main__":
    main()

"""bench-loadgen: loadgen's maximum rate against wrk's and oha's, side by side in one run, and what
loadgen's own tracing (`--trace-agent`) costs.

The same minimal server (loadgen's `hello_server` example) on CPU 0, each tool in turn on CPU 1 with
the same connections and duration, rounds alternating between the tools; medians and ratios printed.
"loadgen traced" is loadgen reporting a client span per request, the same server standing in for the
trace agent (it reads every payload and answers 200). Then loadgen's CPU seconds per 100k requests,
untraced and traced, its instructions per request (callgrind, the loadgen process, all its threads:
6000 requests minus 2000, so start-up cancels out), and loadgen's and oha's p50/p99 at a fixed rate
well below saturation (both time from the send, as neither is behind).

Run by `make bench-loadgen`, which builds the binaries and installs wrk and oha when missing.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import binary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pinned(cpu, argv):
    return ["taskset", "-c", str(cpu)] + argv if shutil.which("taskset") else argv


def cpu_seconds_of(argv):
    """Runs argv and returns (stdout, user+system CPU seconds), from the kernel's accounting."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {' '.join(argv)}")
    return out, usage.ru_utime + usage.ru_stime


def loadgen(url, connections, duration, rate=None, extra=()):
    argv = [binary("loadgen"), url, "-c", str(connections), "-d", f"{duration}s",
            "--mix", "/", "--json", *extra]
    if rate:
        argv += ["--rate", str(rate)]
    out, cpu = cpu_seconds_of(pinned(1, argv))
    summary = json.loads(out)
    spans = summary.get("spans") or {}
    return {"rps": summary["achieved_rate"], "requests": summary["requests"], "cpu": cpu,
            "p50": summary["latency_ms"]["p50"], "p99": summary["latency_ms"]["p99"],
            "spans_lost": spans.get("lost", 0)}


def loadgen_traced(url, connections, duration):
    """loadgen reporting its spans, the server under test standing in for the trace agent."""
    return loadgen(url, connections, duration, extra=("--trace-agent", url))


def instructions_per_request(url, extra):
    """loadgen's instructions per request (callgrind, all threads), start-up cancelled out."""
    def run(requests):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "callgrind.out")
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary("loadgen"),
                    url, "-c", "4", "--mix", "/", "-n", str(requests), *extra]
            done = subprocess.run(argv, capture_output=True, text=True)
            found = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode != 0 or not found:
                raise RuntimeError(f"callgrind: {done.stderr[-2000:]}")
            return int(found.group(1))
    return (run(6000) - run(2000)) / 4000


def wrk(url, connections, duration):
    out, _ = cpu_seconds_of(pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}


def oha_binary():
    return shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")


def oha(url, connections, duration, rate=None):
    argv = [oha_binary(), "-z", f"{duration}s", "-c", str(connections), "--no-tui", "--output-format", "json", url]
    if rate:
        argv[1:1] = ["-q", str(rate)]
    out, _ = cpu_seconds_of(pinned(1, argv))
    summary = json.loads(out)
    latency = summary["latencyPercentiles"]
    return {"rps": summary["summary"]["requestsPerSec"], "p50": latency["p50"] * 1000, "p99": latency["p99"] * 1000}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=2000, help="fixed rate for the latency comparison")
    args = parser.parse_args()

    server = subprocess.Popen(pinned(0, [binary("examples/hello_server")]),
                              stdout=subprocess.PIPE, text=True)
    try:
        url = "http://" + server.stdout.readline().strip() + "/"
        tools = {"loadgen": loadgen, "loadgen traced": loadgen_traced, "wrk": wrk}
        if os.path.exists(oha_binary()):
            tools["oha"] = oha
        print(f"server {url} on CPU 0; each tool on CPU 1; -c {args.connections}, {args.duration}s runs, "
              f"{args.rounds} rounds; {os.cpu_count()} CPUs")
        results = {name: [] for name in tools}
        for round_number in range(args.rounds):
            for name, tool in tools.items():
                result = tool(url, args.connections, args.duration)
                results[name].append(result)
                lost = f"  ({result['spans_lost']} spans lost)" if result.get("spans_lost") else ""
                print(f"  round {round_number + 1} {name:14} {result['rps']:>10.0f} req/s{lost}", flush=True)

        median = {name: statistics.median(r["rps"] for r in runs) for name, runs in results.items()}
        print("\nclosed loop, maximum rate (median)")
        for name, rps in median.items():
            if name == "loadgen":
                ratio = ""
            elif name == "loadgen traced":
                ratio = f"   traced/untraced = {rps / median['loadgen']:.2f}"
            else:
                ratio = f"   loadgen/{name} = {median['loadgen'] / rps:.2f}"
            print(f"  {name:14} {rps:>10.0f} req/s{ratio}")
        cpu = {name: statistics.median(r["cpu"] / r["requests"] * 100_000 for r in results[name])
               for name in ("loadgen", "loadgen traced")}
        print(f"loadgen CPU seconds per 100k requests: {cpu['loadgen']:.3f} untraced, "
              f"{cpu['loadgen traced']:.3f} traced ({cpu['loadgen traced'] / cpu['loadgen']:.2f}x)")
        lost = sum(r["spans_lost"] for r in results["loadgen traced"])
        print(f"spans lost in the traced rounds: {lost}")

        if shutil.which("valgrind"):
            print("\ninstructions per request (callgrind, loadgen's process, 6000 minus 2000 requests, -c 4)")
            untraced = instructions_per_request(url, ())
            for name, extra in [("untraced", ()), ("trace headers only", ("--trace-headers", "datadog")),
                                ("traced", ("--trace-agent", url))]:
                count = untraced if name == "untraced" else instructions_per_request(url, extra)
                more = "" if name == "untraced" else f"   +{count - untraced:,.0f}"
                print(f"  {name:20} {count:>9,.0f}{more}", flush=True)
        else:
            print("\nvalgrind is not installed: no instruction counts")

        if "oha" in tools:
            print(f"\nfixed rate {args.rate}/s, latency (median of {args.rounds})")
            fixed = {"loadgen": [], "oha": []}
            for _ in range(args.rounds):
                fixed["loadgen"].append(loadgen(url, args.connections, args.duration, args.rate))
                fixed["oha"].append(oha(url, args.connections, args.duration, args.rate))
            for name, runs in fixed.items():
                p50 = statistics.median(r["p50"] for r in runs)
                p99 = statistics.median(r["p99"] for r in runs)
                fixed[name] = (p50, p99)
                print(f"  {name:8} p50 {p50:.3f} ms  p99 {p99:.3f} ms")
            (lp50, lp99), (op50, op99) = fixed["loadgen"], fixed["oha"]
            print(f"  loadgen/oha: p50 {lp50 / op50:.2f}, p99 {lp99 / op99:.2f}")
        else:
            print("\noha is not installed: no fixed-rate comparison (make bench-loadgen installs it)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())

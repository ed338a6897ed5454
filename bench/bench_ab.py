"""bench-ab: saturation throughput of two builds of the service, side by side in one run.

Each round runs build A then build B (then B then A, alternating, so that a drift of the shared
machine favours neither), each on the service's core with loadgen on the other, closed loop with 32
connections on /api/apm, untraced and traced (spans to a null sink), as bench-tracing measures
saturation; the medians and B/A are printed. Beside requests per second, the CPU time the service
spent per request (all its threads, from /proc/<pid>/task/*/schedstat): on a shared machine other
work moves throughput by tens of percent from run to run, while the CPU time a request takes moves
far less, and a core's saturation throughput is its inverse. For a change to the request path, A is
the build before it:

    git stash; make release; cp target/release/apm-demo /tmp/apm-demo-before; git stash pop; make release
    python3 bench/bench_ab.py /tmp/apm-demo-before target/release/apm-demo
"""

import argparse
import os
import time

from common import SERVICE_CPU, Process, free_port, loadgen, median, null_sink, service_env, wait_for_port


def cpu_ns(pid):
    """Nanoseconds on a CPU of every thread of `pid` so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def saturation(path, traced, sink_url, seconds):
    """(requests per second, CPU microseconds per request) of one run."""
    port = free_port()
    env = {**service_env(sink_url, traced), "PORT": str(port)}
    with Process([path], env=env, cpu=SERVICE_CPU) as svc:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        loadgen(url, "-d", "1s", "-c", "8", path="/api/apm")  # warm-up
        before = cpu_ns(svc.popen.pid)
        summary = loadgen(url, "-c", "32", "-d", f"{seconds}s", path="/api/apm")
        time.sleep(1.5)  # the export thread sends the last batch within its 1 s flush interval
        spent = cpu_ns(svc.popen.pid) - before
    return summary["achieved_rate"], spent / 1000 / summary["requests"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the service binary to compare against (before)")
    parser.add_argument("b", help="the service binary measured (after)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per run")
    args = parser.parse_args()
    sink, sink_url = null_sink()
    with sink:
        for traced in (False, True):
            runs = {"a": [], "b": []}
            for round_ in range(args.rounds):
                order = ("a", "b") if round_ % 2 == 0 else ("b", "a")
                for which in order:
                    runs[which].append(saturation(getattr(args, which), traced, sink_url, args.duration))
                (a_rps, a_cpu), (b_rps, b_cpu) = runs["a"][-1], runs["b"][-1]
                print(f"  {'traced  ' if traced else 'untraced'} round {round_ + 1:>2}: A {a_rps:>9.0f} req/s "
                      f"{a_cpu:6.2f} us/req  B {b_rps:>9.0f} req/s {b_cpu:6.2f} us/req", flush=True)
            a_rps, b_rps = (median(r[0] for r in runs[w]) for w in ("a", "b"))
            a_cpu, b_cpu = (median(r[1] for r in runs[w]) for w in ("a", "b"))
            print(f"{'traced' if traced else 'untraced'}, medians of {args.rounds} rounds, A {os.path.basename(args.a)} "
                  f"and B {os.path.basename(args.b)}:\n"
                  f"  saturation  A {a_rps:,.0f} req/s, B {b_rps:,.0f} req/s: B/A {b_rps / a_rps:.3f} "
                  f"({100 * (b_rps / a_rps - 1):+.1f}%)\n"
                  f"  CPU time    A {a_cpu:.3f} us, B {b_cpu:.3f} us a request: B/A {b_cpu / a_cpu:.3f}, "
                  f"so saturation on a core of its own {100 * (a_cpu / b_cpu - 1):+.1f}%")


if __name__ == "__main__":
    main()

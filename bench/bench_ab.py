"""bench-ab: saturation throughput of two builds of the service, side by side in one run.

Each round runs build A then build B (then B then A, alternating, so that a drift of the shared
machine favours neither), each on the service's core with loadgen on the other, closed loop with 32
connections on /api/apm, untraced and traced (spans to a null sink), as bench-tracing measures
saturation; the medians and B/A are printed. For a change to the request path, A is the build before
it:

    git stash; make release; cp target/release/apm-demo /tmp/apm-demo-before; git stash pop; make release
    python3 bench/bench_ab.py /tmp/apm-demo-before target/release/apm-demo
"""

import argparse
import os

from common import SERVICE_CPU, Process, free_port, loadgen, median, null_sink, service_env, wait_for_port


def saturation(path, traced, sink_url, seconds):
    port = free_port()
    env = {**service_env(sink_url, traced), "PORT": str(port)}
    with Process([path], env=env, cpu=SERVICE_CPU):
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        loadgen(url, "-d", "1s", "-c", "8", path="/api/apm")  # warm-up
        return loadgen(url, "-c", "32", "-d", f"{seconds}s", path="/api/apm")["achieved_rate"]


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
                print(f"  {'traced  ' if traced else 'untraced'} round {round_ + 1}: A {runs['a'][-1]:>9.0f}  "
                      f"B {runs['b'][-1]:>9.0f} req/s  (B/A {runs['b'][-1] / runs['a'][-1]:.3f})", flush=True)
            a, b = median(runs["a"]), median(runs["b"])
            print(f"{'traced' if traced else 'untraced'}: medians of {args.rounds} rounds: "
                  f"A ({os.path.basename(args.a)}) {a:,.0f} req/s, B ({os.path.basename(args.b)}) {b:,.0f} req/s, "
                  f"B/A {b / a:.3f} ({100 * (b / a - 1):+.1f}%)")


if __name__ == "__main__":
    main()

"""bench-seed: the instrumented axum service against the seed's Flask app, same load, same run.

The Flask app of the seed exercise (bench/seed_app/APM.py, verbatim: root logger at DEBUG on stdout)
under `ddtrace-run` with gunicorn (2 workers) and with Flask's development server, and under gunicorn
without tracing; against the release service with tracing on. Each server on CPU 0, loadgen on
CPU 1, closed loop with 32 connections on /api/apm; traces of both tracers go to a null sink.
"""

import argparse
import os

from common import ROOT, SERVICE_CPU, VENV_BIN, Process, free_port, loadgen, null_sink, service, wait_for_port

SEED = os.path.join(ROOT, "bench", "seed_app")


def flask(port, sink_url, how):
    env = {"DD_TRACE_AGENT_URL": sink_url, "DD_SERVICE": "flask-seed", "PYTHONPATH": SEED}
    gunicorn = [os.path.join(VENV_BIN, "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "APM:app"]
    argv = {
        "gunicorn + ddtrace-run": [os.path.join(VENV_BIN, "ddtrace-run")] + gunicorn,
        "flask dev server + ddtrace-run": [os.path.join(VENV_BIN, "ddtrace-run"), os.path.join(VENV_BIN, "flask"),
                                           "--app", "APM", "run", "--host", "127.0.0.1", "--port", str(port)],
        "gunicorn, no tracing": gunicorn,
    }[how]
    process = Process(argv, env=env, cpu=SERVICE_CPU)
    wait_for_port(port)
    return process


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    sink, sink_url = null_sink()
    results = {}
    with sink:
        for how in ["axum + opentelemetry-datadog", "gunicorn + ddtrace-run", "flask dev server + ddtrace-run",
                    "gunicorn, no tracing"]:
            port = free_port()
            server = service(port, sink_url) if how.startswith("axum") else flask(port, sink_url, how)
            with server:
                url = f"http://127.0.0.1:{port}"
                loadgen(url, "-d", "1s", "-c", "4", "--timeout", "30s", path="/api/apm")  # warm-up
                summary = loadgen(url, "-c", "32", "-d", f"{args.duration}s", "--timeout", "30s", path="/api/apm")
            results[how] = summary
            print(f"  {how:32} {summary['achieved_rate']:>10.0f} req/s  p99 {summary['latency_ms']['p99']:>9.3f} ms  "
                  f"errors {summary['errors']}", flush=True)
    axum = results["axum + opentelemetry-datadog"]
    print("\naxum (traced) against each, same load:")
    for how, summary in results.items():
        if how.startswith("axum"):
            continue
        print(f"  {how:32} throughput x{axum['achieved_rate'] / summary['achieved_rate']:.0f}   "
              f"p99 {summary['latency_ms']['p99'] / axum['latency_ms']['p99']:.0f}x lower")


if __name__ == "__main__":
    main()

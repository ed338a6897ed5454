"""Per-resource summary of what a trace agent received, as Datadog's APM service page shows it.

Reads the spans Datadog's test agent received (`/test/traces`) and, per resource of the service:
hits, errors (spans flagged as errors: 5xx), client errors (4xx, not errors), p50 and p99 duration.
With --loadgen, compares with what the load generator sent. Standard library only.
"""

import argparse
import json
import statistics
import sys
import urllib.request


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summarise(spans, service):
    resources = {}
    for span in spans:
        if span.get("service") != service or span.get("name") != "http.server.request":
            continue
        row = resources.setdefault(span["resource"], {"hits": 0, "errors": 0, "client_errors": 0, "durations_ms": []})
        row["hits"] += 1
        row["errors"] += int(span.get("error", 0))
        status = span.get("meta", {}).get("http.status_code", "")
        row["client_errors"] += int(status.startswith("4"))
        row["durations_ms"].append(span["duration"] / 1e6)
    return {
        resource: {
            "hits": row["hits"],
            "errors": row["errors"],
            "client_errors": row["client_errors"],
            "p50_ms": round(percentile(row["durations_ms"], 0.50), 3),
            "p99_ms": round(percentile(row["durations_ms"], 0.99), 3),
            "mean_ms": round(statistics.fmean(row["durations_ms"]), 3),
        }
        for resource, row in sorted(resources.items())
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="test agent base URL")
    parser.add_argument("--service", required=True)
    parser.add_argument("--loadgen", help="loadgen's --json summary")
    parser.add_argument("--json-out", help="also write the summary here, as JSON")
    args = parser.parse_args()

    with urllib.request.urlopen(f"{args.agent}/test/traces") as response:
        spans = [span for trace in json.load(response) for span in trace]
    with urllib.request.urlopen(f"{args.agent}/test/trace_check/failures?return_all=true") as response:
        checks = response.read().decode().strip()

    resources = summarise(spans, args.service)
    print(f"service {args.service}: {sum(r['hits'] for r in resources.values())} spans received\n")
    print(f"{'resource':<22} {'hits':>7} {'errors':>7} {'4xx':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for resource, row in resources.items():
        print(f"{resource:<22} {row['hits']:>7} {row['errors']:>7} {row['client_errors']:>6} "
              f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}")
    print(f"\ntrace checks of the test agent: {checks}")

    summary = {"service": args.service, "resources": resources, "trace_checks": checks}
    if args.loadgen:
        with open(args.loadgen) as f:
            load = json.load(f)
        summary["loadgen"] = {"requests": load["requests"], "errors": load["errors"],
                              "status_codes": load["status_codes"], "achieved_rate": load["achieved_rate"]}
        received = sum(r["hits"] for r in resources.values())
        print(f"loadgen sent {load['requests']} requests ({load['achieved_rate']:.1f}/s), "
              f"{load['errors']} failed; spans received: {received}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What Datadog's APM service page would show for the service, from the spans a trace agent received.

Reads the spans Datadog's test agent received (`/test/traces`) and prints, per resource of the service:
hits, errors (spans flagged as errors: 5xx), client errors (4xx, not errors), p50 and p99 of the
span's duration; with --loadgen, next to them the latency loadgen measured from the client side,
labelled as such; the services of the traces (loadgen -> the service -> its database) and whether
every trace is whole. With --out-dir, keeps the traces (traces.json, as the agent returned them), a page
that draws each trace as a waterfall of its spans (traces.html, trace_page.py) and the run's service
page (service.html, service_page.py): both self-contained, no network, no server. With --fault and
--fault-start (`make local FAULT=<flag>`), also the error rate and p99 per resource before and during
the fault, and which of provision's monitors would have warned or alerted (monitors.py). Standard
library only.
"""

import argparse
import json
import os
import re
import statistics
import sys
import textwrap
import urllib.request

import monitors as M
import service_page
import trace_page
import traces as T
from monitors import percentile

SERVER_SPAN = T.SERVER_SPAN
QUERY_SPAN = T.QUERY_SPAN
SPAN_LABEL = "span: the service's request span, as APM shows it (inside the service)"
CLIENT_LABEL = ("client: loadgen's send-to-answer time (adds the loopback TCP round trip, the "
                "connection's handling and loadgen's own scheduling)")


def summarise(spans, service, operation=None):
    """Per resource of `operation`'s spans (the request spans by default): hits, errors, 4xx, latency."""
    resources = {}
    for span in spans:
        if span.get("service") != service or span.get("name") != (operation or SERVER_SPAN):
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


def resource_of(method, path, resources):
    """The resource a loadgen entry's requests became: the route template its path matches (a numbered
    entry, `/api/visits/{1..50}`, matches `/api/visits/{id}`), else `<METHOD> 404` for one that got
    only 404s, else `<METHOD> <path>`."""
    sample = re.sub(r"\{(\d+)\.\.\d+\}", r"\1", path)
    for resource in resources:
        verb, _, template = resource.partition(" ")
        pattern = "^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template)) + "$"
        if verb == method and re.match(pattern, sample):
            return resource
    return f"{method} {path}"


def client_latency(load, resources):
    """loadgen's per-entry latency under the resource each entry became."""
    by_resource = {}
    for path in load.get("paths", []):
        method = path.get("method") or "GET"
        resource = resource_of(method, path["path"], resources)
        if resource not in resources and set(path.get("status_codes", {})) == {"404"}:
            resource = f"{method} 404"
        by_resource[resource] = path["latency_ms"]
    return by_resource


def table(resources, client):
    """The printed table: both latencies in ms, each labelled by where it was measured."""
    lines = [f"{'':<22} {'':>7} {'':>7} {'':>6}  {'span ms':^17}  {'client ms':^17}".rstrip(),
             f"{'resource':<22} {'hits':>7} {'errors':>7} {'4xx':>6}  {'p50':>8} {'p99':>8}  {'p50':>8} {'p99':>8}"]
    for resource, row in resources.items():
        latency = client.get(resource)
        client_cells = f"{latency['p50']:>8.3f} {latency['p99']:>8.3f}" if latency else f"{'-':>8} {'-':>8}"
        lines.append(f"{resource:<22} {row['hits']:>7} {row['errors']:>7} {row['client_errors']:>6}  "
                     f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}  {client_cells}")
    lines += ["", SPAN_LABEL, CLIENT_LABEL] if client else ["", SPAN_LABEL]
    return lines


TRACEPARENT = re.compile(r"traceparent='00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})'")


def dbm_link(statements, spans):
    """The first statement sample (as the server recorded it) whose DBM comment names a query span the
    test agent received: the statement, and that span with its request span. A trace id is 128 bits in
    the comment; the agent has its low 64 in `trace_id` and the high 64 in the root's `_dd.p.tid`
    (none: zero)."""
    by_ids = {(s.get("trace_id"), s.get("span_id")): s for s in spans}
    high_of = {s.get("trace_id"): s.get("meta", {}).get("_dd.p.tid") for s in spans if s.get("meta", {}).get("_dd.p.tid")}
    for statement in statements:
        found = TRACEPARENT.search(statement)
        if not found:
            continue
        trace = int(found["trace"], 16)
        low, high = trace & (2**64 - 1), f"{trace >> 64:016x}"
        span = by_ids.get((low, int(found["span"], 16)))
        # A trace a caller began with a 64-bit id (loadgen's x-datadog-trace-id) has no `_dd.p.tid`.
        if span is None or span.get("name") != QUERY_SPAN or high_of.get(low, "0" * 16) != high:
            continue
        parent = by_ids.get((low, span.get("parent_id")))
        if parent is None:
            continue  # a statement of no request (the schema at start): show one a request made
        return {"statement": statement, "trace_id": found["trace"], "query_span": span, "request_span": parent}
    return None


def short(text, width=40):
    return textwrap.shorten(text, width, placeholder="...")


def services_report(traces, service):
    """The map as text (who called whom, each edge measured by the caller's spans), and whether every
    trace is whole (traces.problems): lines, and the same as data."""
    found = service_page.service_map(traces, service)
    lines = ["the services of the traces (Datadog's service map), each edge measured by the caller's spans:"]
    for e in found["edges"]:
        lines.append(f"  {e['from'] + ' -> ' + e['to']:<28} {e['spans']:>6} spans {e['rate']:>7.1f}/s  "
                     f"errors {e['error_rate']:>5.1f}%  p99 {e['p99_ms']:>9.3f} ms  ({e['measured_by']})")
    requests = [t for t in traces if T.is_request(t, service)]
    startup = [t for t in traces if t and not T.is_request(t, service)]
    broken = [(t, T.problems(t, service)) for t in traces if t and T.problems(t, service)]
    lines.append(f"whole traces (one root, loadgen's span, then {service}'s, then its {T.QUERY_SPAN} spans): "
                 f"{len(requests) - sum(1 for t, _ in broken if t in requests)} of {len(requests)}")
    for trace, problems in broken[:3]:
        lines.append(f"  trace {T.trace_id(trace)}: {'; '.join(problems)}")
    lines.append(f"the service's startup work, apart: {len(startup)} trace{'s' if len(startup) != 1 else ''} "
                 f"({', '.join(sorted({short(T.root_of(t).get('resource', '')) for t in startup})) or 'none'})")
    return lines, {"map": found, "request_traces": len(requests), "startup_traces": len(startup),
                   "broken_traces": [{"trace_id": T.trace_id(t), "problems": p} for t, p in broken]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="test agent base URL")
    parser.add_argument("--service", required=True)
    parser.add_argument("--exporter", help="the service's TRACE_EXPORTER, named in the summary and on the page")
    parser.add_argument("--loadgen", help="loadgen's --json summary")
    parser.add_argument("--json-out", help="also write the summary here, as JSON")
    parser.add_argument("--out-dir", help="keep traces.json, traces.html and service.html here")
    parser.add_argument("--fault", help="the fault flag switched on during the run (make local FAULT=...)")
    parser.add_argument("--fault-start", type=int, help="when it was switched on, in ns since the epoch")
    parser.add_argument("--dbm-statements", help="statement samples read from performance_schema, one per line")
    args = parser.parse_args()

    with urllib.request.urlopen(f"{args.agent}/test/traces") as response:
        traces = json.load(response)
    spans = [span for trace in traces for span in trace]
    with urllib.request.urlopen(f"{args.agent}/test/trace_check/failures?return_all=true") as response:
        checks = response.read().decode().strip()

    resources = summarise(spans, args.service)
    load = None
    if args.loadgen:
        with open(args.loadgen) as f:
            load = json.load(f)
    client = client_latency(load, resources) if load else {}
    exporter = f" (exporter: {args.exporter})" if args.exporter else ""
    print(f"service {args.service}{exporter}: {sum(r['hits'] for r in resources.values())} spans received\n")
    print("\n".join(table(resources, client)))
    print(f"\ntrace checks of the test agent: {checks}")

    summary = {"service": args.service, "exporter": args.exporter, "resources": resources, "trace_checks": checks}
    lines, summary["services"] = services_report(traces, args.service)
    print("")
    print("\n".join(lines))
    queries = summarise(spans, args.service, QUERY_SPAN)
    if queries:
        summary["queries"] = queries
        print(f"\nthe database: {QUERY_SPAN} spans (children of the request spans), per statement")
        for statement, row in queries.items():
            print(f"  {row['hits']:>6} hits {row['errors']:>4} errors  p50 {row['p50_ms']:>7.3f} ms  "
                  f"p99 {row['p99_ms']:>7.3f} ms  {statement}")
    if args.dbm_statements:
        with open(args.dbm_statements) as f:
            statements = [line.rstrip("\n") for line in f if line.strip()]
        link = dbm_link(statements, spans)
        summary["dbm"] = {"statements": len(statements), "linked": link}
        if link:
            request = link["request_span"]
            print(f"\nDatabase Monitoring: of {len(statements)} statement samples with the service's comment, "
                  f"this one names trace {link['trace_id']}, which the test agent received:")
            print(f"  {link['statement'][:300]}")
            print(f"  its span: {QUERY_SPAN} \"{link['query_span']['resource']}\", "
                  f"child of the request span {request['resource']} (span_id {request['span_id']})")
        else:
            print(f"\nDatabase Monitoring: none of {len(statements)} statement samples names a trace the test agent received")
    monitors, fault = [], None
    if args.fault and args.fault_start:
        # The monitors of the env the service ran in (DD_ENV, on every span).
        envs = [s["meta"]["env"] for s in spans if s.get("service") == args.service and s.get("meta", {}).get("env")]
        monitors = M.provision_monitors(max(set(envs), key=envs.count) if envs else "demo")
        lines, summary["fault"] = M.fault_report(spans, args.service, args.fault, args.fault_start, monitors)
        fault = {"flag": args.fault, "start": args.fault_start}
        print("")
        print("\n".join(lines))
    if load:
        summary["loadgen"] = {"requests": load["requests"], "errors": load["errors"],
                              "status_codes": load["status_codes"], "achieved_rate": load["achieved_rate"],
                              "latency_ms_by_resource": client}
        received = sum(r["hits"] for r in resources.values())
        print(f"loadgen sent {load['requests']} requests ({load['achieved_rate']:.1f}/s), "
              f"{load['errors']} failed; spans received: {received}")
    if args.out_dir:
        with open(os.path.join(args.out_dir, "traces.json"), "w") as f:
            json.dump(traces, f)
        page = os.path.abspath(os.path.join(args.out_dir, "traces.html"))
        with open(page, "w") as f:
            f.write(trace_page.page_html(traces, args.service))
        data = service_page.figures(traces, args.service, fault, monitors)
        service = os.path.abspath(os.path.join(args.out_dir, "service.html"))
        with open(service, "w") as f:
            envs = {s.get("meta", {}).get("env") for s in spans if s.get("service") == args.service} - {None}
            f.write(service_page.page_html(data, args.exporter, ", ".join(sorted(envs)), summary.get("fault"), monitors))
        summary["traces_html"], summary["service_html"] = page, service
        requests = [t for t in traces if T.is_request(t, args.service)]
        slowest = max(requests, key=T.duration, default=None)
        print(f"\nthe traces, each a waterfall of its spans and their tags: file://{page}")
        if slowest:
            print(f"the slowest ({trace_page.ms(T.duration(slowest))}, {T.resource_of(slowest, args.service)}): "
                  f"file://{page}#t-{T.trace_id(slowest)}")
        print(f"logs, loadgen's summary and the traces are kept in {args.out_dir.rstrip('/')}/")
        print(f"the service page of the run (graphs per resource, the service map, the slowest and failed traces): "
              f"file://{service}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

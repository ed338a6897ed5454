"""Per-resource summary of what a trace agent received, as Datadog's APM service page shows it.

Reads the spans Datadog's test agent received (`/test/traces`) and, per resource of the service:
hits, errors (spans flagged as errors: 5xx), client errors (4xx, not errors), p50 and p99 of the
span's duration. With --loadgen, puts next to them the latency loadgen measured from the client side,
labelled as such. With --out-dir, keeps the traces (traces.json, as the agent returned them) and a
page that draws each trace as a waterfall of its spans with their tags (traces.html, self-contained:
no network, no server). With --fault and --fault-start (`make local FAULT=<flag>`), also the error rate
and p99 per resource before and during the fault, and which of provision's monitors (`provision plan
--json`) would have warned or alerted, their queries evaluated on the spans of each window. Standard
library only.
"""

import argparse
import html
import json
import os
import re
import statistics
import subprocess
import sys
import urllib.request
from datetime import datetime, timezone

SERVER_SPAN = "http.server.request"
# The page keeps the slowest traces of each resource and every error: enough to look into, and a
# page that opens at once after a long run at a high rate.
SLOWEST_PER_RESOURCE = 50
SPAN_LABEL = "span: the service's request span, as APM shows it (inside the service)"
CLIENT_LABEL = ("client: loadgen's send-to-answer time (adds the loopback TCP round trip, the "
                "connection's handling and loadgen's own scheduling)")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


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


# The service's monitors, as provision declares them for Datadog (`provision plan --json`), evaluated
# here on the spans the test agent received. Each query is read as Datadog computes it from the spans:
# a term `<aggregation>:trace.<operation>[.hits|.errors]{<tag filters>} by {<tags>}` selects the spans
# of that operation with those tags (service, env, resource_name, else the span's meta) in each group;
# `.hits` counts them, `.errors` counts those flagged as errors, `pNN` is the NNth percentile of their
# duration in seconds (nearest rank here; Datadog's distribution estimates it with DDSketch). `a / b`
# divides per group. Monitors of other metrics (my_metric's, from the Agent's check) have no spans here.
TRACE_TERM = re.compile(r"(?P<aggregation>\w+):trace\.(?P<operation>[\w.]+?)(?P<count>\.hits|\.errors)?"
                        r"\{(?P<filter>[^}]*)\}(?:\s+by\s+\{(?P<by>[^}]*)\})?(?:\.as_count\(\))?")
MONITOR_QUERY = re.compile(r"(?P<time>\w+)\(last_\w+\):(?P<expr>.+?)\s*>\s*(?P<threshold>[\d.]+)")


def provision_monitors(env, provision=None):
    """The monitors `provision plan --json --env ENV` declares that read trace metrics; provision is the
    binary (default: BIN_DIR's, or cargo's target directory as local/bin-dir.sh finds it)."""
    if provision is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        bin_dir = os.environ.get("BIN_DIR") or subprocess.run(
            [os.path.join(root, "local", "bin-dir.sh")], capture_output=True, text=True, check=True).stdout.strip()
        provision = os.path.join(bin_dir, "provision")
    # In the binary's directory, with PATH only: no .env or PROVISION_* of the caller's changes the plan.
    plan = json.loads(subprocess.run([provision, "plan", "--json", "--env", env], capture_output=True, text=True,
                                     check=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                     cwd=os.path.dirname(os.path.abspath(provision))).stdout)
    return [m for m in plan["monitors"] if TRACE_TERM.search(m["query"])]


def span_tag(span, key):
    return {"service": span.get("service"), "resource_name": span.get("resource")}.get(
        key, span.get("meta", {}).get(key))


def term_values(term, spans, start=None, end=None):
    """One metric term of a query over the spans that started in [start, end) (ns): {group: value}."""
    filters = [tag.split(":", 1) for tag in (t.strip() for t in term["filter"].split(",")) if tag and tag != "*"]
    keys = [k.strip() for k in (term["by"] or "").split(",") if k.strip()]
    groups = {}
    for span in spans:
        begun = span.get("start", 0)
        if (span.get("name") != term["operation"] or (start is not None and begun < start)
                or (end is not None and begun >= end)
                or any(span_tag(span, key) != value for key, value in filters)):
            continue
        group = ",".join(str(span_tag(span, key)) for key in keys) or "*"
        groups.setdefault(group, []).append(span)
    if term["count"]:
        field = {".hits": lambda s: 1, ".errors": lambda s: int(s.get("error", 0))}[term["count"]]
        return {group: sum(map(field, members)) for group, members in groups.items()}
    quantile = float(term["aggregation"].lstrip("p")) / 100
    return {group: percentile([s["duration"] / 1e9 for s in members], quantile) for group, members in groups.items()}


def monitor_values(monitor, spans, start=None, end=None):
    """The monitor's query over the spans of [start, end): {group: value}."""
    expr = MONITOR_QUERY.fullmatch(monitor["query"])["expr"]
    values = [term_values(TRACE_TERM.fullmatch(part.strip()), spans, start, end) for part in expr.split(" / ")]
    if len(values) == 1:
        return values[0]
    numerator, denominator = values
    return {group: numerator.get(group, 0) / hits for group, hits in sorted(denominator.items()) if hits}


def monitor_unit(monitor):
    return "s" if TRACE_TERM.search(monitor["query"])["aggregation"].startswith("p") else ""


def window_figures(spans, service, start=None, end=None):
    """Per resource, over the server spans that started in [start, end) (ns; None: unbounded): hits,
    errors, error_rate, p99_s: what the monitors' metrics would be over that window."""
    figures = {}
    for span in spans:
        if span.get("service") != service or span.get("name") != SERVER_SPAN:
            continue
        begun = span.get("start", 0)
        if (start is not None and begun < start) or (end is not None and begun >= end):
            continue
        row = figures.setdefault(span["resource"], {"hits": 0, "errors": 0, "durations": []})
        row["hits"] += 1
        row["errors"] += int(span.get("error", 0))
        row["durations"].append(span["duration"] / 1e9)
    return {
        resource: {"hits": row["hits"], "errors": row["errors"],
                   "error_rate": row["errors"] / row["hits"],
                   "p99_s": percentile(row["durations"], 0.99)}
        for resource, row in sorted(figures.items())
    }


def monitor_states(monitors, spans, start=None, end=None):
    """Each monitor's state per group of its query (`by {resource_name}`: per resource) over the spans
    of [start, end): OK, WARN or ALERT, as Datadog compares a value above its thresholds."""
    states = []
    for monitor in monitors:
        thresholds = monitor["options"]["thresholds"]
        for resource, value in sorted(monitor_values(monitor, spans, start, end).items()):
            state = ("ALERT" if value > thresholds["critical"]
                     else "WARN" if value > thresholds["warning"] else "OK")
            states.append({"monitor": monitor["name"], "resource": resource, "value": value, "state": state})
    return states


def fault_report(spans, service, fault, fault_start, monitors):
    """The printed comparison of before and during the fault, and the monitors' states in each."""
    before = window_figures(spans, service, end=fault_start)
    during = window_figures(spans, service, start=fault_start)
    lines = [f"FAULT={fault}: before (spans that started before it went on) and during",
             f"{'resource':<22} {'hits':>6} {'errors':>7} {'error %':>8} {'p99 ms':>9}    "
             f"{'hits':>6} {'errors':>7} {'error %':>8} {'p99 ms':>9}"]
    for resource in sorted(set(before) | set(during)):
        cells = []
        for window in (before, during):
            row = window.get(resource)
            cells.append(f"{row['hits']:>6} {row['errors']:>7} {100 * row['error_rate']:>8.1f} "
                         f"{1000 * row['p99_s']:>9.3f}" if row else f"{'-':>6} {'-':>7} {'-':>8} {'-':>9}")
        lines.append(f"{resource:<22} {cells[0]}    {cells[1]}")
    states = {"before": monitor_states(monitors, spans, end=fault_start),
              "during": monitor_states(monitors, spans, start=fault_start)}
    lines += ["", "provision's monitors (evaluated on each window's spans; Datadog evaluates the last 5 minutes):"]
    for monitor in monitors:
        thresholds, unit = monitor["options"]["thresholds"], monitor_unit(monitor)
        lines.append(f"  {monitor['name']}: warning > {thresholds['warning']}{unit}, "
                     f"alert > {thresholds['critical']}{unit}")
        lines.append(f"    {monitor['query']}")
        fired = False
        for window in ("before", "during"):
            for state in states[window]:
                if state["monitor"] == monitor["name"] and state["state"] != "OK":
                    fired = True
                    lines.append(f"    {window}: {state['state']} on {state['resource']} "
                                 f"({state['value']:.3f}{unit})")
        if not fired:
            lines.append("    OK throughout: would not have fired")
    return lines, {"fault": fault, "fault_start": fault_start, "before": before, "during": during,
                   "monitors": states}


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


# The trace page ------------------------------------------------------------------------------------

def trace_id(trace):
    return str(trace[0].get("trace_id", "")) if trace else ""


def root_of(trace):
    ids = {span.get("span_id") for span in trace}
    roots = [span for span in trace if span.get("parent_id") not in ids]
    return min(roots or trace, key=lambda span: span.get("start", 0))


def trace_duration(trace):
    start = min(span.get("start", 0) for span in trace)
    return max(span.get("start", 0) + span.get("duration", 0) for span in trace) - start


def kept_traces(traces):
    """The slowest traces of each root resource, and every trace with an error, slowest first."""
    by_resource = {}
    for trace in traces:
        if trace:
            by_resource.setdefault(root_of(trace).get("resource", ""), []).append(trace)
    kept = []
    for resource_traces in by_resource.values():
        resource_traces.sort(key=trace_duration, reverse=True)
        kept += resource_traces[:SLOWEST_PER_RESOURCE]
        kept += [t for t in resource_traces[SLOWEST_PER_RESOURCE:] if any(s.get("error") for s in t)]
    return sorted(kept, key=lambda t: (root_of(t).get("resource", ""), -trace_duration(t)))


def in_tree_order(trace):
    """(depth, span) pairs, each span after its parent, siblings by start time."""
    ids = {span.get("span_id") for span in trace}
    children = {}
    for span in trace:
        parent = span.get("parent_id") if span.get("parent_id") in ids else None
        children.setdefault(parent, []).append(span)
    ordered, stack = [], [(0, span) for span in sorted(children.get(None, []), key=lambda s: s.get("start", 0),
                                                        reverse=True)]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        stack += [(depth + 1, c) for c in sorted(children.get(span.get("span_id"), []),
                                                  key=lambda s: s.get("start", 0), reverse=True)]
    return ordered


def ms(nanoseconds):
    return f"{nanoseconds / 1e6:.3f} ms"


def tags_table(span):
    rows = [(key, value) for key, value in sorted(span.get("meta", {}).items())]
    rows += [(key, value) for key, value in sorted(span.get("metrics", {}).items())]
    rows += [("span_id", span.get("span_id")), ("parent_id", span.get("parent_id")), ("type", span.get("type", ""))]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="tags">{cells}</table>'


def trace_html(trace):
    tid = html.escape(trace_id(trace))
    root = root_of(trace)
    start = min(span.get("start", 0) for span in trace)
    total = trace_duration(trace) or 1
    error = any(span.get("error") for span in trace)
    when = datetime.fromtimestamp(start / 1e9, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    rows = []
    for depth, span in in_tree_order(trace):
        left = 100 * (span.get("start", 0) - start) / total
        width = max(100 * span.get("duration", 0) / total, 0.3)
        classes = "span error" if span.get("error") else "span"
        rows.append(
            f'<details class="{classes}" data-depth="{depth}" style="--depth:{depth}">'
            f'<summary><span class="name" title="{html.escape(span.get("resource", ""))}">'
            f'{html.escape(span.get("service", ""))} '
            f'{html.escape(span.get("name", ""))} <b>{html.escape(span.get("resource", ""))}</b></span>'
            f'<span class="lane"><span class="bar" style="left:{left:.2f}%;width:{width:.2f}%"></span></span>'
            f'<span class="duration">{ms(span.get("duration", 0))}</span></summary>'
            f'{tags_table(span)}</details>')
    status = html.escape(str(root.get("meta", {}).get("http.status_code", "")))
    return (f'<details class="trace{" error" if error else ""}" id="t-{tid}" data-trace-id="{tid}">'
            f'<summary><b>{html.escape(root.get("resource", ""))}</b> {status} '
            f'<span class="duration">{ms(total)}</span> {len(trace)} span{"s" if len(trace) != 1 else ""}, '
            f'{when} UTC, trace {tid}</summary><div class="waterfall">{"".join(rows)}</div></details>')


PAGE_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } .note { color: #555; max-width: 60em; }
details.trace { border-top: 1px solid #ddd; padding: .3em 0; }
details.trace > summary { cursor: pointer; }
details.trace.error > summary b { color: #b00; }
.waterfall { margin: .4em 0 .6em 1em; }
details.span > summary { display: grid; grid-template-columns: 28em 1fr 7em; align-items: center;
  cursor: pointer; list-style: none; }
.name { padding-left: calc(var(--depth) * 1.2em); overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.lane { position: relative; height: 1em; background: #f3f3f3; }
.bar { position: absolute; top: 0; bottom: 0; background: #632ca6; }
details.span.error .bar { background: #c00; }
.duration { text-align: right; font-variant-numeric: tabular-nums; }
table.tags { margin: .3em 0 .6em calc(var(--depth) * 1.2em + 1em); border-collapse: collapse; font-size: 12px; }
table.tags th { text-align: left; font-weight: normal; color: #555; padding-right: 1em; }
"""
# Opens the trace the address names (traces.html#t-<trace id>), as the summary's links do.
PAGE_SCRIPT = """
function openFromHash() {
  const trace = location.hash && document.getElementById(location.hash.slice(1));
  if (trace) { trace.open = true; trace.scrollIntoView(); }
}
window.addEventListener("hashchange", openFromHash);
openFromHash();
"""


def page_html(traces, service):
    kept = kept_traces(traces)
    body = "".join(trace_html(trace) for trace in kept)
    spans = sum(len(t) for t in traces)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(service)}: traces</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>{html.escape(service)}: {len(traces)} traces, {spans} spans received by the test agent</h1>
<p class="note">Each trace as a waterfall of its spans: bars are placed in the trace's own time, a
child span under its parent. Open a trace, then a span for its tags. Shown: {len(kept)} traces, the
{SLOWEST_PER_RESOURCE} slowest of each resource and every trace with an error, by resource, slowest
first. All of them, as the agent returned them: traces.json.</p>
{body}
<script>{PAGE_SCRIPT}</script>
</body></html>
"""


QUERY_SPAN = "mysql.query"
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="test agent base URL")
    parser.add_argument("--service", required=True)
    parser.add_argument("--loadgen", help="loadgen's --json summary")
    parser.add_argument("--json-out", help="also write the summary here, as JSON")
    parser.add_argument("--out-dir", help="keep traces.json and traces.html here")
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
    print(f"service {args.service}: {sum(r['hits'] for r in resources.values())} spans received\n")
    print("\n".join(table(resources, client)))
    print(f"\ntrace checks of the test agent: {checks}")

    summary = {"service": args.service, "resources": resources, "trace_checks": checks}
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
    if args.fault and args.fault_start:
        # The monitors of the env the service ran in (DD_ENV, on every span).
        envs = [s["meta"]["env"] for s in spans if s.get("service") == args.service and s.get("meta", {}).get("env")]
        monitors = provision_monitors(max(set(envs), key=envs.count) if envs else "demo")
        lines, summary["fault"] = fault_report(spans, args.service, args.fault, args.fault_start, monitors)
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
        page = os.path.join(args.out_dir, "traces.html")
        with open(page, "w") as f:
            f.write(page_html(traces, args.service))
        summary["traces_html"] = os.path.abspath(page)
        slowest = max(traces, key=trace_duration, default=None)
        print(f"\nthe traces, each a waterfall of its spans and their tags: file://{os.path.abspath(page)}")
        if slowest:
            print(f"the slowest ({ms(trace_duration(slowest))}, {root_of(slowest).get('resource')}): "
                  f"file://{os.path.abspath(page)}#t-{trace_id(slowest)}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""service.html: what Datadog's APM service page would show for the run, from the spans the test agent
received, in one self-contained file (the graphs drawn by a vendored uPlot, local/vendor/uplot/; no
network, no server).

- the service map: loadgen -> the service -> its database, each edge with its requests/s, error rate
  and p99, from the callers' spans (loadgen's client spans, the service's `mysql.query` spans);
- per resource and for the whole service: requests/s, error rate and latency (p50, p95, p99) in
  one-second buckets, a latency distribution, and a table of the resources;
- with a fault (`make local FAULT=<flag>`): the moment it went on marked on every time graph, and the
  thresholds of provision's monitors on the error-rate and latency graphs they watch;
- per resource, the slowest traces and the failed ones, each a link into traces.html.

A span counts in the second it ended, as the Datadog Agent buckets its trace stats
(DataDog/datadog-agent `pkg/trace/stats/span_concentrator.go`, `addSpan`: `end - end % bsize`).
Percentiles are nearest rank (monitors.percentile), as the printed summary's. Standard library only.
"""

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import monitors as M
import trace_page
import traces as T

HERE = Path(__file__).resolve().parent
UPLOT = HERE / "vendor" / "uplot"
# Per resource, the slowest traces and the failed ones linked: a handful, each kept in traces.html.
LINKED_PER_RESOURCE = 5
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
# The latency distribution's buckets: five to a decade of milliseconds.
STEPS_PER_DECADE = 5
NS_PER_S = 1_000_000_000
# Resource colours, in the order of the resource list's names (Datadog's categorical palette's tones).
PALETTE = ("#3b7dd8", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d", "#495057")


def end_second(span):
    return (span.get("start", 0) + span.get("duration", 0)) // NS_PER_S


def per_second(spans, seconds):
    """The spans' figures in each one-second bucket of `seconds` (by end): hits, errors, error rate
    (%, None with no hit), p50/p95/p99 latency (ms, None with no hit)."""
    first = seconds[0]
    buckets = [[] for _ in seconds]
    for span in spans:
        buckets[end_second(span) - first].append(span)
    out = {"hits": [len(b) for b in buckets], "errors": [sum(int(s.get("error", 0)) for s in b) for b in buckets]}
    out["error_rate"] = [round(100 * e / h, 3) if h else None for e, h in zip(out["errors"], out["hits"])]
    for name, q in PERCENTILES:
        out[name] = [round(M.percentile([s["duration"] for s in b], q) / 1e6, 4) if b else None for b in buckets]
    return out


def distribution(spans):
    """Latency histogram: each bucket's lower edge as log10(ms), its count, and the buckets' width
    (STEPS_PER_DECADE buckets to a decade)."""
    steps = [math.floor(math.log10(max(s["duration"], 1) / 1e6) * STEPS_PER_DECADE) for s in spans]
    if not steps:
        return {"edges": [], "counts": [], "step": 1 / STEPS_PER_DECADE}
    low, high = min(steps), max(steps)
    counts = [0] * (high - low + 1)
    for step in steps:
        counts[step - low] += 1
    return {"edges": [round((low + i) / STEPS_PER_DECADE, 3) for i in range(len(counts))], "counts": counts,
            "step": 1 / STEPS_PER_DECADE}


def totals(spans, seconds):
    durations = [s["duration"] for s in spans]
    hits, errors = len(spans), sum(int(s.get("error", 0)) for s in spans)
    row = {"hits": hits, "rate": round(hits / seconds, 3), "total_ms": round(sum(durations) / 1e6, 3),
           "errors": errors, "error_rate": round(100 * errors / hits, 3) if hits else 0.0}
    for name, q in PERCENTILES:
        row[f"{name}_ms"] = round(M.percentile(durations, q) / 1e6, 4)
    return row


def edge(spans):
    """An edge of the map from its caller's spans: how many, per second over their own time, errors,
    p99 (ms)."""
    if not spans:
        return None
    first = min(s["start"] for s in spans)
    last = max(s["start"] + s["duration"] for s in spans)
    errors = sum(int(s.get("error", 0)) for s in spans)
    return {"spans": len(spans), "rate": round(len(spans) / max((last - first) / NS_PER_S, 1e-9), 2),
            "errors": errors, "error_rate": round(100 * errors / len(spans), 2),
            "p99_ms": round(M.percentile([s["duration"] for s in spans], 0.99) / 1e6, 3)}


def service_map(traces, service):
    """The nodes and edges of the run's map, from the request traces' spans (startup work apart)."""
    requests = [t for t in traces if T.is_request(t, service)]
    client = [s for t in requests for s in t if s.get("service") == T.LOADGEN and s.get("name") == T.CLIENT_SPAN]
    server = [s for t in requests for s in t if s.get("service") == service and s.get("name") == T.SERVER_SPAN]
    queries = [s for t in requests for s in t if s.get("name") == T.QUERY_SPAN]
    database = trace_page.span_service(queries[0]) if queries else "mysql"
    # loadgen -> service: loadgen's own spans when it reported them (--trace-agent); else what the
    # service's spans say, and the page says so.
    edges = []
    if client or server:
        edges.append({"from": T.LOADGEN, "to": service, **edge(client or server),
                      "measured_by": "loadgen's client spans" if client
                      else f"{service}'s server spans (loadgen reported no spans)"})
    if queries:
        edges.append({"from": service, "to": database, **edge(queries),
                      "measured_by": f"{service}'s {T.QUERY_SPAN} spans"})
    return {"nodes": [T.LOADGEN, service, database], "edges": edges}


def linked_traces(traces, service, resource):
    """The resource's slowest traces and failed ones (slowest first), each kept in traces.html."""
    mine = sorted((t for t in traces if T.is_request(t, service) and T.resource_of(t, service) == resource),
                  key=T.duration, reverse=True)

    def link(trace):
        status = (T.server_span(trace, service) or {}).get("meta", {}).get("http.status_code", "")
        return {"trace_id": T.trace_id(trace), "ms": round(T.duration(trace) / 1e6, 3), "status": status,
                "at": datetime.fromtimestamp(T.start(trace) / 1e9, timezone.utc).strftime("%H:%M:%S.%f")[:-3]}

    return {"slowest": [link(t) for t in mine[:LINKED_PER_RESOURCE]],
            "failed": [link(t) for t in mine if T.has_error(t)][:LINKED_PER_RESOURCE]}


def thresholds(monitors):
    """{graph: {"warning", "critical", "monitor"}} of the monitors the page's graphs show: error rate in
    %, latency percentiles in ms."""
    found = {}
    for monitor in monitors:
        graph = M.graphed_as(monitor)
        if graph:
            scale = 100 if graph == "error_rate" else 1000
            levels = monitor["options"]["thresholds"]
            found[graph] = {"warning": levels["warning"] * scale, "critical": levels["critical"] * scale,
                            "monitor": monitor["name"]}
    return found


def figures(traces, service, fault=None, monitors=()):
    """Everything the page draws, as data (embedded in the page, and what the tests read back)."""
    server = [s for t in traces for s in t if s.get("service") == service and s.get("name") == T.SERVER_SPAN]
    ends = [end_second(s) for s in server] or [0]
    first, last = min(ends), max(ends)
    if fault:
        first, last = min(first, fault["start"] // NS_PER_S), max(last, fault["start"] // NS_PER_S)
    seconds = list(range(first, last + 1))
    span_seconds = (max((s["start"] + s["duration"] for s in server), default=0)
                    - min((s["start"] for s in server), default=0)) / NS_PER_S or 1
    by_resource = {}
    for span in server:
        by_resource.setdefault(span["resource"], []).append(span)
    resources = []
    for i, (name, spans) in enumerate(sorted(by_resource.items())):
        resources.append({"name": name, "anchor": f"r{i}", "colour": PALETTE[i % len(PALETTE)],
                          "totals": totals(spans, span_seconds), "series": per_second(spans, seconds),
                          "distribution": distribution(spans), "traces": linked_traces(traces, service, name)})
    return {"service": service, "seconds": seconds, "resources": resources,
            "all": {"totals": totals(server, span_seconds), "series": per_second(server, seconds),
                    "distribution": distribution(server)},
            "map": service_map(traces, service),
            "fault": {"flag": fault["flag"], "at": fault["start"] / NS_PER_S} if fault else None,
            "thresholds": thresholds(monitors) if fault else {}}


def clock(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%H:%M:%S")


def fmt_ms(value):
    return f"{value:.3f} ms" if value < 100 else f"{value:,.0f} ms"


def map_svg(service_map_):
    """The map as SVG: a node per service, an arrow per edge labelled with its figures."""
    nodes = service_map_["nodes"]
    width, box_w, box_h, gap = 940, 200, 56, 150
    colours = {T.LOADGEN: trace_page.SERVICE_COLOURS[T.LOADGEN]}
    parts = []
    x = {name: 20 + i * (box_w + gap) for i, name in enumerate(nodes)}
    for i, name in enumerate(nodes):
        kind = ("client (load generator)", "web service", "database (inferred)")[i]
        fill = colours.get(name, trace_page.SERVICE_COLOURS["database"] if i == 2 else trace_page.SERVICE_COLOUR)
        parts.append(f'<g class="node" data-service="{html.escape(name)}"><rect x="{x[name]}" y="40" width="{box_w}" '
                     f'height="{box_h}" rx="8" fill="{fill}"/><text x="{x[name] + box_w / 2}" y="64" '
                     f'class="node-name">{html.escape(name)}</text><text x="{x[name] + box_w / 2}" y="84" '
                     f'class="node-kind">{html.escape(kind)}</text></g>')
    for e in service_map_["edges"]:
        x1, x2 = x[e["from"]] + box_w, x[e["to"]]
        middle = (x1 + x2) / 2
        parts.append(
            f'<g class="edge" data-from="{html.escape(e["from"])}" data-to="{html.escape(e["to"])}" '
            f'data-rate="{e["rate"]}" data-error-rate="{e["error_rate"]}" data-p99-ms="{e["p99_ms"]}">'
            f'<line x1="{x1 + 4}" y1="68" x2="{x2 - 10}" y2="68" marker-end="url(#arrow)"/>'
            f'<text x="{middle}" y="30">{e["rate"]:.1f} req/s</text>'
            f'<text x="{middle}" y="56">{e["error_rate"]:.1f}% errors</text>'
            f'<text x="{middle}" y="92">p99 {fmt_ms(e["p99_ms"])}</text>'
            f'<text x="{middle}" y="116" class="measured">{html.escape(e["measured_by"])}</text></g>')
    return (f'<svg class="service-map" viewBox="0 0 {width} 130" role="img" aria-label="service map">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="2" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>' + "".join(parts) + "</svg>")


def resource_table(data):
    head = ("Resource", "Requests", "Requests/s", "Total time", "p50", "p95", "p99", "Errors", "Error rate")
    keys = ("name", "hits", "rate", "total_ms", "p50_ms", "p95_ms", "p99_ms", "errors", "error_rate")
    rows = []
    # Sorted by requests, most first, as Datadog's resource list can be; a click on a column sorts by it.
    for r in sorted(data["resources"], key=lambda r: (-r["totals"]["hits"], r["name"])):
        t = r["totals"]
        cells = [f'<td data-value="{html.escape(r["name"])}"><a href="#{r["anchor"]}">'
                 f'<i class="dot" style="--colour:{r["colour"]}"></i>{html.escape(r["name"])}</a></td>',
                 f'<td data-value="{t["hits"]}">{t["hits"]}</td>', f'<td data-value="{t["rate"]}">{t["rate"]:.1f}</td>',
                 f'<td data-value="{t["total_ms"]}">{fmt_ms(t["total_ms"])}</td>',
                 *(f'<td data-value="{t[k]}">{fmt_ms(t[k])}</td>' for k in ("p50_ms", "p95_ms", "p99_ms")),
                 f'<td data-value="{t["errors"]}">{t["errors"]}</td>',
                 f'<td data-value="{t["error_rate"]}">{t["error_rate"]:.1f}%</td>']
        rows.append(f'<tr data-resource="{html.escape(r["name"])}">{"".join(cells)}</tr>')
    header = "".join(f'<th data-key="{k}">{h}</th>' for k, h in zip(keys, head))
    return f'<table class="resources" id="resource-table"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def trace_links(resource):
    def items(found):
        return "".join(f'<li><a class="trace-link" href="traces.html#t-{t["trace_id"]}">{fmt_ms(t["ms"])}</a> '
                       f'{html.escape(str(t["status"]))} at {t["at"]} UTC</li>' for t in found) or "<li>none</li>"
    return (f'<div class="traces"><div><h4>Slowest traces</h4><ol>{items(resource["traces"]["slowest"])}</ol></div>'
            f'<div><h4>Failed traces</h4><ol>{items(resource["traces"]["failed"])}</ol></div></div>')


def charts(prefix, title):
    """The placeholders the page's script draws into, one per graph."""
    return "".join(f'<div class="chart" data-chart="{prefix}:{kind}" aria-label="{html.escape(title)}: {label}"></div>'
                   for kind, label in (("requests", "requests/s"), ("error_rate", "error rate"),
                                       ("latency", "latency"), ("distribution", "latency distribution")))


def monitors_table(fault_data, monitors):
    rows = []
    for monitor in monitors:
        levels, unit = monitor["options"]["thresholds"], M.monitor_unit(monitor)
        cells = []
        for window in ("before", "during"):
            fired = [s for s in fault_data["monitors"][window] if s["monitor"] == monitor["name"] and s["state"] != "OK"]
            cells.append("<br>".join(f'<span class="state {s["state"].lower()}">{s["state"]}</span> '
                                     f'{html.escape(s["resource"])} ({s["value"]:.3f}{unit})' for s in fired)
                         or '<span class="state ok">OK</span>')
        rows.append(f'<tr><td>{html.escape(monitor["name"])}<div class="query">{html.escape(monitor["query"])}</div></td>'
                    f'<td>warning &gt; {levels["warning"]}{unit}, alert &gt; {levels["critical"]}{unit}</td>'
                    f'<td>{cells[0]}</td><td>{cells[1]}</td></tr>')
    return ('<table class="monitors"><thead><tr><th>provision\'s monitor</th><th>thresholds</th>'
            '<th>before</th><th>during</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def page_html(data, exporter=None, env=None, fault_data=None, monitors=()):
    service = data["service"]
    t = data["all"]["totals"]
    window = f"{clock(data['seconds'][0])} to {clock(data['seconds'][-1] + 1)} UTC" if data["seconds"] else ""
    facts = [f"env {html.escape(env)}" if env else "", f"exporter {html.escape(exporter)}" if exporter else "",
             window, f"{t['hits']} requests, {t['rate']:.1f}/s", f"{t['error_rate']:.1f}% errors",
             f"p99 {fmt_ms(t['p99_ms'])}"]
    fault = data["fault"]
    fault_line = (f'<p class="fault">FAULT={html.escape(fault["flag"])} switched on at '
                  f'{datetime.fromtimestamp(fault["at"], timezone.utc).strftime("%H:%M:%S.%f")[:-3]} UTC: the '
                  f'dashed line on every graph; provision\'s monitors\' thresholds on the error-rate and p99 '
                  f'graphs (warning orange, alert red).</p>' if fault else "")
    monitors_part = (f'<section id="monitors"><h2>Monitors</h2>{monitors_table(fault_data, monitors)}</section>'
                     if fault and fault_data else "")
    sections = "".join(
        f'<section class="resource" id="{r["anchor"]}" data-resource="{html.escape(r["name"])}">'
        f'<h3><i class="dot" style="--colour:{r["colour"]}"></i>{html.escape(r["name"])}</h3>'
        f'<p class="note">{r["totals"]["hits"]} requests, {r["totals"]["rate"]:.1f}/s, {r["totals"]["errors"]} errors, '
        f'p50 {fmt_ms(r["totals"]["p50_ms"])}, p99 {fmt_ms(r["totals"]["p99_ms"])}</p>'
        f'<div class="grid">{charts(r["name"], r["name"])}</div>{trace_links(r)}</section>'
        for r in data["resources"])
    nav = "".join(f'<a href="#{a}">{n}</a>' for a, n in (("map", "Map"), ("graphs", "Graphs"),
                                                         ("resources", "Resources")))
    payload = json.dumps(data).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(service)}: service page of a make local run</title>
<link rel="icon" href="data:,">
<style>{(UPLOT / "uPlot.min.css").read_text()}</style>
<style>{(HERE / "service_page.css").read_text()}</style></head><body>
<header><h1>{html.escape(service)}</h1><p class="facts">{" &middot; ".join(f for f in facts if f)}</p>{fault_line}
<nav>{nav}<a href="traces.html">All kept traces (traces.html)</a></nav></header>
<section id="map"><h2>Service map</h2>
<p class="note">Who called whom during the run, from the spans the test agent received: each edge
measured by the caller's spans (requests per second over their own time, error rate, p99).</p>
{map_svg(data["map"])}</section>
{monitors_part}
<section id="graphs"><h2>{html.escape(service)}: all resources</h2>
<p class="note">One-second buckets, each span counted in the second it ended (as the Datadog Agent
buckets trace stats). Latency is the service's request span, on a log scale.</p>
<div class="grid">{charts("service", service)}</div></section>
<section id="resources"><h2>Resources</h2>{resource_table(data)}</section>
{sections}
<script>{(UPLOT / "uPlot.iife.min.js").read_text()}</script>
<script type="application/json" id="run-data">{payload}</script>
<script>{(HERE / "service_page.js").read_text()}</script>
</body></html>
"""

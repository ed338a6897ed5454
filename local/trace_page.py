"""traces.html: the traces of a run, each a waterfall of its spans with their tags, in one
self-contained file (no network, no server).

It opens on what matters: the traces with an error, then the database routes' (loadgen's span, the
service's, its `mysql.query` spans), then the other requests; the service's startup work (the
schema's CREATE TABLE: a trace with no request) comes last, apart. Per resource it keeps the
slowest traces and every trace with an error, so that the page opens at once after a long run;
the service page (service_page.py) links only traces kept here. Standard library only.
"""

import html
from datetime import datetime, timezone

import traces as T

# The page keeps the slowest traces of each resource and every error: enough to look into, and a
# page that opens at once after a long run at a high rate.
SLOWEST_PER_RESOURCE = 50
# One colour per service, as Datadog's trace view colours spans; the database's spans (the service's
# client spans, which Datadog draws as the inferred database service) get their own.
SERVICE_COLOURS = {T.LOADGEN: "#1c7ed6", "database": "#e8590c"}
SERVICE_COLOUR = "#632ca6"


def span_service(span):
    """Who the span stands for on the map: its service, or for a query span the database it calls
    (the inferred service Datadog names from `db.name`/`db.instance`, then `out.host`)."""
    if span.get("name") == T.QUERY_SPAN:
        meta = span.get("meta", {})
        return f"mysql {meta.get('db.name') or meta.get('db.instance') or meta.get('out.host') or ''}".strip()
    return span.get("service", "")


def colour(span):
    if span.get("name") == T.QUERY_SPAN:
        return SERVICE_COLOURS["database"]
    return SERVICE_COLOURS.get(span.get("service"), SERVICE_COLOUR)


def kept_traces(traces, service):
    """The slowest traces of each resource and every trace with an error; every startup trace."""
    by_resource = {}
    kept = []
    for trace in traces:
        if not trace:
            continue
        if T.is_request(trace, service):
            by_resource.setdefault(T.resource_of(trace, service), []).append(trace)
        else:
            kept.append(trace)
    for resource_traces in by_resource.values():
        resource_traces.sort(key=T.duration, reverse=True)
        kept += resource_traces[:SLOWEST_PER_RESOURCE]
        kept += [t for t in resource_traces[SLOWEST_PER_RESOURCE:] if T.has_error(t)]
    return kept


SECTIONS = (
    ("errors", "Errors", "requests whose trace has an error span"),
    ("database", "Database routes", "requests whose service span ran statements: their mysql.query spans"),
    ("requests", "Other requests", "the seed's routes and paths no route matched"),
    ("startup", "The service's startup work", "no request: what the service did on its own at start "
                                              "(the schema), each its own trace"),
)


def section_of(trace, service):
    if not T.is_request(trace, service):
        return "startup"
    if T.has_error(trace):
        return "errors"
    return "database" if T.touches_database(trace) else "requests"


def sections(traces, service):
    """{section key: traces}, each by resource, then slowest first."""
    grouped = {key: [] for key, _, _ in SECTIONS}
    for trace in kept_traces(traces, service):
        grouped[section_of(trace, service)].append(trace)
    for found in grouped.values():
        found.sort(key=lambda t: (T.resource_of(t, service), -T.duration(t)))
    return grouped


def ms(nanoseconds):
    return f"{nanoseconds / 1e6:.3f} ms"


def tags_table(span):
    rows = [(key, value) for key, value in sorted(span.get("meta", {}).items())]
    rows += [(key, value) for key, value in sorted(span.get("metrics", {}).items())]
    rows += [("span_id", span.get("span_id")), ("parent_id", span.get("parent_id")), ("type", span.get("type", ""))]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="tags">{cells}</table>'


def trace_html(trace, service):
    tid = html.escape(T.trace_id(trace))
    start = T.start(trace)
    total = T.duration(trace) or 1
    when = datetime.fromtimestamp(start / 1e9, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    rows = []
    for depth, span in T.in_tree_order(trace):
        left = 100 * (span.get("start", 0) - start) / total
        width = max(100 * span.get("duration", 0) / total, 0.3)
        classes = "span error" if span.get("error") else "span"
        rows.append(
            f'<details class="{classes}" data-depth="{depth}" data-service="{html.escape(span_service(span))}" '
            f'style="--depth:{depth};--colour:{colour(span)}">'
            f'<summary><span class="name" title="{html.escape(span.get("resource", ""))}">'
            f'<i class="dot"></i>{html.escape(span_service(span))} '
            f'{html.escape(span.get("name", ""))} <b>{html.escape(span.get("resource", ""))}</b></span>'
            f'<span class="lane"><span class="bar" style="left:{left:.2f}%;width:{width:.2f}%"></span></span>'
            f'<span class="duration">{ms(span.get("duration", 0))}</span></summary>'
            f'{tags_table(span)}</details>')
    main = T.server_span(trace, service) or T.root_of(trace)
    status = html.escape(str(main.get("meta", {}).get("http.status_code", "")))
    path = " &rarr; ".join(html.escape(name) for name in dict.fromkeys(span_service(s) for _, s in T.in_tree_order(trace)))
    return (f'<details class="trace{" error" if T.has_error(trace) else ""}" id="t-{tid}" data-trace-id="{tid}">'
            f'<summary><b>{html.escape(T.resource_of(trace, service))}</b> {status} '
            f'<span class="duration">{ms(total)}</span> {len(trace)} span{"s" if len(trace) != 1 else ""} '
            f'({path}), {when} UTC, trace {tid}</summary><div class="waterfall">{"".join(rows)}</div></details>')


PAGE_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.note { color: #555; max-width: 60em; }
nav a { margin-right: 1.2em; }
.legend span { margin-right: 1.2em; } .dot { display: inline-block; width: .7em; height: .7em;
  border-radius: 50%; background: var(--colour); margin-right: .35em; }
details.trace { border-top: 1px solid #ddd; padding: .3em 0; }
details.trace > summary { cursor: pointer; }
details.trace.error > summary b { color: #b00; }
section.startup { background: #f7f7f7; padding: .2em 1em; }
.waterfall { margin: .4em 0 .6em 1em; }
details.span > summary { display: grid; grid-template-columns: 36em 1fr 7em; align-items: center;
  cursor: pointer; list-style: none; }
.name { padding-left: calc(var(--depth) * 1.2em); overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.lane { position: relative; height: 1em; background: #f3f3f3; }
.bar { position: absolute; top: 0; bottom: 0; background: var(--colour); }
details.span.error .bar { background: #c00; }
.duration { text-align: right; font-variant-numeric: tabular-nums; }
table.tags { margin: .3em 0 .6em calc(var(--depth) * 1.2em + 1em); border-collapse: collapse; font-size: 12px; }
table.tags th { text-align: left; font-weight: normal; color: #555; padding-right: 1em; }
"""
# Opens the trace the address names (traces.html#t-<trace id>), as the summary's and the service
# page's links do; with none, the first trace of the page (an error's, else a database route's).
PAGE_SCRIPT = """
function openFromHash() {
  const named = location.hash && document.getElementById(location.hash.slice(1));
  const trace = named || document.querySelector("section:not(.startup) details.trace");
  if (trace) { trace.open = true; if (named) trace.scrollIntoView(); }
}
window.addEventListener("hashchange", openFromHash);
openFromHash();
"""


def page_html(traces, service):
    grouped = sections(traces, service)
    spans = sum(len(t) for t in traces)
    shown = sum(len(found) for found in grouped.values())
    seen = {}
    for trace in traces:
        for span in trace:
            seen.setdefault(span_service(span), colour(span))
    legend = "".join(f'<span style="--colour:{c}"><i class="dot"></i>{html.escape(name)}</span>'
                     for name, c in seen.items())
    nav = "".join(f'<a href="#{key}">{title} ({len(grouped[key])})</a>' for key, title, _ in SECTIONS)
    body = "".join(
        f'<section id="{key}" class="{key}"><h2>{title} ({len(grouped[key])})</h2><p class="note">{note}</p>'
        f'{"".join(trace_html(t, service) for t in grouped[key])}</section>'
        for key, title, note in SECTIONS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(service)}: traces</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>{html.escape(service)}: {len(traces)} traces, {spans} spans received by the test agent</h1>
<p class="legend">Services: {legend}</p>
<nav>{nav}</nav>
<p class="note">Each trace as a waterfall of its spans: bars are placed in the trace's own time, a
child span under its parent, coloured by service. Open a trace, then a span for its tags. Shown:
{shown} traces, the {SLOWEST_PER_RESOURCE} slowest of each resource and every trace with an error,
by resource, slowest first. All of them, as the agent returned them: traces.json.</p>
{body}
<script>{PAGE_SCRIPT}</script>
</body></html>
"""

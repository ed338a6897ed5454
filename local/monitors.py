"""The service's monitors, as provision declares them for Datadog (`provision plan --json`), evaluated
on the spans the test agent received: what `make local FAULT=<flag>` reports before and during the
fault, and the thresholds the service page draws. Standard library only.

Each query is read as Datadog computes it from the spans: a term
`<aggregation>:trace.<operation>[.hits|.errors]{<tag filters>} by {<tags>}` selects the spans of that
operation with those tags (service, env, resource_name, else the span's meta) in each group; `.hits`
counts them, `.errors` counts those flagged as errors, `pNN` is the NNth percentile of their duration in
seconds (nearest rank here; Datadog's distribution estimates it with DDSketch). `a / b` divides per
group. Monitors of other metrics (my_metric's, from the Agent's check) have no spans here.
"""

import json
import os
import re
import subprocess

import traces as T

TRACE_TERM = re.compile(r"(?P<aggregation>\w+):trace\.(?P<operation>[\w.]+?)(?P<count>\.hits|\.errors)?"
                        r"\{(?P<filter>[^}]*)\}(?:\s+by\s+\{(?P<by>[^}]*)\})?(?:\.as_count\(\))?")
MONITOR_QUERY = re.compile(r"(?P<time>\w+)\(last_\w+\):(?P<expr>.+?)\s*>\s*(?P<threshold>[\d.]+)")


def percentile(values, q):
    """Nearest rank: the value at index int(q * n) of the sorted values (the largest for q * n >= n - 1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


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


def terms(monitor):
    """The query's metric terms (one, or a numerator and a denominator)."""
    expr = MONITOR_QUERY.fullmatch(monitor["query"])["expr"]
    return [TRACE_TERM.fullmatch(part.strip()) for part in expr.split(" / ")]


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
    values = [term_values(term, spans, start, end) for term in terms(monitor)]
    if len(values) == 1:
        return values[0]
    numerator, denominator = values
    return {group: numerator.get(group, 0) / hits for group, hits in sorted(denominator.items()) if hits}


def monitor_unit(monitor):
    return "s" if TRACE_TERM.search(monitor["query"])["aggregation"].startswith("p") else ""


def graphed_as(monitor):
    """Which of the service page's graphs shows what the monitor watches: "error_rate" for
    `<op>.errors / <op>.hits`, "pNN" for a latency percentile, None for another query."""
    found = terms(monitor)
    if [term["count"] for term in found] == [".errors", ".hits"]:
        return "error_rate"
    if len(found) == 1 and re.fullmatch(r"p\d+", found[0]["aggregation"]):
        return found[0]["aggregation"]
    return None


def window_figures(spans, service, start=None, end=None):
    """Per resource, over the server spans that started in [start, end) (ns; None: unbounded): hits,
    errors, error_rate, p99_s: what the monitors' metrics would be over that window."""
    figures = {}
    for span in spans:
        if span.get("service") != service or span.get("name") != T.SERVER_SPAN:
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

"""The pages a `make local` run writes, looked at as a person would: headless Chromium (browser.py)
opens them from disk with the network off. service.html: every graph drawn (its series, its axes
labelled, no console error, nothing fetched), one graph's points against the spans' own counts in
traces.json, the fault's marker at the switch time, provision's thresholds where its monitors put
them, the p99 line crossing the alert threshold after the marker, every trace link opening a trace
of traces.html. traces.html: the linked trace open, child spans under their parent in the trace's
time, requests first and the startup work apart.

The runs are the session's (local/runs.py): the 5 s run of docs/local.md's example, and a
`FAULT=routeLatencyTailMs` run.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

import browser  # noqa: E402
import monitors as M  # noqa: E402
import service_page  # noqa: E402
import trace_page  # noqa: E402
import traces as T  # noqa: E402
pytest.register_assert_rewrite("runs")  # a plugin too (below): its asserts say what failed
from runs import BIN_DIR  # noqa: E402

pytest_plugins = ["runs"]  # the runs and the browser the tests share (local/runs.py)

SERVICE = "apm-demo"
TIME_GRAPHS = ("requests", "error_rate", "latency")


def spans_of(out_dir):
    return [s for t in json.loads((out_dir / "traces.json").read_text()) for s in t]


@pytest.fixture(scope="module")
def local_page(local_run, chromium):
    """The 5 s run's service page, open."""
    with browser.offline_page(chromium) as visit:
        visit.page.goto((local_run[2] / "service.html").as_uri())
        visit.page.wait_for_function("Object.keys(window.serviceCharts || {}).length > 0")
        yield visit


@pytest.fixture(scope="module")
def fault_page(fault_run, chromium):
    with browser.offline_page(chromium) as visit:
        visit.page.goto((fault_run[1] / "service.html").as_uri())
        visit.page.wait_for_function("Object.keys(window.serviceCharts || {}).length > 0")
        yield visit


def drawn(page):
    """Per graph of the page: its placeholder's name, the uPlot it holds, what it shows."""
    return page.evaluate("""() => [...document.querySelectorAll(".chart")].map((el) => {
      const u = window.serviceCharts[el.dataset.chart];
      return u && {
        chart: el.dataset.chart, inside: el.contains(u.root), title: u.root.querySelector(".u-title")?.textContent,
        axes: u.axes.map((a) => a.label), ticks: u.axes.map((a) => (a._values || []).filter((v) => v).length),
        series: u.series.slice(1).map((s) => s.label), legend: u.root.querySelectorAll(".u-legend .u-series").length,
        points: u.data.slice(1).map((values) => values.filter((v) => v != null).length),
        paths: u.series.slice(1).map((s) => !!s._paths), width: u.over.clientWidth, height: u.over.clientHeight,
        faults: [...u.over.querySelectorAll(".fault-marker")].map((m) => ({
          value: +m.dataset.value, left: parseFloat(m.style.left), at: u.valToPos(+m.dataset.value, "x"), hidden: m.hidden})),
        thresholds: [...u.over.querySelectorAll(".threshold")].map((m) => ({
          level: m.classList[1], value: +m.dataset.value, top: parseFloat(m.style.top),
          at: u.valToPos(+m.dataset.value, "y"), hidden: m.hidden})),
      };
    })""")


def test_every_graph_of_the_service_page_is_drawn_offline(local_run, local_page):
    graphs = drawn(local_page.page)
    resources = json.loads((local_run[2] / "summary.json").read_text())["resources"]
    # The service's four graphs, and four per resource.
    assert len(graphs) == 4 * (1 + len(resources)), [g and g["chart"] for g in graphs]
    for graph in graphs:
        assert graph and graph["inside"], graph
        name = graph["chart"]
        assert graph["title"], name
        assert all(graph["axes"]) and all(graph["ticks"]), f"{name}: both axes labelled, with tick values"
        assert graph["legend"] == 1 + len(graph["series"]), f"{name}: a legend row per series (and the x)"
        assert all(graph["paths"]), f"{name}: every series drawn"
        assert sum(graph["points"]) > 0 and graph["width"] > 200 and graph["height"] > 100, name
        assert not graph["faults"] and not graph["thresholds"], f"{name}: no fault, no marks"
    service = next(g for g in graphs if g["chart"] == "service:requests")
    assert service["series"] == sorted(resources), "a line per resource"
    assert local_page.errors == [] and local_page.requests == [], "no console error, nothing fetched"


def test_a_graph_plots_the_spans_own_counts_per_second(local_run, local_page):
    """GET /api/apm's requests/s: each plotted point is the number of its server spans in traces.json
    that ended in that second."""
    resource = "GET /api/apm"
    spans = [s for s in spans_of(local_run[2]) if s["name"] == T.SERVER_SPAN and s["resource"] == resource]
    counted = {}
    for span in spans:
        second = (span["start"] + span["duration"]) // 1_000_000_000
        counted[second] = counted.get(second, 0) + 1
    x, hits = local_page.page.evaluate(f"() => window.serviceCharts[{json.dumps(resource + ':requests')}].data.slice(0, 2)")
    assert {second: n for second, n in zip(x, hits) if n} == counted
    assert sum(hits) == len(spans) == json.loads((local_run[2] / "summary.json").read_text())["resources"][resource]["hits"]
    assert x == list(range(x[0], x[-1] + 1)), "one point a second"
    # The service's graph plots the same line for the resource.
    lines = local_page.page.evaluate("""() => { const u = window.serviceCharts["service:requests"];
      return Object.fromEntries(u.series.slice(1).map((s, i) => [s.label, u.data[i + 1]])); }""")
    assert lines[resource] == hits


def links(page):
    return page.evaluate("() => [...document.querySelectorAll('a.trace-link')].map((a) => a.href)")


@pytest.mark.parametrize("run", ["local_run", "fault_run"])
def test_every_trace_link_opens_an_existing_trace(run, request, chromium):
    out_dir = request.getfixturevalue(run)[-1]
    received = {T.trace_id(t) for t in json.loads((out_dir / "traces.json").read_text())}
    with browser.offline_page(chromium) as visit:
        visit.page.goto((out_dir / "service.html").as_uri())
        found = links(visit.page)
        resources = visit.page.evaluate("() => document.querySelectorAll('section.resource').length")
        assert len(found) >= resources, "at least a slowest trace per resource"
        for href in found:
            assert href.startswith((out_dir / "traces.html").as_uri() + "#t-"), href
            trace = href.rsplit("#t-", 1)[1]
            assert trace in received, href
            visit.page.goto(href)
            opened = visit.page.evaluate(f"() => {{ const t = document.getElementById('t-{trace}');"
                                         f" return t && t.matches('details.trace') && t.open; }}")
            assert opened, f"{href} opens its trace"
        assert visit.errors == [] and visit.requests == []


def test_the_fault_marker_sits_at_the_switch_time_on_every_graph(fault_run, fault_page):
    fault = json.loads((fault_run[1] / "summary.json").read_text())["fault"]
    graphs = [g for g in drawn(fault_page.page) if g["chart"].rsplit(":", 1)[1] in TIME_GRAPHS]
    assert len(graphs) >= 3 * 8
    for graph in graphs:
        assert len(graph["faults"]) == 1, graph["chart"]
        marker = graph["faults"][0]
        assert marker["value"] == pytest.approx(fault["fault_start"] / 1e9, rel=0, abs=1e-3), graph["chart"]
        assert not marker["hidden"] and 0 < marker["left"] < graph["width"], graph["chart"]
        assert marker["left"] == pytest.approx(marker["at"], abs=0.5), f"{graph['chart']}: drawn at the switch time"
    # The page says when: the summary's moment, to the millisecond.
    printed = re.search(r"switched on at (\d\d:\d\d:\d\d)", fault_run[0]).group(1)
    assert f"FAULT=routeLatencyTailMs switched on at {printed}." in fault_page.page.inner_text("header")
    assert fault_page.errors == [] and fault_page.requests == []


def test_provisions_thresholds_are_drawn_on_the_graphs_its_monitors_watch(fault_page):
    error_rate, latency = M.provision_monitors("local", str(BIN_DIR / "provision"))
    expected = {"error_rate": {"warning": 100 * error_rate["options"]["thresholds"]["warning"],
                               "critical": 100 * error_rate["options"]["thresholds"]["critical"]},
                "latency": {"warning": 1000 * latency["options"]["thresholds"]["warning"],
                            "critical": 1000 * latency["options"]["thresholds"]["critical"]}}
    assert expected == {"error_rate": {"warning": 2, "critical": 5}, "latency": {"warning": 250, "critical": 500}}
    for graph in drawn(fault_page.page):
        kind = graph["chart"].rsplit(":", 1)[1]
        marks = {m["level"]: m for m in graph["thresholds"]}
        assert {level: m["value"] for level, m in marks.items()} == expected.get(kind, {}), graph["chart"]
        for mark in marks.values():
            assert not mark["hidden"] and mark["top"] == pytest.approx(mark["at"], abs=0.5), graph["chart"]


def test_the_p99_graph_crosses_the_alert_threshold_after_the_marker(fault_run, fault_page):
    """FAULT=routeLatencyTailMs: GET /api/trace's p99 is above the monitor's alert threshold in some
    second after the flag went on, and in none before; the run printed the page's path."""
    x, p50, p95, p99 = fault_page.page.evaluate("() => window.serviceCharts['GET /api/trace:latency'].data")
    fault_s = json.loads((fault_run[1] / "summary.json").read_text())["fault"]["fault_start"] / 1e9
    alert = next(g for g in drawn(fault_page.page) if g["chart"] == "GET /api/trace:latency")["thresholds"]
    alert = next(m["value"] for m in alert if m["level"] == "critical")
    # Each point is the second's p99 (nearest rank) of the route's server spans that ended in it.
    ended = {}
    for span in spans_of(fault_run[1]):
        if span["name"] == T.SERVER_SPAN and span["resource"] == "GET /api/trace":
            ended.setdefault((span["start"] + span["duration"]) // 1_000_000_000, []).append(span["duration"] / 1e6)
    assert {s: v for s, v in zip(x, p99) if v is not None} == {
        s: pytest.approx(sorted(d)[min(len(d) - 1, int(0.99 * len(d)))], abs=1e-4) for s, d in ended.items()}
    # A second's bucket holds the spans that ended in it: one that ends before the switch began before it.
    assert [v for second, v in zip(x, p99) if v is not None and second + 1 <= fault_s and v > alert] == []
    assert any(v is not None and v > alert for second, v in zip(x, p99) if second >= fault_s)
    assert fault_run[0].rstrip("\n").splitlines()[-1].endswith(f"file://{fault_run[1] / 'service.html'}")


def test_the_service_map_is_the_runs_callers(local_run, local_page):
    spans = spans_of(local_run[2])
    edges = local_page.page.evaluate("""() => [...document.querySelectorAll("svg.service-map .edge")].map((e) =>
      ({from: e.dataset.from, to: e.dataset.to, rate: +e.dataset.rate, text: e.textContent}))""")
    assert [(e["from"], e["to"]) for e in edges] == [("loadgen", SERVICE), (SERVICE, "mysql apm_demo")]
    requests = json.loads((local_run[2] / "summary.json").read_text())["loadgen"]["requests"]
    # 50 requests a second asked of loadgen; the database edge, a query span per statement of a request.
    assert edges[0]["rate"] == pytest.approx(50, rel=0.1)
    queries = [s for s in spans if s["name"] == T.QUERY_SPAN and s["parent_id"]]
    start = min(s["start"] for s in queries)
    end = max(s["start"] + s["duration"] for s in queries)
    assert edges[1]["rate"] == pytest.approx(len(queries) / ((end - start) / 1e9), rel=0.01)
    assert requests > 0 and "req/s" in edges[0]["text"] and "p99" in edges[1]["text"]
    nodes = local_page.page.evaluate("() => [...document.querySelectorAll('svg.service-map .node')].map((n) => n.dataset.service)")
    assert nodes == ["loadgen", SERVICE, "mysql apm_demo"]


def test_the_trace_page_of_a_run_opens_at_the_linked_trace(local_run, chromium):
    out, _, out_dir = local_run
    link = re.search(r"the slowest .*: (file://\S+#t-(\d+))", out)
    assert link, out
    with browser.offline_page(chromium) as visit:
        visit.page.goto(link.group(1))
        opened = visit.page.evaluate("() => [...document.querySelectorAll('details.trace[open]')].map((t) => t.id)")
        assert opened == [f"t-{link.group(2)}"], "the linked trace is open, and only it"
        text = visit.page.inner_text("body")
        for resource in ("GET /api/apm", "GET /api/trace", "GET 404"):
            assert resource in text
        assert visit.page.locator(f"#t-{link.group(2)} table.tags").count() > 0, "span tags are on the page"
        assert visit.errors == [] and visit.requests == []


def test_the_trace_page_opens_on_errors_and_database_routes_with_the_startup_work_apart(local_run, chromium):
    traces = json.loads((local_run[2] / "traces.json").read_text())
    with browser.offline_page(chromium) as visit:
        visit.page.goto((local_run[2] / "traces.html").as_uri())
        sections = visit.page.evaluate("() => [...document.querySelectorAll('section')].map((s) => [s.id, "
                                       "[...s.querySelectorAll('details.trace')].map((t) => t.dataset.traceId)])")
        opened = visit.page.evaluate("() => [...document.querySelectorAll('details.trace[open]')].map((t) => t.closest('section').id)")
        legend = visit.page.inner_text(".legend")
    assert [name for name, _ in sections] == ["errors", "database", "requests", "startup"]
    found = dict(sections)
    by_id = {T.trace_id(t): t for t in traces}
    assert opened == ["errors" if found["errors"] else "database"], "opens on the first error, else a database route"
    assert all(T.touches_database(by_id[i]) and T.is_request(by_id[i], SERVICE) for i in found["database"])
    assert all(not T.touches_database(by_id[i]) for i in found["requests"])
    startup = [T.trace_id(t) for t in traces if not T.is_request(t, SERVICE)]
    assert startup and found["startup"] == startup, "the schema's work, apart"
    assert "CREATE TABLE" in by_id[startup[0]][0]["resource"]
    for name in ("loadgen", SERVICE, "mysql apm_demo"):
        assert name in legend, "the three services"


def test_the_trace_page_draws_child_spans_under_their_parent_in_the_trace_time(tmp_path, chromium):
    ms = 1_000_000
    parent = {"trace_id": 7, "span_id": 1, "parent_id": 0, "service": "apm-demo", "name": "http.server.request",
              "resource": "GET /orders", "start": 1_000 * ms, "duration": 10 * ms, "error": 0,
              "meta": {"http.status_code": "200"}, "metrics": {}}
    child = {"trace_id": 7, "span_id": 2, "parent_id": 1, "service": "apm-demo", "name": "mysql.query",
             "resource": "SELECT * FROM orders WHERE id = ?", "start": 1_002 * ms, "duration": 3 * ms, "error": 1,
             "meta": {"db.system": "mysql", "db.name": "shop"}, "metrics": {}}
    page = tmp_path / "traces.html"
    page.write_text(trace_page.page_html([[child, parent]], "apm-demo"))
    with browser.offline_page(chromium) as visit:
        visit.page.goto(page.as_uri() + "#t-7")
        assert visit.page.evaluate("() => document.getElementById('t-7').open"), "the trace the address names is open"
        rows = visit.page.evaluate("""() => [...document.querySelectorAll("#t-7 details.span")].map((s) => {
          const lane = s.querySelector(".lane").getBoundingClientRect(), bar = s.querySelector(".bar").getBoundingClientRect();
          return [s.className, s.dataset.depth, s.dataset.service, s.querySelector("b").textContent,
                  Math.round(100 * (bar.left - lane.left) / lane.width), Math.round(100 * bar.width / lane.width),
                  s.querySelector(".name").getBoundingClientRect().left];
        })""")
        text = visit.page.inner_text("#t-7")
    assert [row[:6] for row in rows] == [["span", "0", "apm-demo", "GET /orders", 0, 100],
                                         ["span error", "1", "mysql shop", "SELECT * FROM orders WHERE id = ?", 20, 30]]
    assert "3.000 ms" in text


def test_the_pages_need_nothing_but_themselves(local_run):
    """Self-contained: no script, style or image is loaded from anywhere (the browser checks above
    also refuse any request)."""
    for name in ("service.html", "traces.html"):
        page = (local_run[2] / name).read_text()
        assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#|traces\.html|data:)""", page), name


def test_the_vendored_uplot_is_the_registrys_release_with_its_license():
    """local/vendor/uplot/ holds uPlot's files as npm's uplot 1.6.32 ships them: README.md records each
    file's sha256, checked here (an edit by hand, or an update without its record, fails)."""
    vendor = service_page.UPLOT
    recorded = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", (vendor / "README.md").read_text(), re.M))
    assert set(recorded) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in recorded.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert (vendor / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT License" in (vendor / "LICENSE").read_text()

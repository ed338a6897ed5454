"""The service page's figures (service_page.py) against figures computed by hand: one-second buckets
by the second a span ended, rates, percentiles, the distribution, the map's edges, the links, and
which graphs provision's monitors' thresholds go on."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

import monitors as M  # noqa: E402
import service_page as P  # noqa: E402
import trace_page  # noqa: E402
import traces as T  # noqa: E402

S = 1_000_000_000
MS = 1_000_000
T0 = 1_800_000_000 * S


def trace(n, resource, at_s, duration_ms, error=0, queries=0):
    """loadgen's span -> the server span -> `queries` query spans."""
    tid = 1000 + n
    client = {"trace_id": tid, "span_id": 3 * n + 1, "parent_id": 0, "service": "loadgen", "name": T.CLIENT_SPAN,
              "resource": resource, "start": T0 + int(at_s * S), "duration": int(duration_ms * MS) + MS, "error": error}
    server = {"trace_id": tid, "span_id": 3 * n + 2, "parent_id": 3 * n + 1, "service": "apm-demo",
              "name": T.SERVER_SPAN, "resource": resource, "start": T0 + int(at_s * S) + MS // 2,
              "duration": int(duration_ms * MS), "error": error, "meta": {"http.status_code": "500" if error else "200"}}
    spans = [client, server]
    for q in range(queries):
        spans.append({"trace_id": tid, "span_id": 10_000 * n + q, "parent_id": 3 * n + 2, "service": "apm-demo",
                      "name": T.QUERY_SPAN, "resource": "SELECT 1", "start": server["start"], "duration": MS,
                      "error": 0, "meta": {"db.name": "shop"}})
    return spans


def traces():
    """GET /a: 0.0-0.9 s, ten at 2 ms (the one at 0.9 s ends after 0.9 s: second 0), and at 1.5 s one
    of 600 ms (ends at 2.1 s: second 2) with an error. POST /b: two at 1.2 s, 4 ms, two queries each.
    And the startup trace: a lone query span."""
    out = [trace(i, "GET /a", i / 10, 2) for i in range(10)]
    out.append(trace(10, "GET /a", 1.5, 600, error=1))
    out += [trace(11 + i, "POST /b", 1.2, 4, queries=2) for i in range(2)]
    out.append([{"trace_id": 9, "span_id": 9, "parent_id": 0, "service": "apm-demo", "name": T.QUERY_SPAN,
                 "resource": "CREATE TABLE t", "start": T0 - S, "duration": 5 * MS, "error": 0, "meta": {}}])
    return out


def test_buckets_are_the_seconds_spans_ended_in():
    data = P.figures(traces(), "apm-demo")
    assert data["seconds"] == [1_800_000_000, 1_800_000_001, 1_800_000_002]
    a, b = data["resources"]
    assert (a["name"], b["name"]) == ("GET /a", "POST /b")
    assert a["series"]["hits"] == [10, 0, 1] and a["series"]["errors"] == [0, 0, 1]
    assert a["series"]["error_rate"] == [0.0, None, 100.0]
    assert a["series"]["p99"] == [2.0, None, 600.0] and a["series"]["p50"] == [2.0, None, 600.0]
    assert b["series"]["hits"] == [0, 2, 0]
    assert data["all"]["series"]["hits"] == [10, 2, 1]


def test_totals_and_the_distribution():
    data = P.figures(traces(), "apm-demo")
    a = data["resources"][0]["totals"]
    # 11 spans over the server spans' own time: from 0.0005 s to 2.1005 s.
    assert a["hits"] == 11 and a["errors"] == 1 and a["rate"] == round(11 / 2.1, 3)
    assert a["p50_ms"] == 2.0 and a["p99_ms"] == 600.0 and a["total_ms"] == 620.0
    # 2 ms: log10 = 0.301, bucket 1 of 5 a decade (edge 0.2); 600 ms: 2.778, bucket 13 (edge 2.6).
    dist = data["resources"][0]["distribution"]
    assert dist["edges"][0] == 0.2 and dist["edges"][-1] == 2.6
    assert dist["counts"][0] == 10 and dist["counts"][-1] == 1 and sum(dist["counts"]) == 11


def test_the_map_is_measured_by_the_callers_spans_and_leaves_the_startup_out():
    found = P.service_map(traces(), "apm-demo")
    assert found["nodes"] == ["loadgen", "apm-demo", "mysql shop"]
    client, database = found["edges"]
    assert (client["from"], client["to"], client["spans"], client["errors"]) == ("loadgen", "apm-demo", 13, 1)
    assert client["measured_by"] == "loadgen's client spans"
    assert (database["spans"], database["rate"]) == (4, round(4 / 0.001, 2))
    assert database["p99_ms"] == 1.0


def test_linked_traces_are_the_slowest_and_the_failed_and_all_kept_in_traces_html():
    all_traces = traces()
    links = P.linked_traces(all_traces, "apm-demo", "GET /a")
    assert [t["trace_id"] for t in links["failed"]] == ["1010"]
    assert links["slowest"][0]["trace_id"] == "1010" and len(links["slowest"]) == P.LINKED_PER_RESOURCE
    kept = {T.trace_id(t) for t in trace_page.kept_traces(all_traces, "apm-demo")}
    assert {t["trace_id"] for t in links["slowest"] + links["failed"]} <= kept


def test_thresholds_go_on_the_graphs_of_the_monitors_queries():
    error_rate, latency = M.provision_monitors("local")
    assert M.graphed_as(error_rate) == "error_rate" and M.graphed_as(latency) == "p99"
    p50 = dict(latency, query=latency["query"].replace("p99:", "p50:"))
    assert M.graphed_as(p50) == "p50"
    found = P.thresholds([error_rate, latency])
    assert found["error_rate"]["warning"] == 2.0 and found["error_rate"]["critical"] == 5.0
    assert found["p99"]["warning"] == 250.0 and found["p99"]["critical"] == 500.0
    # Only a fault run draws them.
    assert P.figures(traces(), "apm-demo", None, [error_rate, latency])["thresholds"] == {}
    fault = {"flag": "f", "start": T0 + S}
    with_fault = P.figures(traces(), "apm-demo", fault, [error_rate, latency])
    assert with_fault["thresholds"] == found and with_fault["fault"] == {"flag": "f", "at": 1_800_000_001.0}

"""`make local FAULT=<flag>`'s summary: the windows before and during the fault, and the states of
provision's monitors (their queries as `provision plan --json` prints them, evaluated on the spans),
against figures computed by hand; local/flags/flags.json; and FAULT's refusal of a name that file does
not have."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

import monitors as M  # noqa: E402
import traces as T  # noqa: E402

START = 1_800_000_000_000_000_000  # ns
FAULT_AT = START + 10_000_000_000  # 10 s later


ENV = "demo"
BIN_DIR = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                         check=True).stdout.strip()


def span(resource, at_s, duration_ms, error=0, service="apm-demo", env=ENV):
    return {"service": service, "name": T.SERVER_SPAN, "resource": resource,
            "start": START + int(at_s * 1e9), "duration": int(duration_ms * 1e6), "error": error,
            "meta": {"env": env}}


def monitors():
    """The service's monitors of env ENV, from the release provision (what `make local` runs)."""
    return M.provision_monitors(ENV, os.path.join(BIN_DIR, "provision"))


def spans():
    """Before (0-10 s): /api/trace 100 hits, 1 error, 99 at 2 ms and 1 at 300 ms; / 50 hits at 1 ms.
    During (10-20 s): /api/trace 100 hits, 8 errors, 97 at 2 ms and 3 at 600 ms; / 50 hits at 1 ms.
    Plus spans the summary must ignore: another service's, and a client span."""
    out = []
    for i in range(100):
        out.append(span("GET /api/trace", i * 0.1, 300 if i == 50 else 2, error=int(i == 7)))
        out.append(span("GET /api/trace", 10 + i * 0.1, 600 if i in (10, 20, 30) else 2, error=int(i < 8)))
    for i in range(50):
        out.append(span("GET /", i * 0.2, 1))
        out.append(span("GET /", 10 + i * 0.2, 1))
    out.append(span("GET /api/trace", 15, 5000, error=1, service="other"))
    out.append({**span("GET /api/trace", 15, 5000, error=1), "name": "mysql.query"})
    return out


def test_windows_split_at_the_fault_with_hand_computed_figures():
    before = M.window_figures(spans(), "apm-demo", end=FAULT_AT)
    during = M.window_figures(spans(), "apm-demo", start=FAULT_AT)
    assert before["GET /api/trace"]["hits"] == 100
    assert before["GET /api/trace"]["errors"] == 1
    assert before["GET /api/trace"]["error_rate"] == 0.01
    # p99 of 100 values, nearest rank as the summary's percentile(): index int(0.99 * 100) = 99, the
    # largest: the one 300 ms span.
    assert before["GET /api/trace"]["p99_s"] == 0.3
    assert during["GET /api/trace"]["errors"] == 8
    assert during["GET /api/trace"]["error_rate"] == 0.08
    assert during["GET /api/trace"]["p99_s"] == 0.6
    assert before["GET /"] == during["GET /"] == {"hits": 50, "errors": 0, "error_rate": 0.0, "p99_s": 0.001}


def test_the_monitors_are_provisions_service_monitors():
    found = monitors()
    assert [m["name"] for m in found] == ["apm-demo: error rate by resource (env:demo)",
                                          "apm-demo: p99 latency by resource (env:demo)"]
    for monitor in found:
        assert "{service:apm-demo,env:demo} by {resource_name}" in monitor["query"]
        thresholds = monitor["options"]["thresholds"]
        assert monitor["query"].endswith(f"> {thresholds['critical']}"), monitor["name"]
        assert thresholds["warning"] < thresholds["critical"]


def test_each_query_evaluates_to_the_hand_computed_figures():
    error_rate, latency = monitors()
    assert M.monitor_values(error_rate, spans(), end=FAULT_AT) == {"GET /": 0.0, "GET /api/trace": 0.01}
    assert M.monitor_values(error_rate, spans(), start=FAULT_AT) == {"GET /": 0.0, "GET /api/trace": 0.08}
    assert M.monitor_values(latency, spans(), end=FAULT_AT) == {"GET /": 0.001, "GET /api/trace": 0.3}
    assert M.monitor_values(latency, spans(), start=FAULT_AT) == {"GET /": 0.001, "GET /api/trace": 0.6}
    # The other service's 5 s error span and the client span are outside the query's scope, and so is
    # the service's own in another env.
    other_env = spans() + [span("GET /api/trace", 15, 5000, error=1, env="prod")]
    assert M.monitor_values(error_rate, other_env, start=FAULT_AT)["GET /api/trace"] == 0.08
    assert M.monitor_values(latency, other_env, start=FAULT_AT)["GET /api/trace"] == 0.6
    assert M.monitor_unit(latency) == "s" and M.monitor_unit(error_rate) == ""


def test_the_evaluation_follows_the_query_not_a_fixed_metric():
    error_rate, latency = monitors()
    # Overall rather than by resource: the 8 errors over 150 spans.
    overall = dict(error_rate, query=error_rate["query"].replace(" by {resource_name}", ""))
    assert M.monitor_values(overall, spans(), start=FAULT_AT) == {"*": 8 / 150}
    # p50 rather than p99; another env.
    p50 = dict(latency, query=latency["query"].replace("p99:", "p50:"))
    assert M.monitor_values(p50, spans(), start=FAULT_AT)["GET /api/trace"] == 0.002
    prod = dict(latency, query=latency["query"].replace("env:demo", "env:prod"))
    other_env = spans() + [span("GET /api/trace", 15, 5000, error=1, env="prod")]
    assert M.monitor_values(prod, other_env, start=FAULT_AT) == {"GET /api/trace": 5.0}


def test_the_monitors_would_warn_and_alert_as_their_thresholds_say():
    found = monitors()
    before = M.monitor_states(found, spans(), end=FAULT_AT)
    during = M.monitor_states(found, spans(), start=FAULT_AT)
    error_rate, latency = (m["name"] for m in found)

    def state(states, monitor, resource):
        return next(s["state"] for s in states if s["monitor"] == monitor and s["resource"] == resource)

    # Error rate: 1% before (OK: warning above 2%), 8% during (ALERT: above 5%).
    assert state(before, error_rate, "GET /api/trace") == "OK"
    assert state(during, error_rate, "GET /api/trace") == "ALERT"
    # p99: 0.3 s before (WARN: above 0.25 s), 0.6 s during (ALERT: above 0.5 s).
    assert state(before, latency, "GET /api/trace") == "WARN"
    assert state(during, latency, "GET /api/trace") == "ALERT"
    assert {state(w, m, "GET /") for w in (before, during) for m in (error_rate, latency)} == {"OK"}
    assert len(before) == len(during) == 4


def test_the_printed_report_names_what_fired_and_when():
    lines, data = M.fault_report(spans(), "apm-demo", "routeFailure", FAULT_AT, monitors())
    text = "\n".join(lines)
    assert text.startswith("FAULT=routeFailure: before")
    assert "apm-demo: error rate by resource (env:demo): warning > 0.02, alert > 0.05" in text
    assert "during: ALERT on GET /api/trace (0.080)" in text
    assert "before: WARN on GET /api/trace (0.300s)" in text
    row = next(line for line in lines if line.startswith("GET /api/trace"))
    assert row.split() == ["GET", "/api/trace", "100", "1", "1.0", "300.000", "100", "8", "8.0", "600.000"]
    assert data["during"]["GET /api/trace"]["errors"] == 8


def test_flags_json_has_every_flag_off_and_described():
    flags = json.loads((ROOT / "local" / "flags" / "flags.json").read_text())["flags"]
    assert set(flags) == {"routeLatencyMs", "routeLatencyTailMs", "routeFailure", "routePanic", "memoryLeakKb",
                          "dbQueryFailure", "dbSlowQueryMs", "dbPoolExhaustionMs"}
    for key, flag in flags.items():
        assert flag["state"] == "DISABLED", key
        assert flag["metadata"]["description"], key


def test_an_unknown_fault_is_refused_with_the_flags_named(tmp_path):
    result = subprocess.run([str(ROOT / "local" / "run.sh")], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, OUT=str(tmp_path), FAULT="noSuchFlag", BIN_DIR=str(tmp_path)),
                            timeout=60)
    assert result.returncode == 1
    assert "FAULT=noSuchFlag is not a flag of local/flags/flags.json: routeLatencyMs, routeLatencyTailMs, " \
           "routeFailure, routePanic, memoryLeakKb, dbQueryFailure, dbSlowQueryMs, dbPoolExhaustionMs" \
           in result.stderr, result.stderr


def test_a_fault_run_of_make_local_reports_what_its_spans_say(tmp_path):
    """`FAULT=routeFailure` for real (release binaries, the test agent): the summary's windows and
    monitor states, recomputed here from the traces the run kept."""
    bin_dir = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
    result = subprocess.run([str(ROOT / "local" / "run.sh")], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, OUT=str(tmp_path), FAULT="routeFailure", DURATION="6s",
                                     RATE="100", PORT="0", BIN_DIR=bin_dir), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAULT=routeFailure: switched on" in result.stdout
    # The flag's description, from its metadata in local/flags/flags.json.
    assert "s into the load: An error rate: 10% of GET /api/trace answer 500\n" in result.stdout
    fault = json.loads((tmp_path / "summary.json").read_text())["fault"]
    # The run's spans are DD_ENV=local's (local/run.sh): the monitors of that env.
    (error_rate, _) = M.provision_monitors("local", os.path.join(bin_dir, "provision"))
    thresholds = error_rate["options"]["thresholds"]
    spans = [s for trace in json.loads((tmp_path / "traces.json").read_text()) for s in trace
             if s["name"] == T.SERVER_SPAN]
    for window, in_window in (("before", lambda s: s["start"] < fault["fault_start"]),
                              ("during", lambda s: s["start"] >= fault["fault_start"])):
        for resource, row in fault[window].items():
            mine = [s for s in spans if s["resource"] == resource and in_window(s)]
            errors = sum(s["error"] for s in mine)
            assert (row["hits"], row["errors"]) == (len(mine), errors), (window, resource)
            tagged = sum(s["meta"].get("fault.injected") == "routeFailure" for s in mine)
            assert tagged == errors, (window, resource)
            rate_state = next(m["state"] for m in fault["monitors"][window]
                              if m["resource"] == resource and "error rate" in m["monitor"])
            rate = errors / len(mine)
            warning, critical = thresholds["warning"], thresholds["critical"]
            assert rate_state == ("ALERT" if rate > critical else "WARN" if rate > warning else "OK"), (window, resource)
    # Only the route asked, and only once the flag was on (100 requests/s for 4 s, 30% of them to
    # /api/trace, 10% of those: ~12 errors expected; none has a chance of 0.9^120, 3 in a million).
    assert fault["during"]["GET /api/trace"]["errors"] > 0
    assert sum(row["errors"] for row in fault["before"].values()) == 0
    assert sum(row["errors"] for r, row in fault["during"].items() if r != "GET /api/trace") == 0
    assert "during: " in result.stdout and "apm-demo: error rate by resource (env:local)" in result.stdout

"""Parity on the wire with Datadog's own tracer, for each of the service's two exporters.

The seed's Flask app (bench/seed_app/APM.py) runs under `ddtrace-run` (ddtrace pinned in
requirements.txt) and this service's release binary runs beside it twice, once with each exporter
(`TRACE_EXPORTER`); all send to one Datadog test agent
(ddapm-test-agent) on free loopback ports, and both get the same requests: the three seed routes, a 404,
a 405, and every propagation case of the conformance suite (Datadog headers with and without a priority,
W3C `traceparent`, malformed headers), plus what a caller traced by a Datadog tracer sends (priority 2
and `x-datadog-tags` with the high bits of a 128-bit id and the decision maker). For each request, the
service-entry span of each tracer is reduced to its shape: the top-level fields (with the values that
are the contract: name, resource, type, error), how its ids relate to the incoming headers (continued,
new, zero), every meta and metrics key with the shape of its value (type, and for ids their width:
decimal, 16 or 32 hex digits), and the values of the sampling and ingestion keys
(`_sampling_priority_v1`, `_dd.measured`, `_dd.p.dm`, `_dd.origin`) and of the HTTP keys trace metrics
are tagged with. Durations, timestamps and random ids are never compared.

Every difference found must be listed, per exporter, in expected_differences.json
(opentelemetry-datadog) or expected_differences.datadog-opentelemetry.json with its decision and
reason; the test fails when a difference appears that is not listed, and when a listed one no longer
appears (so that a closed gap is removed from the list, and the docs' lists stay true). Run it alone with `make
test-parity`; `python tests/parity/test_parity.py` prints the differences as a table.

It also checks that the access-log lines keep their trace correlation with 128-bit trace ids: as
Datadog's Go and Java tracers do by default (and dd-trace-py's structlog and loguru integrations),
`dd.trace_id` is the low 64 bits in decimal, the span's `trace_id`; Datadog matches it with the full id."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_BIN = ROOT / ".venv" / "bin"
SEED_APP = ROOT / "bench" / "seed_app"
sys.path.insert(0, str(ROOT / "local"))
from ports import free_port  # noqa: E402  (the project's one free_port)

EXPORTERS = ("opentelemetry-datadog", "datadog-opentelemetry")
EXPECTED = {
    "opentelemetry-datadog": HERE / "expected_differences.json",
    "datadog-opentelemetry": HERE / "expected_differences.datadog-opentelemetry.json",
}

W3C_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"  # pragma: allowlist secret (the W3C example trace id)
W3C_PARENT_ID = "00f067aa0ba902b7"
CALLER_TID = "6b0781f000000000"

# The conformance suite's requests (tests/conformance.rs), and a Datadog-traced caller: name, method,
# path, headers.
CASES = [
    ("root", "GET", "/", {}),
    ("apm", "GET", "/api/apm", {}),
    ("trace", "GET", "/api/trace", {}),
    ("unmatched", "GET", "/no/such/page", {}),
    ("wrong-method", "POST", "/api/apm", {}),
    ("datadog-headers", "GET", "/api/trace", {"x-datadog-trace-id": "12345", "x-datadog-parent-id": "67890",
                                              "x-datadog-sampling-priority": "1", "x-datadog-origin": "synthetics"}),
    ("datadog-no-priority", "GET", "/api/apm", {"x-datadog-trace-id": "555", "x-datadog-parent-id": "666"}),
    ("traceparent", "GET", "/", {"traceparent": f"00-{W3C_TRACE_ID}-{W3C_PARENT_ID}-01"}),
    # Not in the conformance suite: what a caller traced by a Datadog tracer sends (a 128-bit trace id
    # whose high bits are in x-datadog-tags, a manual keep: priority 2, decision maker -4).
    ("datadog-caller", "GET", "/api/trace", {"x-datadog-trace-id": "1234567", "x-datadog-parent-id": "7654321",
                                             "x-datadog-sampling-priority": "2",
                                             "x-datadog-tags": f"_dd.p.dm=-4,_dd.p.tid={CALLER_TID}"}),
    ("malformed", "GET", "/api/apm", {"x-datadog-trace-id": "12ab", "x-datadog-parent-id": "-1",
                                      "traceparent": "00-zz-yy-01"}),
]
CASE_NAMES = [case[0] for case in CASES]
# What the incoming headers say the span's ids must be, when they continue a trace.
INCOMING = {
    "datadog-headers": (12345, 67890, None),
    "datadog-no-priority": (555, 666, None),
    "traceparent": (int(W3C_TRACE_ID[16:], 16), int(W3C_PARENT_ID, 16), W3C_TRACE_ID[:16]),
    "datadog-caller": (1234567, 7654321, CALLER_TID),
}
# Top-level fields whose values are the span contract, and the sampling and ingestion metadata Datadog's
# backend reads, compared as values.
VALUE_FIELDS = ("name", "resource", "type", "error")
VALUE_KEYS = ("metrics._sampling_priority_v1", "metrics._dd.measured", "meta._dd.p.dm", "meta._dd.origin",
              "meta.span.kind", "meta.http.method", "meta.http.status_code", "meta.http.route")
TRACERS = ("ddtrace",) + EXPORTERS


def release_dir():
    out = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def wait_until(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Processes:
    """Background processes, stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self):
        self.running = []

    def start(self, argv, env, log):
        process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
        self.running.append(process)
        return process

    def stop(self, process):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self):
        for process in reversed(self.running):
            self.stop(process)


def send(port, method, path, headers, case):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers={**headers, "User-Agent": f"parity/{case}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def run_both(workdir):
    """Runs ddtrace and the service with each exporter against one test agent with the same requests.
    Returns the agent's traces, each service's log lines, and the statuses each server answered."""
    processes = Processes()
    agent_port, seed_port = free_port(), free_port()
    ports = {exporter: free_port() for exporter in EXPORTERS}
    agent_url = f"http://127.0.0.1:{agent_port}"
    common = {"DD_TRACE_AGENT_URL": agent_url, "DD_ENV": "parity", "DD_VERSION": "9.9.9"}
    logs = {exporter: workdir / f"apm-demo-{exporter}.log" for exporter in EXPORTERS}
    try:
        processes.start([str(VENV_BIN / "ddapm-test-agent"), "--port", str(agent_port),
                         "--otlp-http-port", str(free_port()), "--otlp-grpc-port", str(free_port())], {},
                        open(workdir / "test-agent.log", "w"))
        wait_until(lambda: listening(agent_port), "the test agent listens")
        seed = processes.start([str(VENV_BIN / "ddtrace-run"), str(VENV_BIN / "flask"), "--app", "APM", "run",
                                "--host", "127.0.0.1", "--port", str(seed_port)],
                               {**common, "PYTHONPATH": str(SEED_APP), "DD_SERVICE": "parity-seed"},
                               open(workdir / "seed.log", "w"))
        ours = [processes.start([str(release_dir() / "apm-demo")],
                                {**common, "HOST": "127.0.0.1", "PORT": str(ports[exporter]), "LOG_FORMAT": "json",
                                 "DD_SERVICE": f"parity-{exporter}", "TRACE_EXPORTER": exporter},
                                open(logs[exporter], "w"))
                for exporter in EXPORTERS]
        wait_until(lambda: listening(seed_port), "the seed app under ddtrace-run listens")
        for exporter in EXPORTERS:
            wait_until(lambda: listening(ports[exporter]), f"the service with {exporter} listens")
        statuses = {tracer: {} for tracer in TRACERS}
        for tracer, port in (("ddtrace", seed_port), *ports.items()):
            for name, method, path, headers in CASES:
                statuses[tracer][name] = send(port, method, path, headers, name)

        def traces():
            with urllib.request.urlopen(f"{agent_url}/test/traces", timeout=10) as response:
                received = json.load(response)
            # v0.4 payloads may leave out zero-valued fields (datadog-opentelemetry's leave out
            # `error` and `parent_id` when 0); the Agent decodes them as zeros, and so does this.
            for trace in received:
                for span in trace:
                    span.setdefault("error", 0)
                    span.setdefault("parent_id", 0)
            return received

        def complete():
            got = entry_spans(traces())
            return all(len(got[tracer]) == len(CASES) for tracer in TRACERS)

        wait_until(complete, "a span for every request from every tracer", timeout=30)
        for process in (seed, *ours):
            processes.stop(process)
        log_lines = {exporter: [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
                     for exporter, path in logs.items()}
        return traces(), log_lines, statuses
    finally:
        processes.stop_all()


def tracer_of(span):
    service = span["service"].removeprefix("parity-")
    return service if service in EXPORTERS else "ddtrace"


def trace_id_high(span):
    """The high 64 bits of a 128-bit trace id where the tracer sends them: `_dd.p.tid`, or
    datadog-opentelemetry 0.5.4's `otel.trace_id` (the whole id in hex), which is all it sends of them."""
    meta = span.get("meta", {})
    if "_dd.p.tid" in meta:
        return meta["_dd.p.tid"]
    return meta["otel.trace_id"][:16] if "otel.trace_id" in meta else None


def entry_spans(traces):
    """The service-entry span of each request, by tracer and case: the span with the request's user
    agent. The other spans its tracer sent in that trace (Flask's internal spans) are kept under
    "children" (a continued trace holds both tracers' spans: same incoming trace id)."""
    found = {tracer: {} for tracer in TRACERS}
    for trace in traces:
        for span in trace:
            agent = span.get("meta", {}).get("http.useragent", "")
            if agent.startswith("parity/"):
                children = [s for s in trace if s["span_id"] != span["span_id"] and s["service"] == span["service"]]
                span = dict(span, children=children)
                found[tracer_of(span)][agent.removeprefix("parity/")] = span
    return found


def shape(value):
    """A value's type, and for ids their width; never the value itself."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int 0" if value == 0 else "int u64" if value < 2**64 else "int >u64"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        for name, pattern in (("empty", r""), ("decimal", r"[0-9]+"), ("16 hex", r"[0-9a-f]{16}"),
                              ("32 hex", r"[0-9a-f]{32}")):
            if re.fullmatch(pattern, value):
                return f"str {name}"
        return "str"
    return type(value).__name__


def id_relation(case, span):
    """How the span's ids relate to the request's trace headers."""
    incoming = INCOMING.get(case)
    trace = "continued" if incoming and span["trace_id"] == incoming[0] else "new"
    if span["parent_id"] == 0:
        parent = "zero"
    elif incoming and span["parent_id"] == incoming[1]:
        parent = "incoming span"
    else:
        parent = "other"
    relation = {"trace_id": trace, "parent_id": parent}
    tid = span.get("meta", {}).get("_dd.p.tid")
    if tid is not None:
        relation["_dd.p.tid"] = "incoming high bits" if incoming and tid == incoming[2] else "new"
    return relation


def signature(case, span):
    """What is compared of a span: {field: description}."""
    sig = {}
    for field, value in span.items():
        if field in ("meta", "metrics", "children"):
            continue
        sig[field] = f"{value!r}" if field in VALUE_FIELDS else shape(value)
    for field, relation in id_relation(case, span).items():
        sig[f"ids.{field}"] = relation
    for section in ("meta", "metrics"):
        for key, value in span.get(section, {}).items():
            field = f"{section}.{key}"
            sig[field] = f"{shape(value)} {value!r}" if field in VALUE_KEYS else shape(value)
    if span["children"]:
        # Their names follow the route's view function and the error path: presence is what is compared.
        sig["trace.child spans"] = "present"
    return sig


def differences(entry, exporter):
    """{difference: [cases]} between ddtrace's entry spans and the service's with `exporter`."""
    found = defaultdict(list)
    for case in CASE_NAMES:
        theirs, ours = signature(case, entry["ddtrace"][case]), signature(case, entry[exporter][case])
        for field in sorted(theirs.keys() | ours.keys()):
            if field not in ours:
                found[f"{field}: only ddtrace ({theirs[field]})"].append(case)
            elif field not in theirs:
                found[f"{field}: only ours ({ours[field]})"].append(case)
            elif theirs[field] != ours[field]:
                found[f"{field}: ddtrace {theirs[field]}, ours {ours[field]}"].append(case)
    return {diff: ("all" if cases == CASE_NAMES else cases) for diff, cases in found.items()}


def expected(exporter):
    return {entry["difference"]: entry for entry in json.loads(EXPECTED[exporter].read_text())["differences"]}


@pytest.fixture(scope="module")
def run():
    for tool in ("ddapm-test-agent", "ddtrace-run", "flask"):
        assert (VENV_BIN / tool).exists(), f"{VENV_BIN / tool} is missing: run `make venv`"
    with tempfile.TemporaryDirectory(prefix="parity-") as workdir:
        traces, log_lines, statuses = run_both(Path(workdir))
    return entry_spans(traces), log_lines, statuses


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_both_servers_answer_alike(run, exporter):
    _, _, statuses = run
    assert statuses["ddtrace"] == statuses[exporter]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_differences_from_datadogs_tracer_are_the_expected_ones(run, exporter):
    entry, _, _ = run
    found, listed = differences(entry, exporter), expected(exporter)
    path = EXPECTED[exporter].relative_to(ROOT)
    new = {diff: cases for diff, cases in found.items()
           if diff not in listed or listed[diff]["cases"] != cases}
    gone = {diff: entry["cases"] for diff, entry in listed.items()
            if diff not in found or found[diff] != entry["cases"]}
    message = []
    if new:
        message.append(f"New differences from ddtrace with {exporter} (close them, or list them in "
                       f"{path} with a decision and a reason):")
        message += [f"  {diff}  [cases: {cases}]" for diff, cases in sorted(new.items())]
    if gone:
        message.append(f"Listed in {path} but no longer seen (remove them, and from the list in "
                       "docs/service.md):")
        message += [f"  {diff}  [cases: {cases}]" for diff, cases in sorted(gone.items())]
    assert not message, "\n".join(message)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_every_listed_difference_has_a_decision_and_a_reason(exporter):
    for diff, entry in expected(exporter).items():
        assert entry.get("decision") in ("leave: python/flask-specific", "leave: exporter cannot",
                                         "leave: by design"), diff
        assert len(entry.get("reason", "")) > 20, diff


def test_trace_ids_are_as_wide_as_ddtraces(run):
    """Every tracer makes 128-bit ids for a new trace: the low 64 bits as trace_id, the high 64 (in
    `_dd.p.tid`, or `otel.trace_id`) the start time in seconds then 32 zero bits."""
    entry, _, _ = run
    now = time.time()
    for tracer in TRACERS:
        for case in ("root", "apm", "malformed"):
            span = entry[tracer][case]
            tid = trace_id_high(span) or ""
            assert re.fullmatch(r"[0-9a-f]{8}0{8}", tid), (tracer, case, tid)
            assert abs(int(tid[:8], 16) - now) < 300, (tracer, case, tid)
            assert 0 < span["trace_id"] < 2**64


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_logs_keep_their_correlation_with_128_bit_ids(run, exporter):
    """Every access line's `dd.trace_id` is its span's trace_id (the low 64 bits, in decimal), also
    when the span's id is 128 bits wide."""
    entry, log_lines, _ = run
    spans = {(s["trace_id"], s["span_id"]): s for s in entry[exporter].values()}
    access = [line for line in log_lines[exporter] if line.get("logger.name") == "apm_demo::access"]
    assert len(access) == len(CASES)
    wide = 0
    for line in access:
        span = spans.get((int(line["dd.trace_id"]), int(line["dd.span_id"])))
        assert span is not None, line
        wide += trace_id_high(span) not in (None, "0" * 16)
    assert wide >= 5, "most requests start or continue a 128-bit trace"


def main():
    """Prints the differences of one run as a table (a starting point for expected_differences.json)."""
    with tempfile.TemporaryDirectory(prefix="parity-") as workdir:
        traces, _, _ = run_both(Path(workdir))
    for exporter in EXPORTERS:
        print(f"== {exporter}")
        listed = expected(exporter)
        for diff, cases in sorted(differences(entry_spans(traces), exporter).items()):
            decision = listed.get(diff, {}).get("decision", "NOT LISTED")
            print(f"{diff} | {cases if cases == 'all' else ','.join(cases)} | {decision}")


if __name__ == "__main__":
    sys.exit(main())

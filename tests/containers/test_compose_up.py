"""`docker compose up`, run for real: the images built from the Dockerfiles, the `local` profile up.

What a user's first `COMPOSE_PROFILES=local DD_API_KEY=unused docker compose up --build` does, on a
real engine (see engine.py for how this machine gets one): the app, Datadog's test agent in place of
the Datadog Agent, and the load generator. MySQL and the Datadog Agent are not run: their images
cannot be had here (no image registry), and the `local` profile does not start them.

The tests run in file order on one project and end by stopping it; `docker-compose down -v` runs
in the fixture's teardown whatever failed, and the teardown fails if anything is left behind.
"""

import json
import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest

import engine

PROJECT = f"apmdemo-test-{os.getpid()}"
FLASK_BODIES = {"/": "Entrypoint to the Application", "/api/apm": "Getting APM Started",
                "/api/trace": "Posting Traces"}
SEED_RESOURCES = {"GET /", "GET /api/apm", "GET /api/trace", "GET 404"}
APP_UID = 10001


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One compose project of the `local` profile, with free published ports."""

    def __init__(self, tmp: Path):
        self.app_port, self.agent_port = free_port(), free_port()
        # As the README's no-account command, plus the published ports and a faster loadgen.
        self.env = {"COMPOSE_PROFILES": "local", "DD_API_KEY": "unused",  # pragma: allowlist secret
                    "APP_PORT": str(self.app_port), "TEST_AGENT_PORT": str(self.agent_port),
                    "LOADGEN_RATE": "20"}
        self.tmp = tmp

    def compose(self, *args, check=True, timeout=600):
        return engine.run(engine.COMPOSE, "--project-name", PROJECT, "--file",
                          str(engine.ROOT / "docker-compose.yml"), *args, check=check,
                          timeout=timeout, cwd=engine.ROOT,
                          env_extra=self.env)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def inspect(self, service: str, template: str) -> str:
        return engine.run(engine.DOCKER, "inspect", "--format", template,
                          self.container(service)).stdout.strip()

    def health(self, service: str) -> str:
        return self.inspect(service, "{{.State.Health.Status}}")

    def wait_healthy(self, services, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            states = {s: self.health(s) for s in services}
            if all(state == "healthy" for state in states.values()):
                return
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--no-color", "--tail", "30", check=False).stdout
                raise AssertionError(f"not healthy within {within:.0f} s: {states}\n{logs}")
            time.sleep(1)

    def get(self, port: int, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers.get("content-type"), response.read().decode()

    def spans(self) -> list:
        _, _, body = self.get(self.agent_port, "/test/traces")
        return [span for trace in json.loads(body) for span in trace]

    def leftovers(self) -> dict:
        label = f"label=com.docker.compose.project={PROJECT}"
        return {kind: engine.run(engine.DOCKER, *command, "--filter", label, "-q").stdout.split()
                for kind, command in {"containers": ["ps", "-a"], "networks": ["network", "ls"],
                                      "volumes": ["volume", "ls"]}.items()}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compose")
    engine.install_if_missing()
    daemon = engine.start_engine(tmp / "dockerd.log")
    stack = Stack(tmp)
    try:
        for name, seconds in engine.make_base_images().items():
            print(f"made stand-in image {name} in {seconds:.0f} s")
        started = time.monotonic()
        stack.compose("build", timeout=1800)
        print(f"compose build: {time.monotonic() - started:.0f} s")
        # The services of the local profile; mysql and the Datadog Agent have no image here.
        stack.compose("up", "--detach", "app", "test-agent", "loadgen", timeout=300)
        stack.wait_healthy(["app", "test-agent"], within=60)
        yield stack
    finally:
        try:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)
            left = stack.leftovers()
        finally:
            engine.stop_engine(daemon)
        assert not any(left.values()), f"compose down left {left}"


def wait_for(condition, within: float, what: str):
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f} s")
        time.sleep(0.5)


def test_app_answers_the_flask_bodies_on_the_published_port(stack):
    for path, body in FLASK_BODIES.items():
        assert stack.get(stack.app_port, path) == (200, "text/html; charset=utf-8", body)


def test_app_runs_as_uid_10001_and_is_healthy(stack):
    assert stack.inspect("app", "{{.Config.User}}") == str(APP_UID)
    # The process itself, as the kernel sees it: real, effective, saved and file-system uid.
    pid = stack.inspect("app", "{{.State.Pid}}")
    uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Uid:")).split()[1:]
    assert uids == [str(APP_UID)] * 4
    assert stack.health("app") == "healthy"


def test_loadgen_is_healthy_and_its_traces_are_continued(stack):
    # loadgen's own health check (five /health requests through the compose network) runs every 30 s.
    stack.wait_healthy(["loadgen"], within=90)
    spans = wait_for(lambda: [s for s in stack.spans()
                              if s["meta"].get("http.useragent", "").startswith("loadgen/")], 30,
                     "spans of loadgen's requests")
    # The service started none of these traces: each continues loadgen's x-datadog-* headers.
    assert all(s["parent_id"] != 0 for s in spans), [s for s in spans if s["parent_id"] == 0][:3]


def test_spans_carry_the_trace_ids_loadgen_sent(stack):
    trace_id, parent_id = 4_242_000_001, 77
    # One bounded run of the loadgen image with fixed ids: 20 requests are one cycle of the default
    # mix, so every route and one 404 are in it.
    stack.compose("run", "--rm", "--no-deps", "loadgen", "http://app:5050", "-n", "20", "-c", "1",
                  "--trace-headers", "none",
                  "--header", f"x-datadog-trace-id: {trace_id}",
                  "--header", f"x-datadog-parent-id: {parent_id}",
                  "--header", "x-datadog-sampling-priority: 1", timeout=120)
    ours = wait_for(lambda: (lambda s: s if len(s) >= 20 else None)(
        [s for s in stack.spans() if s["trace_id"] == trace_id]), 15, "20 spans of the fixed trace")
    assert len(ours) == 20
    assert {s["resource"] for s in ours} == SEED_RESOURCES
    assert {s["parent_id"] for s in ours} == {parent_id}
    assert {(s["name"], s["type"], s["service"]) for s in ours} == {
        ("http.server.request", "web", "apm-demo")}


def test_the_test_agent_reports_no_trace_check_failure(stack):
    _, _, body = stack.get(stack.agent_port, "/test/trace_check/failures?return_all=true")
    assert body.strip() in ("", "{}", "200: OK"), body


def app_log_lines(stack) -> list:
    """`docker-compose logs app`, each line without compose's `name | ` prefix, parsed as JSON."""
    out = stack.compose("logs", "--no-color", "app").stdout
    lines = [line.split(" | ", 1)[1] for line in out.splitlines() if " | " in line]
    assert lines, out
    return [json.loads(line) for line in lines]


def test_app_logs_are_json_with_the_spans_trace_ids(stack):
    logs = app_log_lines(stack)  # every line parses as JSON, or this fails
    access = [line for line in logs if line.get("logger.name") == "apm_demo::access"]
    span_ids = {(s["trace_id"], s["span_id"]) for s in stack.spans()}
    logged = {(int(line["dd.trace_id"]), int(line["dd.span_id"])) for line in access}
    # Lines logged before the last export (once a second) may not have their span yet.
    assert len(logged & span_ids) >= len(span_ids) * 0.9 > 0


def test_stopping_the_app_delivers_a_span_for_every_answered_request(stack):
    stack.compose("stop", "--timeout", "15", "loadgen")
    # SIGTERM from the engine: the app drains, flushes its spans, exits 0.
    stack.compose("stop", "--timeout", "15", "app")
    assert stack.inspect("app", "{{.State.ExitCode}}") == "0"
    access = [line for line in app_log_lines(stack) if line.get("logger.name") == "apm_demo::access"]
    answered = {int(line["dd.trace_id"]) for line in access}
    received = wait_for(lambda: (lambda ids: ids if answered <= ids else None)(
        {s["trace_id"] for s in stack.spans()}), 10, "a span for every answered request")
    assert len(access) == len([s for s in stack.spans() if s["service"] == "apm-demo"])
    assert answered == received


def test_compose_down_leaves_nothing_behind(stack):
    stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "15")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}

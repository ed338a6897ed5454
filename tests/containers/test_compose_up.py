"""`docker compose up`, run for real: the images built from the Dockerfiles, the `local` profile up.

What a user's first no-account command (`COMPOSE_PROFILES=local DD_API_KEY=unused
MYSQL_ROOT_PASSWORD=local MYSQL_DATADOG_PASSWORD=local MYSQL_APP_PASSWORD=local docker compose up
--build`) does, on a real engine (see engine.py for how this machine gets one): the app, Datadog's test
agent in place of the Datadog Agent, MySQL and the load generator. MySQL is a stand-in built here on
Debian's MariaDB (engine.py; no image registry is reachable), which runs agent-config/mysql and
agent-config/mysql-conf as the official image does. The Datadog Agent is not run: the `local`
profile does not start it. The secrets are random values of this run rather than `local`, so that
a search of every log and process list for them means something.

The tests run in file order on one project and end by stopping it; `docker-compose down -v` runs
in the fixture's teardown whatever failed, and the teardown fails if anything is left behind.
"""

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

import engine

# The project's shared helpers of local/: the one free_port, and the trace completeness check that
# `make local`'s tests also judge their run by.
sys.path.insert(0, str(engine.ROOT / "local"))
from ports import free_port  # noqa: E402
import traces as T  # noqa: E402

PROJECT = f"apmdemo-test-{os.getpid()}"
FLASK_BODIES = {"/": "Entrypoint to the Application", "/api/apm": "Getting APM Started",
                "/api/trace": "Posting Traces"}
SEED_RESOURCES = {"GET /", "GET /api/apm", "GET /api/trace", "GET 404"}
# loadgen's default mix when this suite was written: the seed routes and a 404. Given explicitly, so
# that the fixed-trace test does not move with loadgen's default.
SEED_MIX = "/=6,/api/apm=7,/api/trace=6,/no-such-page=1"
APP_UID = 10001
REQUEST_SPAN = "http.server.request"
# Trace ids of ours: one continued by a bounded loadgen run given fixed headers, one sent with the
# database requests whose spans and DBM comments are checked. Both name a parent that is no span.
FIXED_TRACE_ID, FIXED_PARENT_ID = 4_242_000_001, 77
DB_TRACE_ID, DB_PARENT_ID = 4_242_000_002, 78
# How long after a trace's start both its exporters have posted it: each sends at least once a second.
SETTLE_SECONDS = 5
# The services of the local profile, and the user each runs as (the images' users, compose's `user:`).
SERVICES = {"app": "10001", "test-agent": "65534:65534", "mysql": "999:999", "loadgen": "10001"}


class Stack:
    """One compose project of the `local` profile, with free published ports."""

    def __init__(self, tmp: Path):
        self.app_port, self.agent_port = free_port(), free_port()
        # The no-account command's variables with secrets of this run: a root password shaped as
        # the mysql image's own (`openssl rand -base64 24`: + and / included), an API-key-shaped
        # DD_API_KEY (no Agent runs to use it: it must reach nothing), hex user passwords.
        self.secrets = {"MYSQL_ROOT_PASSWORD": base64.b64encode(os.urandom(24)).decode(),
                        "MYSQL_DATADOG_PASSWORD": secrets.token_hex(12),
                        "MYSQL_APP_PASSWORD": secrets.token_hex(12),
                        "DD_API_KEY": secrets.token_hex(16)}
        self.env = {"COMPOSE_PROFILES": "local", **self.secrets,
                    "APP_PORT": str(self.app_port), "TEST_AGENT_PORT": str(self.agent_port),
                    "LOADGEN_RATE": "20"}
        self.tmp = tmp
        self.containers = {}
        self.startup = []
        # `docker top` of the mysql container while it initialised, and of every container later.
        self.process_lists = []
        self.app_started_at = ""
        self.mysql_healthy_at = 0.0
        # When the test agent first answered on its published port (seconds since the epoch).
        self.agent_ready_at = None

    def compose_args(self, *args) -> list:
        return [engine.COMPOSE, "--project-name", PROJECT, "--file",
                str(engine.ROOT / "docker-compose.yml"), *args]

    def compose(self, *args, check=True, timeout=600):
        return engine.run(*self.compose_args(*args), check=check, timeout=timeout, cwd=engine.ROOT,
                          env_extra=self.env)

    def compose_in_background(self, *args) -> subprocess.Popen:
        return subprocess.Popen(self.compose_args(*args), cwd=engine.ROOT, env=engine.env(self.env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def container(self, service: str) -> str:
        """The service's container id; empty while compose has not created it. Kept once known:
        docker-compose takes a second a call, and `restart` keeps the container."""
        if not self.containers.get(service):
            self.containers[service] = self.compose("ps", "-q", service, check=False).stdout.strip()
        return self.containers[service]

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

    def request(self, method: str, path: str, body=None, headers=None):
        """(status, parsed JSON body or text) of a request to the app; (None, error) when nothing
        answers."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.app_port}{path}", data=data,
                                         method=method, headers={"content-type": "application/json",
                                                                 **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            return None, str(error)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def traces(self) -> list:
        _, _, body = self.get(self.agent_port, "/test/traces")
        return json.loads(body)

    def spans(self) -> list:
        return [span for trace in self.traces() for span in trace]

    def mysql_as_root(self, sql: str, *client_args, check=True):
        """Rows of `sql` run as root in the mysql container (`docker compose exec`), with the root
        password this run set, given in an option file on the client's standard input: never on a
        command line, where a process list would show it. With check=False, the finished process."""
        options = f"[client]\nuser=root\npassword=\"{self.secrets['MYSQL_ROOT_PASSWORD']}\"\n"
        result = engine.run(*self.compose_args("exec", "-T", "mysql", "mysql", "--defaults-extra-file=/dev/stdin",
                                               *client_args, "--batch", "--skip-column-names", "-e", sql),
                            check=check, input=options, cwd=engine.ROOT, env_extra=self.env)
        if not check:
            return result
        return [line.split("\t") for line in result.stdout.splitlines()]

    def process_list(self, service: str) -> str:
        """`docker top` of the service's container: every process's command line, as `ps -ef` prints
        them inside; empty when it is not running."""
        if not self.container(service):
            return ""
        return engine.run(engine.DOCKER, "top", self.container(service), check=False, timeout=30).stdout

    def restarts(self, service: str) -> tuple:
        return (self.inspect(service, "{{.State.StartedAt}}"), self.inspect(service, "{{.RestartCount}}"))

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
        # The whole local profile, as the no-account command starts it, observed from the start:
        # `up` itself returns only once the app is healthy (loadgen waits for that).
        started = time.monotonic()
        up = stack.compose_in_background("up", "--detach")
        try:
            stack.startup = observe_startup(stack, up, within=180)
        finally:
            output, _ = up.communicate(timeout=300)
        assert up.returncode == 0, output
        print(f"up: {stack.startup[-1][0] - stack.startup[0][0]:.1f} s to the last startup poll "
              f"(POST /api/visits {stack.startup[-1][3]})")
        stack.app_started_at = stack.inspect("app", "{{.State.StartedAt}}")
        stack.wait_healthy(["app", "test-agent", "mysql"], within=90)
        print(f"up to mysql healthy: {time.monotonic() - started:.1f} s")
        # The probe that made it healthy (the engine keeps the last five only).
        probes = json.loads(stack.inspect("mysql", "{{json .State.Health.Log}}"))
        stack.mysql_healthy_at = min(docker_time(p["End"]) for p in probes if p["ExitCode"] == 0)
        yield stack
    finally:
        try:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)
            left = stack.leftovers()
        finally:
            engine.stop_engine(daemon)
        assert not any(left.values()), f"compose down left {left}"


def observe_startup(stack, up: subprocess.Popen, within: float) -> list:
    """While `up` runs and after: a seed route and POST /api/visits, with mysql's health when each
    was asked, until `up` is done and the POST has an answer other than 503 (a visit stored, or a
    failure the tests report). Rows (seconds since the epoch, mysql's health or None before its
    container exists, GET / status, POST status); None where the app did not answer."""
    rows = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        mysql = stack.container("mysql")
        health = stack.inspect("mysql", "{{.State.Health.Status}}") if mysql else None
        # Its first start handles every password (the entrypoint, the setup scripts): sampled.
        if health == "starting":
            stack.process_lists.append(stack.process_list("mysql"))
        if stack.agent_ready_at is None and agent_answers(stack):
            stack.agent_ready_at = time.time()
        seed, _ = stack.request("GET", "/")
        visit, _ = stack.request("POST", "/api/visits", {"page": "/compose/startup"})
        rows.append((time.time(), health, seed, visit))
        if visit not in (None, 503) and up.poll() is not None and stack.agent_ready_at:
            break
        time.sleep(0.25)
    return rows


def agent_answers(stack) -> bool:
    try:
        stack.get(stack.agent_port, "/test/traces")
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def docker_time(text: str) -> float:
    """Seconds since the epoch of an engine timestamp (RFC 3339, nanoseconds)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert match, text
    seconds = datetime.fromisoformat(match.group(1) + ("+00:00" if match.group(3) == "Z" else match.group(3)))
    return seconds.replace(tzinfo=seconds.tzinfo or timezone.utc).timestamp() + float(f"0.{match.group(2) or 0}")


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


def from_loadgen(trace) -> bool:
    """A trace of the compose service loadgen's requests: a span of loadgen's, or a request the app
    answered with loadgen's user agent (found even when loadgen's span is missing)."""
    return T.trace_id(trace) != str(FIXED_TRACE_ID) and any(
        span["service"] == T.LOADGEN or span["meta"].get("http.useragent", "").startswith("loadgen/")
        for span in trace)


def test_every_trace_of_loadgen_is_whole_loadgen_then_the_app_then_its_queries(stack):
    """Issue 24's completeness, on what the compose demo sends: every trace of loadgen's requests has
    one root, loadgen's client span (with the environment and version compose gives it), whose one
    child is the app's server span, whose children are its mysql.query spans; no span names a parent
    the trace lacks. Judged by local/traces.py, as `make local`'s run is. The traces judged began
    once the test agent answered (loadgen does not wait for an agent: what it sent before is lost,
    and counted) and SETTLE_SECONDS ago at least (loadgen and the app each post once a second)."""
    # loadgen's own health check (five /health requests through the compose network) runs every 30 s.
    stack.wait_healthy(["loadgen"], within=90)

    def judged():
        newest = time.time() - SETTLE_SECONDS
        traces = [t for t in stack.traces() if from_loadgen(t)
                  and stack.agent_ready_at <= T.start(t) / 1e9 <= newest]
        # A database route's trace with its statements: MySQL was up (the fixture waits for it).
        if len(traces) >= 100 and any(T.touches_database(t) for t in traces if T.is_request(t, "apm-demo")):
            return traces
        return None

    traces = wait_for(judged, 90, "100 traces of loadgen, one of them with mysql.query spans")
    broken = {T.trace_id(t): T.problems(t, "apm-demo") or ["no apm-demo server span"] for t in traces
              if T.problems(t, "apm-demo") or not T.is_request(t, "apm-demo")}
    assert not broken, f"{len(broken)} of {len(traces)} traces broken: {list(broken.items())[:5]}"
    database = [t for t in traces if T.touches_database(t)]
    assert all(T.services(t) == ["loadgen", "apm-demo"] for t in traces)
    roots = [T.root_of(t) for t in traces]
    assert {(r["service"], r["name"], r["meta"].get("span.kind")) for r in roots} == {
        ("loadgen", T.CLIENT_SPAN, "client")}
    # Unified service tagging: DD_ENV and DD_VERSION as compose gives them to loadgen and the app.
    assert {(r["meta"].get("env"), r["meta"].get("version")) for r in roots} == {("demo", "0.1.0")}
    assert {r["meta"].get("out.host") for r in roots} == {"app"}
    print(f"{len(traces)} traces of loadgen judged ({len(database)} with mysql.query spans): "
          f"all whole, loadgen -> apm-demo -> mysql")


def test_spans_carry_the_trace_ids_loadgen_sent(stack):
    trace_id, parent_id = FIXED_TRACE_ID, FIXED_PARENT_ID
    # One bounded run of the loadgen image with fixed ids: 20 requests are one cycle of the seed
    # mix, so every seed route and one 404 are in it. No spans of its own (an empty --trace-agent):
    # the ids are the test's, as a proxy or another tracer in front would send them.
    stack.compose("run", "--rm", "--no-deps", "loadgen", "http://app:5050", "-n", "20", "-c", "1",
                  "--mix", SEED_MIX, "--trace-headers", "none", "--trace-agent", "",
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


def test_the_app_answered_while_mysql_was_still_starting(stack):
    # No depends_on: the app serves its seed routes while MySQL initialises (its first health
    # check comes 10 s after it starts, so it cannot be healthy in the first seconds).
    early = [row for row in stack.startup if row[1] == "starting" and row[2] == 200]
    assert early, stack.startup[:10]
    # And the engine started the app before MySQL passed a health check.
    assert docker_time(stack.app_started_at) < stack.mysql_healthy_at


def test_the_database_routes_answer_503_until_mysql_answers_then_201_without_a_restart(stack):
    answers = [row[3] for row in stack.startup]
    assert 201 in answers, (answers, stack.compose("logs", "--no-color", "--tail", "30", "app",
                                                   "mysql").stdout)
    stored = answers.index(201)
    print(f"POST /api/visits from `up` on: {answers.count(None)} x no answer, "
          f"{answers[:stored].count(503)} x 503, then 201 "
          f"{stack.startup[stored][0] - stack.startup[0][0]:.1f} s after `up` began")
    # Before the first 201 the app either did not answer yet (None) or said 503 at once, never
    # a 500 or a hang (a hang is a None after an answer: urllib's 5 s timeout); after it, 201s.
    first = next(i for i, status in enumerate(answers) if status is not None)
    assert set(answers[first:stored]) <= {503}, answers
    assert set(answers[stored:]) == {201}, answers
    # The same process all along: the engine never restarted the app.
    assert stack.restarts("app") == (stack.app_started_at, "0")


def test_a_visit_is_stored_and_read_back(stack):
    headers = {"x-datadog-trace-id": str(DB_TRACE_ID), "x-datadog-parent-id": str(DB_PARENT_ID),
               "x-datadog-sampling-priority": "1"}
    status, created = stack.request("POST", "/api/visits", {"page": "/compose/visit"}, headers)
    assert status == 201, created
    status, read = stack.request("GET", f"/api/visits/{created['id']}", headers=headers)
    assert status == 200, read
    assert read["id"] == created["id"] and read["page"] == "/compose/visit"
    status, latest = stack.request("GET", "/api/visits")
    assert status == 200 and created["id"] in [visit["id"] for visit in latest], latest
    assert stack.request("GET", f"/api/visits/{created['id'] + 10**9}")[0] == 404
    stack.visit_id = created["id"]


def db_trace(stack) -> list:
    return wait_for(lambda: (lambda spans: spans if {"POST /api/visits", "GET /api/visits/{id}"} <= {
        s["resource"] for s in spans if s["name"] == REQUEST_SPAN} else None)(
        [s for s in stack.spans() if s["trace_id"] == DB_TRACE_ID]), 15, "the visit requests' spans")


def test_the_query_spans_are_children_of_their_request_span(stack):
    spans = db_trace(stack)
    for resource, statement in (("POST /api/visits", "INSERT"), ("GET /api/visits/{id}", "SELECT")):
        (request,) = [s for s in spans if s["name"] == REQUEST_SPAN and s["resource"] == resource]
        assert request["parent_id"] == DB_PARENT_ID
        queries = [s for s in spans if s["name"] == "mysql.query" and s["parent_id"] == request["span_id"]]
        assert queries, f"no mysql.query span under {resource}: {spans}"
        for query in queries:
            assert query["type"] == "sql", query
            # The statement with placeholders, never the values.
            assert "/compose/visit" not in query["resource"], query
            assert query["meta"].get("db.system") == "mysql", query
            assert query["meta"].get("span.kind") == "client", query
        ours = [q for q in queries if q["resource"].lstrip().upper().startswith(statement)]
        assert ours and all("?" in q["resource"] for q in ours), queries


def test_the_dbm_comment_reaches_the_server_with_the_trace_context(stack):
    spans = {s["span_id"] for s in db_trace(stack)}
    # What the server received, as root: the statement text keeps its leading comment.
    rows = stack.mysql_as_root(
        "SELECT SQL_TEXT FROM performance_schema.events_statements_history_long "
        "WHERE SQL_TEXT LIKE '/*%*/%' AND SQL_TEXT LIKE '%traceparent=%'")
    comments = [dict(re.findall(r"(\w+)='([^']*)'", row[0][2:row[0].index("*/")])) for row in rows]
    ours = [c for c in comments if re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", c["traceparent"])
            and int(c["traceparent"][3:35][16:], 16) == DB_TRACE_ID]
    assert ours, rows[:5]
    for comment in ours:
        # The service's identity, sqlcommenter keys as Datadog's tracers write them.
        assert {"dddbs", "dde", "ddps", "ddpv"} <= set(comment), comment
        assert (comment["dde"], comment["ddps"]) == ("demo", "apm-demo"), comment
        _, trace_id, parent_id, _ = comment["traceparent"].split("-")
        # The request came with a 64-bit trace id: no high bits. The parent is a span of the trace.
        assert trace_id[:16] == "0" * 16, comment
        assert int(parent_id, 16) in spans, comment


def test_the_app_user_has_only_its_grants(stack):
    assert stack.mysql_as_root("SELECT host FROM mysql.user WHERE user = 'apm_demo'") == [["%"]]
    grants = {}
    for (line,) in stack.mysql_as_root("SHOW GRANTS FOR 'apm_demo'@'%'"):
        match = re.fullmatch(r"GRANT (.+) ON (\S+) TO `apm_demo`@`%`.*", line)
        assert match, line
        grants[match.group(2)] = set(match.group(1).split(", "))
    # DELETE for the oldest visits past MYSQL_KEEP_VISITS (agent-config/mysql/apm-demo-user.sh).
    assert grants == {"*.*": {"USAGE"}, "`apm_demo`.*": {"SELECT", "INSERT", "DELETE", "CREATE"}}


def test_root_exists_only_on_localhost_and_logs_in_only_over_the_socket(stack):
    # MYSQL_ROOT_HOST=localhost: the image made no root@'%' (its default), and no other root.
    assert stack.mysql_as_root("SELECT user, host FROM mysql.user WHERE user = 'root'") == [["root", "localhost"]]
    # The right password over the network (TCP to the container's own compose address, where the
    # server sees the client's address as its host) is refused: it is the host, not the password.
    refused = stack.mysql_as_root("SELECT 1", "--protocol=tcp", "--host=mysql", check=False)
    assert refused.returncode != 0, refused.stdout
    assert re.search(r"ERROR (1045|1130)", refused.stderr) and "root" not in refused.stdout, refused.stderr


def test_every_container_runs_without_capabilities_on_a_read_only_root(stack):
    for service, user in SERVICES.items():
        config = json.loads(stack.inspect(service, "{{json .HostConfig}}"))
        assert (config["CapDrop"], config["CapAdd"], config["ReadonlyRootfs"], config["Privileged"]) == (
            ["ALL"], None, True, False), service
        assert config["SecurityOpt"] == ["no-new-privileges:true"], service
        assert stack.inspect(service, "{{.Config.User}}") == user, service
        # The kernel's view of the main process: its user, no capability in any set, no way to gain
        # one (NoNewPrivs), a read-only root mount.
        pid = stack.inspect(service, "{{.State.Pid}}")
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        uid, gid = (user.split(":") + [None])[:2]
        assert status["Uid"].split() == [uid] * 4, (service, status["Uid"])
        if gid:
            assert status["Gid"].split() == [gid] * 4, (service, status["Gid"])
        for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[capabilities], 16) == 0, (service, capabilities, status[capabilities])
        assert status["NoNewPrivs"].strip() == "1", service
        root = next(line.split() for line in Path(f"/proc/{pid}/mounts").read_text().splitlines()
                    if line.split()[1] == "/")
        assert "ro" in root[3].split(","), (service, root)


def test_mysql_restarted_keeps_its_data_and_the_app_reconnects_without_a_restart(stack):
    before = stack.restarts("app")
    stack.compose("restart", "--timeout", "15", "mysql")
    # A later start skips the initialisation: the same root password, the stored visit.
    started = time.monotonic()
    wait_for(lambda: stack.request("GET", f"/api/visits/{stack.visit_id}")[0] == 200, 60,
             "the stored visit after MySQL's restart")
    print(f"visit read back {time.monotonic() - started:.1f} s after mysql's restart")
    assert len(stack.mysql_as_root("SELECT 1")) == 1
    assert stack.restarts("app") == before


def test_no_secret_in_any_container_log_or_process_list(stack):
    # Every process of every container now, and the mysql container's during its first start.
    lists = stack.process_lists + [stack.process_list(service) for service in SERVICES]
    sampled = [text for text in stack.process_lists if "mysqld" in text]
    assert len(sampled) >= 3, "the first start was sampled"
    print(f"{len(sampled)} process lists of the mysql container during its first start, "
          f"{len(lists) - len(stack.process_lists)} at the end: no secret")
    logs = {service: engine.run(engine.DOCKER, "logs", stack.container(service), timeout=60)
            for service in SERVICES}
    assert logs["app"].stdout and logs["mysql"].stdout, "the logs searched are the containers' own"
    for name, value in stack.secrets.items():
        for service, result in logs.items():
            assert value not in result.stdout + result.stderr, f"{name} in the log of {service}"
        assert not [text for text in lists if value in text], f"{name} in a process list"
    # Not generated, so never printed (MYSQL_RANDOM_ROOT_PASSWORD is not set).
    assert "GENERATED ROOT PASSWORD" not in logs["mysql"].stdout + logs["mysql"].stderr


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
    span_ids = {(s["trace_id"], s["span_id"]) for s in stack.spans() if s["name"] == REQUEST_SPAN}
    logged = {(int(line["dd.trace_id"]), int(line["dd.span_id"])) for line in access}
    # Lines logged before the last export (once a second) may not have their span yet.
    assert len(logged & span_ids) >= len(span_ids) * 0.9 > 0


def test_stopping_the_app_delivers_a_span_for_every_answered_request(stack):
    stack.compose("stop", "--timeout", "15", "loadgen")
    # SIGTERM from the engine: the app drains, flushes its spans, exits 0.
    stack.compose("stop", "--timeout", "15", "app")
    assert stack.inspect("app", "{{.State.ExitCode}}") == "0"
    logs = app_log_lines(stack)
    access = [line for line in logs if line.get("logger.name") == "apm_demo::access"]
    answered = {int(line["dd.trace_id"]) for line in access}
    # The app starts before the test agent listens (no depends_on): a batch exported before that is
    # lost, and the app says so. Every request answered once the agent answered has its span.
    ready = stack.agent_ready_at
    late = {int(line["dd.trace_id"]) for line in access if docker_time(line["timestamp"]) >= ready}
    # Request spans only: the app's schema check at start, with no request, has a trace of its own.
    missing = []

    def every_request_has_its_span():
        spans = stack.spans()
        ids = {s["trace_id"] for s in spans if s["name"] == REQUEST_SPAN}
        missing[:] = [len(spans), sorted(late - ids)[:5]]
        return ids if late <= ids else None

    try:
        received = wait_for(every_request_has_its_span, 15, "a span for every answered request")
    except AssertionError as error:
        raise AssertionError(f"{error}; {missing[0]} spans received, {len(late)} requests answered, "
                             f"missing traces {missing[1]}: "
                             f"{[a for a in access if int(a['dd.trace_id']) in missing[1]][:3]}") from None
    lost = answered - received
    first = min(docker_time(line["timestamp"]) for line in access)
    print(f"{len(answered)} requests answered, the first {ready - first:.2f} s before the test agent "
          f"answered; {len(lost)} of them without a span")
    if lost:
        reported = [line for line in logs if "cannot send traces to the agent" in line.get("message", "")]
        assert reported, lost
        print(f"the app: {reported[0]['message']}")
    assert received <= answered
    assert len(access) - len(lost) == len([s for s in stack.spans() if s["name"] == REQUEST_SPAN])
    # The traces without a request span: the app's work at start (its schema's CREATE TABLE), and
    # loadgen's client spans whose request's span the app lost before the test agent answered.
    others = [t for t in stack.traces() if not T.is_request(t, "apm-demo")]
    startup = [t for t in others if [(s["name"], s["parent_id"]) for s in t] == [(T.QUERY_SPAN, 0)]]
    early = [t for t in others if [(s["service"], s["name"]) for s in t] == [(T.LOADGEN, T.CLIENT_SPAN)]
             and T.start(t) / 1e9 < ready]
    assert len(startup) + len(early) == len(others), [t for t in others if t not in startup + early][:3]
    print(f"traces without a request span: {len(startup)} of the app's start, {len(early)} of loadgen's "
          f"from before the test agent answered")


def test_compose_down_leaves_nothing_behind(stack):
    stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "15")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}

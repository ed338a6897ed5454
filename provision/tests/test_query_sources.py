"""Every tag a dashboard or monitor query filters or groups on, tied to the tags its metric's source emits.

A filter on a tag that a metric never carries draws an empty graph, or leaves a monitor in no data,
and Datadog's API accepts it without a word. So each metric the plan queries has its source below,
with the host and tags it arrives with, taken from that source:

- my_metric: agent-config/checks.d/my_metric.py, run here under datadog-checks-base's stub
  aggregator. It submits with no hostname, which the Agent fills with its own (`--host`), and the
  instance's tags; the Agent's host tags (agent-config/datadog.yaml `tags`) belong to that host.
- system.cpu.*, system.mem.*: the Agent's core checks, about the Agent's own host: its host name and
  host tags.
- trace.<operation>.*: the trace agent's stats of the service's spans, tagged `service`, `env`,
  `resource_name`, `http.status_code` (reference/datadog.md); the values are the app's DD_SERVICE
  and DD_ENV in docker-compose.yml, the operation the name the service gives its spans
  (src/telemetry, OPERATION_NAME). The database query spans are the same process's, so the same
  `service` and `env`, under the operation src/ names them (`mysql.query`); their stats carry
  `resource_name` but no `http.status_code`.
- mysql.*: the Agent's MySQL check (DataDog/integrations-core, mysql/datadog_checks/mysql/mysql.py):
  every metric carries the instance's `tags` (config.py, MySQLConfig._build_tags) and the check's own
  `database_hostname`, `database_instance`, `dbms_flavor` (mysql.py, add_core_tags and set_version),
  and is submitted with `hostname=self.reported_hostname`: the instance's `reported_hostname` if set,
  else `resolve_db_host(host)` (mysql.py, resolved_hostname). resolve_db_host
  (datadog_checks_base/datadog_checks/base/utils/db/utils.py) runs here, from datadog-checks-base:
  for the container address that `%%host%%` becomes, it is that address, not the Agent's host name.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from datadog_checks.base.stubs import aggregator as stub_aggregator
from datadog_checks.base.stubs import datadog_agent
from datadog_checks.base.utils.db.utils import resolve_db_host

ROOT = Path(__file__).resolve().parents[2]
# Where `make release` put it (CARGO_TARGET_DIR honoured), as test_payloads.py finds it.
PROVISION = Path(subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                                check=True).stdout.strip()) / "provision"
AGENT_CONFIG = ROOT / "agent-config"
AGENT_HOST = "demo-host"
# What Autodiscovery puts in place of %%host%% in compose: the MySQL container's address.
MYSQL_CONTAINER_ADDRESS = "172.18.0.3"


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def plan():
    result = subprocess.run([str(PROVISION), "plan", "--host", AGENT_HOST, "--json"],
                            capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
                            cwd=Path(__file__).parent)
    return json.loads(result.stdout)


def host_tags():
    return set(load_yaml(AGENT_CONFIG / "datadog.yaml")["tags"])


def my_metric_source():
    """Runs the custom check once and returns what it submitted, as Datadog files it."""
    import importlib.util

    from datadog_checks.base import AgentCheck

    spec = importlib.util.spec_from_file_location("my_metric", AGENT_CONFIG / "checks.d" / "my_metric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (check_class,) = [v for v in vars(module).values()
                      if isinstance(v, type) and issubclass(v, AgentCheck) and v is not AgentCheck]
    config = load_yaml(AGENT_CONFIG / "conf.d" / "my_metric.yaml")
    stub_aggregator.reset()
    try:
        check_class("my_metric", config["init_config"] or {}, config["instances"]).run()
        (metric,) = stub_aggregator.metrics("my_metric")
    finally:
        stub_aggregator.reset()
    # An empty hostname is the Agent's own.
    return metric.hostname or AGENT_HOST, set(metric.tags) | host_tags()


def mysql_source():
    (instance,) = load_yaml(AGENT_CONFIG / "conf.d" / "mysql.d" / "conf.yaml")["instances"]
    address = instance["host"].replace("%%host%%", MYSQL_CONTAINER_ADDRESS)
    datadog_agent.set_hostname(AGENT_HOST)
    try:
        hostname = instance.get("reported_hostname") or resolve_db_host(address)
    finally:
        datadog_agent.reset()
    core = {"database_hostname:", "database_instance:", "dbms_flavor:"}
    return hostname, set(instance.get("tags") or []) | core


def trace_source():
    compose = load_yaml(ROOT / "docker-compose.yml")
    app = compose["services"]["app"]["environment"]
    # ${DD_ENV:-demo}: the default, as provision's --env has it.
    env = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", app["DD_ENV"])
    operation = None
    for path in (ROOT / "src").rglob("*.rs"):
        found = re.search(r'OPERATION_NAME: &str = "([^"]+)"', path.read_text())
        operation = operation or (found and found.group(1))
    tags = {f"service:{app['DD_SERVICE']}", f"env:{env}", "resource_name:", "http.status_code:"}
    return operation, tags


DB_OPERATION = "mysql.query"


def db_operation_in_src():
    """Whether src/ names its query spans `mysql.query` (a string literal of a .rs file)."""
    return any(f'"{DB_OPERATION}"' in path.read_text() for path in (ROOT / "src").rglob("*.rs"))


def sources():
    """Metric name pattern -> (host the metric arrives under, the tags it carries). A tag ending in
    `:` stands for a key whose values vary."""
    operation, trace_tags = trace_source()
    agent = (AGENT_HOST, host_tags())
    known = {
        r"my_metric": my_metric_source(),
        r"system\.(cpu|mem)\..+": agent,
        re.escape(f"trace.{operation}") + r"(\.hits|\.errors)?": (None, trace_tags),
        r"mysql\..+": mysql_source(),
    }
    if db_operation_in_src():
        known[re.escape(f"trace.{DB_OPERATION}") + r"(\.hits|\.errors)?"] = (
            None, trace_tags - {"http.status_code:"})
    return known


QUERY = re.compile(r"\b\w+:(?P<metric>[a-z][\w.]*)\{(?P<filter>[^}]*)\}(?:\s+by\s+\{(?P<by>[^}]*)\})?")


def queries(plan):
    """(where, query, template variables) for every query of the plan."""
    for dashboard in plan["dashboards"]:
        variables = {v["name"]: f"{v['prefix']}:{(v.get('defaults') or [v.get('default')])[0]}"
                     for v in dashboard.get("template_variables", [])}
        for widget in dashboard["widgets"]:
            for request in widget["definition"]["requests"]:
                yield dashboard["title"], request["q"], variables
    for monitor in plan["monitors"]:
        yield monitor["name"], monitor["query"], {}


def problems(query, variables, known):
    """What in `query` no source emits: filters on tags its metric lacks, group-bys on keys it lacks."""
    found = []
    terms = list(QUERY.finditer(query))
    if not terms:
        return [f"no metric{{filter}} in {query!r}"]
    for term in terms:
        metric = term["metric"]
        matches = [source for pattern, source in known.items() if re.fullmatch(pattern, metric)]
        if len(matches) != 1:
            found.append(f"{metric}: no known source")
            continue
        (hostname, tags) = matches[0]
        emitted = set(tags) | ({f"host:{hostname}"} if hostname else set())
        any_value = {tag for tag in emitted if tag.endswith(":")}
        keys = {tag.split(":", 1)[0] for tag in emitted}
        for tag in filter(None, (t.strip() for t in term["filter"].split(","))):
            tag = variables.get(tag[1:], tag) if tag.startswith("$") else tag
            if tag == "*":
                continue
            if tag not in emitted and tag.split(":", 1)[0] + ":" not in any_value:
                found.append(f"{metric} filtered on {tag}, which it does not carry "
                             f"(it arrives with host {hostname} and {sorted(tags)})")
        for key in filter(None, (k.strip() for k in (term["by"] or "").split(","))):
            if key not in keys:
                found.append(f"{metric} grouped by {key}, which it does not carry")
    return found


def test_mysql_metrics_do_not_arrive_under_the_agents_host():
    # The premise of scoping them by their instance tag: resolve_db_host, as datadog-checks-base has it.
    hostname, tags = mysql_source()
    assert hostname == MYSQL_CONTAINER_ADDRESS != AGENT_HOST
    assert "db:mysql" in tags


def is_database(query):
    return f"trace.{DB_OPERATION}" in query


def test_every_query_filters_and_groups_on_tags_its_source_emits(plan):
    known = sources()
    assert all(source for source in known.values()), known
    found = [f"{where}: {problem}" for where, query, variables in queries(plan) if not is_database(query)
             for problem in problems(query, variables, known)]
    assert found == [], "\n".join(found)


def test_database_queries_filter_and_group_on_tags_the_query_spans_emit(plan):
    database = [(where, query, variables) for where, query, variables in queries(plan) if is_database(query)]
    # Hits, errors, p50 and p99 of the queries by resource, on the APM dashboard.
    assert len(database) == 4, database
    if not db_operation_in_src():
        pytest.skip(f"src/ has no {DB_OPERATION} span yet (issue #12): nothing to tie the widgets to")
    known = sources()
    found = [f"{where}: {problem}" for where, query, variables in database
             for problem in problems(query, variables, known)]
    assert found == [], "\n".join(found)


def test_every_template_variable_is_used(plan):
    for dashboard in plan["dashboards"]:
        text = json.dumps(dashboard["widgets"])
        for variable in dashboard.get("template_variables", []):
            assert f"${variable['name']}" in text, (dashboard["title"], variable)


@pytest.mark.parametrize("query, complaint", [
    # The dashboards before this test: MySQL filtered on the Agent's host.
    ("anomalies(avg:mysql.performance.queries{host:demo-host}, 'basic', 2)", "filtered on host:demo-host"),
    ("avg:my_metric{host:other-host}", "filtered on host:other-host"),
    ("sum:trace.http.server.request.hits{service:apm-demo,env:prod} by {resource_name}.as_count()",
     "filtered on env:prod"),
    ("avg:my_metric{host:demo-host} by {resource_name}", "grouped by resource_name"),
    # A monitor of the service in an env the app does not run in.
    ("percentile(last_5m):p99:trace.http.server.request{service:apm-demo,env:prod} by {resource_name} > 0.5",
     "filtered on env:prod"),
    ("sum(last_5m):sum:trace.http.server.request.errors{service:apm-demo,env:demo} by {resource_name}.as_count()"
     " / sum:trace.http.server.request.hits{service:web,env:demo} by {resource_name}.as_count() > 0.05",
     "filtered on service:web"),
    ("avg:postgresql.connections{db:mysql}", "no known source"),
])
def test_the_check_catches_a_filter_no_source_emits(query, complaint):
    found = problems(query, {}, sources())
    assert any(complaint in problem for problem in found), found
